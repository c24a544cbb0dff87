extension PeerTrust {
    /// Workers barred from the peers for cause (their join token revoked, or quarantined), pure: a credential of a
    /// barred worker that expires at or before its bar's `before` (the manager's clock, as a credential's `expires`
    /// is) was given before the bar, and is refused. One given after it (the worker came back with a standing token,
    /// or its quarantine was lifted) expires later and is taken: nothing has to lift a bar. The manager keeps the bars
    /// (`bar`) and announces them in `PEERS {barred}` until the credentials they refuse have lapsed at every peer; a
    /// peer keeps the last list it was sent.
    public struct Bars: Sendable, Hashable {
        /// The most bars kept (a manager's list is a few; this bounds a wrong one).
        public static let limit = 10_000
        /// How long after `before` a bar is still announced: a peer takes a credential until `clockSkewSeconds` past
        /// its expiry on its own clock, and a minute more covers the announcement's way there.
        public static let announcedPast: Int64 = PeerTrust.clockSkewSeconds + 60

        /// Worker id → credentials of it expiring at or before this are refused.
        public private(set) var before: [String: Int64] = [:]

        public init() {}

        /// A peer's list, from `PEERS` (at most `limit`; a worker named twice keeps the later cut).
        public init(_ bars: [Msg.PeerBar]) {
            for bar in bars.prefix(Self.limit) { before[bar.workerId] = max(before[bar.workerId] ?? .min, bar.before) }
        }

        /// Whether worker `worker`'s credential that expires at `credentialExpires` is refused.
        public func refuses(worker: String, credentialExpires: Int64) -> Bool {
            guard let cut = before[worker] else { return false }
            return credentialExpires <= cut
        }

        /// The manager bars `worker`: its credentials expiring at or before `before` are refused (a later cut never
        /// moves back). Bars past their announcement go first.
        public mutating func bar(_ worker: String, before cut: Int64, now: Int64) {
            purge(now: now)
            if before[worker] == nil, before.count >= Self.limit { return }
            before[worker] = max(before[worker] ?? .min, cut)
        }

        /// Forgets the bars whose credentials have lapsed everywhere by `now`.
        public mutating func purge(now: Int64) {
            before = before.filter { $0.value.addingSaturated(Self.announcedPast) > now }
        }

        /// What `PEERS` says at `now`: every bar still worth announcing, by worker id.
        public func announced(now: Int64) -> [Msg.PeerBar] {
            before.filter { $0.value.addingSaturated(Self.announcedPast) > now }.sorted { $0.key < $1.key }
                .map { Msg.PeerBar(workerId: $0.key, before: $0.value) }
        }
    }
}
