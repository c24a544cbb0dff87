import Foundation
import GridClient
import GridCore
import GridSandbox
import GridTestSupport
import Testing

/// `examples/torch_regression.py`, a real PyTorch model declaring `torch` in PEP 723 metadata, on a real bwrap worker
/// that installs only from local wheels (torch from `/opt/wheels`, its dependencies from the project's wheel folder):
/// as a job, again as a job (the environment is reused, not rebuilt), and as a function task (the same environment).
@Suite(.serialized) struct TorchExampleTests {
    static let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("examples/torch_regression.py").path

    /// The losses the example printed (`epoch N  loss X`), in order.
    static func losses(_ log: String) -> [Double] {
        log.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("epoch "), let last = line.split(separator: " ").last else { return nil }
            return Double(last)
        }
    }

    @Test(
        .enabled(if: LocalWheels.torchWheel != nil, "no torch wheel in \(LocalWheels.torchFolder): the torch example's test needs one (this machine has none)"),
        .timeLimit(.minutes(15)))
    func theTorchExampleRunsAsAJobAndAsAFunctionTaskInOneCachedEnvironment() async throws {
        let wheels = try LocalWheels.workerArguments(needs: LocalWheels.torchDependencies, extra: [LocalWheels.torchFolder])
        let g = try await PeerGrid(label: "torch")
        defer { g.shutdown() }
        // torch's environment is ~750 MB: well inside the defaults (5 GB one, 10 GB the cache), said here on purpose.
        let peer = try await g.startPeer("peer-1", slots: 1, extra: ["--sandbox", "bwrap", "--env-max-gb", "2", "--env-cache-gb", "4"] + wheels)
        let envs = g.grid.root + "/peer-1/envs"
        // The environment is ~750 MB: removed before the grid stops (its folder's own removal runs on a background
        // thread that a test process ending at once never gets to).
        defer { try? FileManager.default.removeItem(atPath: envs) }
        func environments() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: envs)) ?? []).filter { !$0.hasPrefix(".") } }

        // torch's import needs a few hundred MB: the job asks for 2 GB.
        func submit() async throws -> (API.JobStatus, String, Double) {
            let started = Date()
            let r = try await g.cli(["submit", Self.example, "--isolation", "bwrap", "--ram", "2", "--minutes", "10", "--wait", "--json"], timeout: 600)
            let seconds = Date().timeIntervalSince(started)
            let status = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout)\n\(r.stderr)")
            let id = JobID(try #require(status["id"] as? Int))
            let job = try await g.alice.job(id)
            let log = try await g.alice.logs(id, from: 0).text
            #expect(job.state == .completed, "\(status)\n\(log)\n\(peer.process.errorLog.suffix(4000))")
            return (job, log, seconds)
        }

        let (first, firstLog, firstSeconds) = try await submit()
        #expect(firstLog.contains("=== preparing environment ===") && firstLog.contains("environment ") && firstLog.contains(" built in "), "\(firstLog)")
        let losses = Self.losses(firstLog)
        #expect(losses.count >= 5 && losses.last! < losses.first! / 10, "the loss did not go down: \(losses)")
        #expect(firstLog.contains("Trained: loss") && firstLog.contains("+cpu"), "\(firstLog)")
        let model = String(decoding: try await g.alice.output(first.id, name: "model.txt"), as: UTF8.self)
        #expect(model.hasPrefix("torch 2.") && model.contains("final loss"), "\(model)")
        let folder = try #require(environments().first, "no environment under \(envs)")
        // Unpacked in the build folder (not the build sandbox's 1 GiB /tmp), and that scratch removed.
        #expect(!FileManager.default.fileExists(atPath: envs + "/" + folder + "/tmp"))
        let inode = try FileManager.default.attributesOfItem(atPath: envs + "/" + folder)[.systemFileNumber] as? Int
        let built = firstLog.split(separator: "\n").first { $0.contains(" built in ") }.map(String.init) ?? "?"

        // Again: the environment is found in the cache, the same folder, no second build.
        let (_, secondLog, secondSeconds) = try await submit()
        #expect(secondLog.contains("is cached on this worker"), "\(secondLog)")
        #expect(Self.losses(secondLog).count >= 5)
        #expect(try FileManager.default.attributesOfItem(atPath: envs + "/" + folder)[.systemFileNumber] as? Int == inode)
        #expect(environments() == [folder])

        // As a function task: `main()` of the same file, the same environment (its PEP 723 block).
        let program = try String(contentsOfFile: Self.example, encoding: .utf8)
        let taskStarted = Date()
        let task = try await g.cli(["--port", "\(peer.port)", "cpu", "--program", program, "--confidential", "--timeout", "120", "--json"])
        let taskSeconds = Date().timeIntervalSince(taskStarted)
        let answer = try #require(try JSONSerialization.jsonObject(with: Data(task.stdout.utf8)) as? [String: Any], "\(task.stdout)\n\(task.stderr)")
        #expect(answer["ok"] as? Bool == true, "\(answer)")
        let result = try #require(answer["result"] as? [String: Any], "\(answer)")
        let firstLoss = try #require(result["first_loss"] as? Double), finalLoss = try #require(result["final_loss"] as? Double)
        #expect(finalLoss < firstLoss / 10, "\(result)")
        #expect((result["torch"] as? String ?? "").hasSuffix("+cpu"), "\(result)")
        #expect(environments() == [folder])
        let builds = peer.process.errorLog.components(separatedBy: "environment built").count - 1
        #expect(builds == 1, "\(peer.process.errorLog.suffix(4000))")

        print(
            """
            torch example: first job, environment built: \(String(format: "%.1f", firstSeconds)) s submit → end \
            (the builder: \(built.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "[]")))); \
            second job, environment cached: \(String(format: "%.1f", secondSeconds)) s; function task, cached: \(String(format: "%.1f", taskSeconds)) s
            """)
    }
}
