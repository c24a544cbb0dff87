import GridCore
import GridStore
import Hummingbird

/// `/metrics` in the Prometheus text format: jobs by state, workers online, free and total CPUs, credits minted.
struct MetricsEndpoint: Sendable {
    let db: GridDatabase
    let core: ManagerCore

    func addRoutes(to router: Router<APIContext>) {
        router.get("metrics") { _, _ -> Response in
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
