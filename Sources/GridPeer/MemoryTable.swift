public import GridCore

/// One peer's replicas of distributed-memory keys, last-writer-wins by `(version, origin)`.
///
/// Deletions are kept as tombstones (value nil) so that a stale replica cannot bring a key back; they are forgotten
/// after `tombstoneTTL` versions (milliseconds). Pure: versions and times are passed in.
public struct MemoryTable: Sendable {
    public struct Entry: Hashable, Sendable {
        public var value: JSONValue?
        public var version: Int64
        public var origin: String
        public init(value: JSONValue?, version: Int64, origin: String) {
            self.value = value
            self.version = version
            self.origin = origin
        }

        /// Whether this entry replaces `other`.
        public func isNewer(than other: Entry) -> Bool {
            version != other.version ? version > other.version : origin > other.origin
        }
    }

    public private(set) var entries: [String: Entry] = [:]
    public var tombstoneTTL: Int64 = 10 * 60 * 1000

    public init() {}

    /// Keeps `entry` unless this table holds a newer one; returns whether it was kept.
    @discardableResult
    public mutating func apply(_ key: String, _ entry: Entry) -> Bool {
        if let current = entries[key], !entry.isNewer(than: current) { return false }
        entries[key] = entry
        return true
    }

    public func get(_ key: String) -> Entry? { entries[key] }

    public mutating func drop(_ key: String) { entries[key] = nil }

    /// Live keys (not deleted) starting with `prefix`, sorted.
    public func keys(prefix: String) -> [String] {
        entries.compactMap { k, e in e.value != nil && k.hasPrefix(prefix) ? k : nil }.sorted()
    }

    public var liveCount: Int { entries.values.filter { $0.value != nil }.count }

    /// Forgets tombstones older than the TTL (no arithmetic on stored versions, so no version can make it trap).
    public mutating func collectGarbage(now: Int64) {
        let cutoff = now.subtractingReportingOverflow(tombstoneTTL)
        guard !cutoff.overflow else { return }
        entries = entries.filter { _, e in e.value != nil || e.version > cutoff.partialValue }
    }

    /// What to do after the set of peers changed: for each key, the other owners that should get a copy, and whether
    /// this peer should drop its replica once they have it.
    public struct Move: Hashable, Sendable {
        public var key: String
        public var sendTo: [String]
        public var dropAfter: Bool
    }

    public func rebalance(selfId: String, peers: [String], replicas: Int) -> [Move] {
        entries.keys.sorted().compactMap { key in
            let owners = Rendezvous.owners(of: key, among: peers, replicas: replicas)
            let others = owners.filter { $0 != selfId }
            let drop = !owners.contains(selfId)
            return others.isEmpty && !drop ? nil : Move(key: key, sendTo: others, dropAfter: drop)
        }
    }
}

/// A clock for versions: milliseconds, strictly increasing per peer.
public struct VersionClock: Sendable {
    private var last: Int64 = 0
    public init() {}
    public mutating func next(nowMs: Int64) -> Int64 {
        last = max(nowMs, last < Int64.max ? last + 1 : last)
        return last
    }
}

/// Which versions a peer accepts from another: milliseconds since 1970, at least 1, and never more than
/// `maxSkewMs` ahead of the receiver's clock (a version from the future would pin a key against every later write).
public enum VersionRules {
    /// How far ahead of the receiver's clock a version may be: 5 minutes.
    public static let maxSkewMs: Int64 = 5 * 60 * 1000

    /// Why `version` is refused at `nowMs`, or nil when it is acceptable. Never traps, whatever the numbers.
    public static func check(_ version: Int64, nowMs: Int64) -> GridError? {
        guard version >= 1 else { return GridError(.badRequest, "memory version \(version) is out of range (it must be at least 1)") }
        let limit = nowMs.addingReportingOverflow(maxSkewMs)
        if !limit.overflow, version > limit.partialValue {
            return GridError(
                .badRequest, "memory version \(version) is from the future (more than \(maxSkewMs / 1000) s ahead of this peer's clock)")
        }
        return nil
    }

    /// The first refusal among `entries`' versions, if any (one bad entry refuses the whole `MEM_SYNC`).
    public static func check(_ versions: some Sequence<Int64>, nowMs: Int64) -> GridError? {
        for v in versions { if let e = check(v, nowMs: nowMs) { return e } }
        return nil
    }
}
