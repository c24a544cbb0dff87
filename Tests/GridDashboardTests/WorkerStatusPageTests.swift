import Foundation
import GridClient
import GridCore
import GridTestSupport
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Each worker's `--web-port`: resources, load, sandbox tier, current and recent tasks.
@Suite(.serialized) struct WorkerStatusPageTests {
    @Test func aWorkersStatusPageShowsItsResourcesTierAndTasks() async throws {
        let grid = try TestGrid(label: "workerpage")
        defer { grid.shutdown() }
        try await grid.startManager()
        let owner = try await grid.user("olga")
        let port = DashboardTools.freePort()
        try await grid.startWorker("olga-<laptop>", owner: owner, cpus: 3, memoryGb: 2, extra: ["--web-port", "\(port)"])
        // The page starts beside the manager link: wait (bounded) until it listens, however loaded the machine is.
        let listening = await eventually(timeout: 90) { !Self.listeningAddresses(port: port).isEmpty }
        #expect(listening, "the status page never listened on \(port)")
        // The page has no login, so by default only this machine sees it.
        #expect(Self.listeningAddresses(port: port) == ["0100007F"], "the status page listens on \(Self.listeningAddresses(port: port))")
        let url = URL(string: "http://127.0.0.1:\(port)/")!
        func page() async throws -> String { String(decoding: try await URLSession.shared.data(from: url).0, as: UTF8.self) }

        let first = try await page()
        // Nothing on the page loads or runs, and no other site frames it.
        let head = try #require(try await URLSession.shared.data(from: url).1 as? HTTPURLResponse)
        #expect(head.value(forHTTPHeaderField: "X-Frame-Options") == "DENY")
        #expect(head.value(forHTTPHeaderField: "X-Content-Type-Options") == "nosniff")
        #expect(head.value(forHTTPHeaderField: "Content-Security-Policy")?.contains("frame-ancestors 'none'") == true)
        #expect(first.contains("3 CPUs · 2 GB RAM"))
        #expect(first.contains("restricted (best-effort)"))
        #expect(first.contains("id=\"load\""))
        // What the grid's shared storage may take here: the defaults, nothing held yet.
        #expect(first.contains("memory 0 bytes of 512 MiB lent · disk 0 bytes of 20 GiB lent"), "\(first)")
        #expect(first.contains("olga-&lt;laptop&gt;") && !first.contains("olga-<laptop>"))

        let script = Data("import time\nprint('working')\ntime.sleep(10)\n".utf8).base64EncodedString()
        let job = try await owner.submit(
            API.SubmitRequest(spec: JobSpec(name: "<i>task</i>", minutes: 1, minTier: .restricted), script: .init(name: "t.py", contentBase64: script), inputs: []))
        let running = try await eventually(timeout: 60) {
            let html = try await page()
            return html.contains("#\(job.job.id)") && html.contains("<td>running</td>")
        }
        #expect(running, "the current task never showed")
        let recent = try await eventually(timeout: 60) {
            let html = try await page()
            return html.contains("Recent tasks") && html.contains("<td>completed</td>") && html.contains("&lt;i&gt;task&lt;/i&gt;")
        }
        #expect(recent, "the finished task never showed among recent ones")
        let json = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/status.json")!).0
        let status = try JSONSerialization.jsonObject(with: json) as? [String: Any]
        #expect(status?["tier"] as? String == "restricted")
        // The manager knows where the page is.
        #expect(try await owner.workers().workers.first?.webPort == port)
    }

    /// The IPv4 addresses (hex, as /proc/net/tcp shows them) listening on `port`.
    static func listeningAddresses(port: Int) -> [String] {
        // Read to its end: String(contentsOfFile:) returns only the first page of a /proc file (27 sockets), and on a
        // machine running the whole suite the worker's listener was further down.
        let table = String(decoding: FileHandle(forReadingAtPath: "/proc/net/tcp")?.readDataToEndOfFile() ?? Data(), as: UTF8.self)
        return table.split(separator: "\n").dropFirst().compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count > 3, fields[3] == "0A" else { return nil }  // LISTEN
            let local = fields[1].split(separator: ":")
            guard local.count == 2, Int(local[1], radix: 16) == port else { return nil }
            return String(local[0])
        }
    }
}
