import Synchronization

/// How many live streams (`/live`, Server-Sent Events) may be open at once: per client address and in all. Each open
/// stream re-renders its page's regions twice a second for minutes, and the overview, workers and leaderboard views
/// need no login, so without a bound a stranger's connections kept the manager rendering. Pure; `LiveStreams` holds it.
struct StreamQuota: Sendable {
    let perClient: Int
    let total: Int
    private(set) var open: [String: Int] = [:]
    private(set) var count = 0

    init(perClient: Int, total: Int) {
        self.perClient = perClient
        self.total = total
    }

    /// Takes a slot for `client`; false when it has `perClient` open already, or the manager `total`.
    mutating func admit(_ client: String) -> Bool {
        guard count < total, open[client, default: 0] < perClient else { return false }
        open[client, default: 0] += 1
        count += 1
        return true
    }

    /// Gives back a slot `admit` took (a release with none taken changes nothing).
    mutating func release(_ client: String) {
        guard let n = open[client], n > 0 else { return }
        open[client] = n == 1 ? nil : n - 1
        count -= 1
    }
}

/// The manager's live streams, shared by every request.
final class LiveStreams: Sendable {
    private let quota: Mutex<StreamQuota>

    init(perClient: Int, total: Int) { quota = Mutex(StreamQuota(perClient: perClient, total: total)) }

    func admit(_ client: String) -> Bool { quota.withLock { $0.admit(client) } }
    func release(_ client: String) { quota.withLock { $0.release(client) } }
}
