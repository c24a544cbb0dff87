import ArgumentParser
import Foundation
import GridClient
import GridCore
import GridProtocol

/// `cpu --verify`: the task runs on two online peers of different owners (neither quarantined), each pinned to its
/// peer, and its result is printed only when both agree; otherwise the command fails with `ERROR disagreement`, naming
/// both peers and what each answered.
struct VerifiedTask {
    var options: PeerOptions
    var task: Msg.CPUTask
    var timeout: Double

    /// Two peers of different owners: the one at `--host/--port` when it is listed, else the least loaded; then the
    /// least loaded peer of another owner.
    /// The preferred one is the worker at that host and port, not any worker on that port.
    static func pick(_ workers: [API.WorkerInfo], preferHost: String? = nil, preferPort: Int) -> (API.WorkerInfo, API.WorkerInfo)? {
        func preferred(_ w: API.WorkerInfo) -> Int { w.port == preferPort && (preferHost == nil || w.host == preferHost) ? 0 : 1 }
        let peers = workers.filter { $0.online && ($0.port ?? 0) > 0 && $0.reputation?.quarantined != true }
            .sorted { (preferred($0), $0.load, $0.name) < (preferred($1), $1.load, $1.name) }
        guard let first = peers.first, let second = peers.first(where: { $0.owner != first.owner }) else { return nil }
        return (first, second)
    }

    func run() async throws {
        let client = try options.managerClient()
        let workers = try await client.workers().workers
        guard let (a, b) = Self.pick(workers, preferHost: options.host, preferPort: options.port) else {
            throw GridError(
                .notFound,
                "cpu --verify needs two online peers of different owners (and not quarantined); the manager lists \(workers.filter(\.online).count) online worker(s)")
        }
        async let first = ask(a, suffix: "a")
        async let second = ask(b, suffix: "b")
        let (ra, rb) = try await (first, second)
        let agree = ra.ok == rb.ok && ra.result == rb.result && ra.error == rb.error
        if options.json {
            try options.printJSON(["agree": JSONValue.bool(agree), "result": agree ? (ra.result ?? .null) : .null, "peers": .array([.string(a.name), .string(b.name)])])
        }
        guard agree else {
            if !options.json {
                complain(
                    "ERROR disagreement: peer \(a.name) (\(a.owner)) answered \(Self.describe(ra)); peer \(b.name) (\(b.owner)) answered \(Self.describe(rb))")
            }
            throw ExitCode(1)
        }
        guard ra.ok else {
            if !options.json {
                complain(
                    "Error (\(TerminalText.field(ra.error ?? "failed"))): \(TerminalText.field(ra.message ?? "", maxCharacters: 2_000)) (the same on \(a.name) and \(b.name))")
            }
            throw ExitCode(1)
        }
        if !options.json { sayData("Result: \(render(ra.result)) (agreed by \(a.name) and \(b.name))") }
    }

    /// Runs the task on `worker` only (pinned, as a confidential task is, so that neither peer hands it on).
    private func ask(_ worker: API.WorkerInfo, suffix: String) async throws -> Msg.CPUResult {
        var pinned = task
        pinned.taskId = task.taskId + "-" + suffix
        pinned.confidential = true
        // The peer must prove to be the worker picked, before anything is sent to it: another at that address (a port
        // taken over) would have its answer counted as that owner's.
        let link = try await options.link(host: worker.host ?? "127.0.0.1", port: worker.port ?? 0, expecting: worker.id)
        do {
            let reply = try await link.request(.cpuTask(pinned), timeout: timeout)
            await link.close()
            guard case .cpuResult(let r) = reply.message else {
                throw GridError(.badRequest, "peer \(worker.name) answered \(reply.message.type) where CPU_RESULT was expected")
            }
            return r
        } catch {
            await link.close()
            throw error
        }
    }

    /// One line whatever the peer sent (a newline in its message forged the `Result:` line).
    static func describe(_ r: Msg.CPUResult) -> String {
        TerminalText.field(r.ok ? render(r.result) : "error \(r.error ?? "failed"): \(r.message ?? "")", maxCharacters: 2_000)
    }
}
