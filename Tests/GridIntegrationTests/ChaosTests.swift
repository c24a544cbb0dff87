import Foundation
import GridClient
import GridCore
import GridSandbox
import GridTestSupport
import Testing

extension Integration {
    /// Real manager and worker processes, killed (SIGKILL) and restarted at random while jobs run.
    @Suite struct Chaos {
        static let credits = 1000

        /// Job `k`'s script: `steps` lines a quarter second apart, then an output file and a last line.
        static func source(_ k: Int, steps: Int) -> String {
            """
            import time
            for i in range(\(steps)):
                print(f"job \(k) step {i}", flush=True)
                time.sleep(0.25)
            open("out.txt", "w").write("job \(k) result \(k * k)\\n" * 100)
            print("job \(k) done", flush=True)
            """
        }

        static func expectedLog(_ k: Int, steps: Int) -> String {
            (0..<steps).map { "job \(k) step \($0)\n" }.joined() + "job \(k) done\n"
        }

        /// The last attempt's part of a job's log: after the manager's last `--- reason ---` separator line.
        static func lastAttempt(_ log: String) -> String {
            guard let range = log.range(of: " ---\n", options: .backwards) else { return log }
            return String(log[range.upperBound...])
        }

        @Test func jobsSurviveRandomKillsOfWorkersAndTheManagerExactlyOnceWithTheirWholeOutputAndExactMoney() async throws {
            let seed = ProcessInfo.processInfo.environment["CAMPUSGRID_CHAOS_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...999_999)
            print("chaos seed: \(seed) (replay with CAMPUSGRID_CHAOS_SEED=\(seed))")
            var rng = SplitMix(seed: seed)  // replayable with CAMPUSGRID_CHAOS_SEED
            let began = Date()
            let grid = try TestGrid(label: "chaos")
            defer { grid.shutdown() }
            let env = ["STARTING_CREDITS": "\(Self.credits)"]
            var manager = try await grid.startManager(leaseSeconds: 4, extraEnvironment: env)
            let (gridPort, httpPort) = (grid.gridPort, grid.httpPort)
            let owner = try await grid.user("owner")
            let users = [try await grid.user("alice"), try await grid.user("bob")]
            let names = ["w1", "w2", "w3"]
            var tokens: [String: String] = [:]
            var workers: [String: ManagedProcess] = [:]
            for name in names {
                tokens[name] = try await owner.createToken(kind: "worker").token
                workers[name] = try await grid.startWorker(name, token: tokens[name]!, cpus: 2, extra: ["--slots", "2"])
            }

            // 40 jobs of 1–4 s from two users.
            var jobs: [(id: JobID, user: Int, k: Int, steps: Int)] = []
            for k in 0..<40 {
                let steps = Int.random(in: 4...16, using: &rng)
                let user = k % 2
                let request = API.SubmitRequest(
                    spec: JobSpec(name: "chaos-\(k)", cpus: 1, ramGb: 0, minutes: 1, minTier: .restricted),
                    script: API.FileUpload(name: "job.py", contentBase64: Data(Self.source(k, steps: steps).utf8).base64EncodedString()),
                    inputs: [])
                jobs.append((try await users[user].submit(request).job.id, user, k, steps))
            }

            // 20 rounds: a random worker is killed and restarted 1–3 s later on its data folder; every 4th round the
            // manager is killed too and restarted on the same ports.
            var kills: [String] = []
            for round in 1...20 {
                if Date().timeIntervalSince(began) > 120 { break }
                try await Task.sleep(for: .milliseconds(Int.random(in: 300...1200, using: &rng)))
                let name = names.randomElement(using: &rng)!
                workers[name]!.signal(SIGKILL)
                _ = await workers[name]!.waitForExit(timeout: 10)
                var event = "round \(round): killed \(name)"
                let killManager = round % 4 == 0
                if killManager {
                    manager.signal(SIGKILL)
                    _ = await manager.waitForExit(timeout: 10)
                    event += " and the manager"
                }
                try await Task.sleep(for: .milliseconds(Int.random(in: 1000...3000, using: &rng)))
                if killManager {
                    manager = try await grid.startManager(leaseSeconds: 4, gridPort: gridPort, httpPort: httpPort, extraEnvironment: env)
                }
                workers[name] = try await grid.startWorker(
                    name, token: tokens[name]!, cpus: 2, extra: ["--slots", "2"], dataDirectory: grid.root + "/\(name)")
                kills.append(event)
            }
            let chaosSeconds = Date().timeIntervalSince(began)

            // Every job ends (bounded), and ends completed, exactly once, with its whole output.
            let terminal: Set<JobState> = [.completed, .failed, .cancelled, .timedOut]
            var final: [JobID: API.JobStatus] = [:]
            let allEnded = try await eventually(timeout: 150, interval: 0.5) {
                for job in jobs where final[job.id] == nil {
                    let status = try await users[job.user].job(job.id)
                    if terminal.contains(status.state) { final[job.id] = status }
                }
                return final.count == jobs.count
            }
            let context = "seed \(seed); \(kills.joined(separator: "; "))"
            #expect(allEnded, "only \(final.count) of 40 jobs ended (\(context))\n\(grid.logs().suffix(6000))")
            var paid = [0, 0]
            var interrupted = 0
            var kinds: [String: Int] = [:]
            for job in jobs {
                guard let status = final[job.id] else { continue }
                #expect(
                    status.state == .completed,
                    "job \(job.k): \(status.state.rawValue) \(status.reason ?? "") (\(context))\n\(grid.logs(matching: ["grid.job.id=\(job.id) "]))")
                #expect((status.events ?? []).filter { $0.state == .completed }.count == 1, "job \(job.k) completed once (\(context))")
                let log = try await users[job.user].logs(job.id, from: 0).text
                #expect(!log.contains("lost in transit"), "job \(job.k) lost log bytes (\(context))")
                #expect(Self.lastAttempt(log) == Self.expectedLog(job.k, steps: job.steps), "job \(job.k)'s log (\(context)):\n\(log.suffix(600))")
                if status.state == .completed {
                    let out = try await users[job.user].output(job.id, name: "out.txt")
                    #expect(out == Data(String(repeating: "job \(job.k) result \(job.k * job.k)\n", count: 100).utf8), "job \(job.k)'s output")
                }
                paid[job.user] += status.paid ?? 0
                interrupted += status.interruptions?.count ?? 0
                for i in status.interruptions ?? [] { kinds[i.kind, default: 0] += 1 }
            }
            for (i, user) in users.enumerated() {
                #expect(try await user.me().balance == Self.credits - paid[i], "user \(i) pays exactly what their jobs paid (\(context))")
            }
            #expect(try await owner.me().balance == Self.credits + paid[0] + paid[1], "the owner earned exactly that (\(context))")
            #expect(try await Scenario.ledgerOK(grid))
            let check = try await grid.cli(["admin", "check-ledger"], token: try await grid.admin().token!)
            #expect(check.status == 0, "admin check-ledger: \(check.stdout) \(check.stderr)")
            print(
                "chaos seed \(seed): \(kills.count) rounds in \(Int(chaosSeconds)) s, all ended after \(Int(Date().timeIntervalSince(began))) s, "
                    + "\(interrupted) interruptions (\(kinds.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))), "
                    + "\(paid[0] + paid[1]) credits paid")
        }
    }
}
