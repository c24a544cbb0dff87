import GridCore
import GridStore
import Hummingbird

/// `/metrics` in the Prometheus text format: jobs by state, workers online, free and total CPUs, credits minted.
///
/// It answers only requests from this machine (a loopback address): it needs no token, so a Prometheus (or a proxy)
/// on the manager's host scrapes it, and nobody else on the network learns the grid's size and use from it.
struct MetricsEndpoint: Sendable {
    let db: GridDatabase
    let core: ManagerCore

    /// Whether a request from `address` (as the socket reports it) may read the metrics: 127.0.0.0/8, ::1, or
    /// 127.x.y.z mapped into IPv6. Anything else, including an unknown address, may not.
    static func allows(clientAddress address: String) -> Bool {
        if address == "::1" { return true }
        let v4 = address.lowercased().hasPrefix("::ffff:") ? String(address.dropFirst(7)) : address
        let parts = v4.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { !$0.isEmpty && $0.count <= 3 && UInt8($0) != nil } && parts[0] == "127"
    }

    func addRoutes(to router: Router<APIContext>) {
        router.get("metrics") { _, context -> Response in
            guard Self.allows(clientAddress: context.clientAddress) else {
                throw GridError(.forbidden, "/metrics answers only requests from the manager's own machine (127.0.0.1 or ::1); scrape it there")
            }
            let counts = try await db.jobCounts()
            let live = await core.liveState()
            let workers = try await db.workers()
            let ledger = try await db.checkLedger()
            var text = "# HELP campusgrid_jobs Jobs by state.\n# TYPE campusgrid_jobs gauge\n"
            for state in JobState.allCases { text += "campusgrid_jobs{state=\"\(state.rawValue)\"} \(counts[state] ?? 0)\n" }
            text += "# HELP campusgrid_workers_online Workers connected now.\n# TYPE campusgrid_workers_online gauge\n"
            text += "campusgrid_workers_online \(live.count)\n"
            let total = workers.filter { live[$0.id] != nil }.reduce(0) { $0 + $1.resources.cpus }
            let free = live.values.reduce(0) { $0 + max(0, $1.free.cpus) }
            text += "# HELP campusgrid_cpus CPUs offered by online workers.\n# TYPE campusgrid_cpus gauge\n"
            text += "campusgrid_cpus{kind=\"total\"} \(total)\ncampusgrid_cpus{kind=\"free\"} \(free)\n"
            text += "# HELP campusgrid_credits_minted Credits minted by sign-ups.\n# TYPE campusgrid_credits_minted gauge\n"
            text += "campusgrid_credits_minted \(ledger.minted)\n"
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
        }
    }
}
