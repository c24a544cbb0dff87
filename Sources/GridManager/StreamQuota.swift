import Synchronization

/// How many live streams (`/live`, Server-Sent Events) may be open at once: per client address and in all. Each open
/// stream re-renders its page's regions twice a second for minutes, and the overview, workers and leaderboard views
/// need no login, so without a bound a stranger's connections kept the manager rendering. Pure; `LiveStreams` holds it.
/// The caller keys clients by `ClientAddress.key` (an IPv6 /64 is one host's), and a quarter of the slots are kept for
/// signed-in people: strangers from many addresses cannot take every slot.
/// A person's streams are theirs, and counted by their address too (`perAddress`, four people's worth): accounts are
/// free, and sixteen made from one host took every slot.
struct StreamQuota: Sendable {
    let perClient: Int
    let perAddress: Int
    let total: Int
    private(set) var open: [String: Int] = [:]
    /// Slots held from each address by people signed in.
    private(set) var fromAddress: [String: Int] = [:]
    private(set) var count = 0
    /// Slots held by streams without a login.
    private(set) var strangers = 0

    init(perClient: Int, total: Int, perAddress: Int? = nil) {
        self.perClient = perClient
        self.perAddress = perAddress ?? perClient.multipliedReportingOverflow(by: 4).partialValue
        self.total = total
    }

    /// The most slots streams without a login may hold together.
    var strangerSlots: Int { total - total / 4 }

    /// Takes a slot for `client` (a person, or a stranger's address) at `address` (a person's; nil for a stranger,
    /// whose client is its address); false when it has `perClient` open already, or its address `perAddress`, or the
    /// manager `total`, or (not `signedIn`) strangers hold `strangerSlots`.
    mutating func admit(_ client: String, address: String? = nil, signedIn: Bool = true) -> Bool {
        guard count < total, open[client, default: 0] < perClient, signedIn || strangers < strangerSlots else { return false }
        if let address, fromAddress[address, default: 0] >= perAddress { return false }
        open[client, default: 0] += 1
        if let address { fromAddress[address, default: 0] += 1 }
        count += 1
        if !signedIn { strangers += 1 }
        return true
    }

    /// Gives back a slot `admit` took, as it was taken (a release with none taken changes nothing).
    mutating func release(_ client: String, address: String? = nil, signedIn: Bool = true) {
        guard let n = open[client], n > 0 else { return }
        open[client] = n == 1 ? nil : n - 1
        if let address, let m = fromAddress[address], m > 0 { fromAddress[address] = m == 1 ? nil : m - 1 }
        count -= 1
        if !signedIn, strangers > 0 { strangers -= 1 }
    }
}

/// The manager's live streams, shared by every request.
final class LiveStreams: Sendable {
    private let quota: Mutex<StreamQuota>

    init(perClient: Int, total: Int) { quota = Mutex(StreamQuota(perClient: perClient, total: total)) }

    func admit(_ client: String, address: String? = nil, signedIn: Bool) -> Bool {
        quota.withLock { $0.admit(client, address: address, signedIn: signedIn) }
    }
    func release(_ client: String, address: String? = nil, signedIn: Bool) {
        quota.withLock { $0.release(client, address: address, signedIn: signedIn) }
    }
}
