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
        /// Its writer's seal, as the peers pass it on (checked before it is kept; see `PeerTrust.SealChecker`).
        public var seal: String?
        public init(value: JSONValue?, version: Int64, origin: String, seal: String? = nil) {
            self.value = value
            self.version = version
            self.origin = origin
            self.seal = seal
        }

        /// Whether this entry replaces `other`.
        public func isNewer(than other: Entry) -> Bool {
            version != other.version ? version > other.version : origin > other.origin
        }
    }

    public private(set) var entries: [String: Entry] = [:]
    /// A day: a replica away for less than that cannot bring a deleted key back, nor can a peer replaying an old sealed
    /// version of it (a deletion is small, and counted against the share of the value it deleted).
    public var tombstoneTTL: Int64 = 24 * 3600 * 1000
    /// How much this table may hold, in all and per owner (see `StorageBudget`); unlimited unless set.
    public var budget: StorageBudget
    /// Bytes held (`size(of:_:)` of every entry, tombstones included), in all and per owner (`owner(of:_:)`).
    public private(set) var heldBytes: Int64 = 0
    public private(set) var heldByOwner: [String: Int64] = [:]

    public init(budget: StorageBudget = .unlimited(what: "memory values")) { self.budget = budget }

    /// What `store` did with an entry.
    public enum Outcome: Hashable, Sendable {
        case kept
        /// This table holds a newer version.
        case lost
        /// It would take the owner, or the table, past its budget: the reason, for the writer.
        case refused(String)
    }

    /// Keeps `entry` unless this table holds a newer one; returns whether it was kept.
    @discardableResult
    public mutating func apply(_ key: String, _ entry: Entry) -> Bool { store(key, entry) == .kept }

    /// Keeps `entry` unless this table holds a newer one, or it does not fit the budget.
    ///
    /// A write counts against its owner's share (`owner(of:_:)`), a deletion against the share of the value it
    /// deletes: a person who publishes and deletes over and over keeps paying for the deletions until they are
    /// forgotten (the TTL), rather than moving them to nobody's account. A deletion of a value held here always fits:
    /// nobody is ever kept from deleting; one of a key not held here (a replica that missed the write, or deletions of
    /// keys that never were) is checked against its person's share and the whole table, as a new value is.
    /// `writer`: the person the entry's seal was checked for; a deletion of a public name not held here is charged to
    /// them (no value names its owner, and on the share of values with no owner, a person's deletions of names that
    /// never were crowded out every such value and deletion).
    /// `heldDeletedBy`: the person the seal of a deletion held here names; a public value of another owner is kept
    /// over it whatever the versions (`PeerNamespace.deletionBars`).
    public mutating func store(_ key: String, _ entry: Entry, writer: String? = nil, heldDeletedBy: String? = nil) -> Outcome {
        let current = entries[key]
        if let current, !entry.isNewer(than: current) {
            guard current.value == nil, let value = entry.value, !PeerNamespace.deletionBars(key, deletedBy: heldDeletedBy, value: value) else {
                return .lost
            }
        }
        let replaced = charges[key]
        var owner = entry.value == nil ? replaced?.owner ?? Self.owner(of: key, nil) : Self.owner(of: key, entry.value)
        if entry.value == nil, replaced == nil, owner.isEmpty, let writer, PeerNamespace.isValidUser(writer) { owner = writer }
        let size = Self.size(of: key, entry)
        // What the write adds to its owner's share (and at most to the table: a replaced entry of another owner is
        // subtracted from theirs). A write that adds nothing always fits.
        let growth = size - (replaced?.owner == owner ? replaced?.size ?? 0 : 0)
        if entry.value != nil, let reason = budget.refusal(adding: growth, totalHeld: heldBytes, owner: (owner, heldByOwner[owner] ?? 0)) {
            return .refused(reason)
        }
        // A deletion of a key not held here is a new entry on its person's account, bounded by their share as a value
        // is: checked only against the whole table, a peer's sealed deletions of keys that never were filled it for
        // everyone until the TTL.
        if entry.value == nil, current?.value == nil,
            let reason = budget.refusal(adding: growth, totalHeld: heldBytes, owner: (owner, heldByOwner[owner] ?? 0))
        {
            return .refused(reason)
        }
        if let replaced { account(replaced.owner, -replaced.size) }
        account(owner, size)
        charges[key] = Charge(owner: owner, size: size)
        entries[key] = entry
        return .kept
    }

    public func get(_ key: String) -> Entry? { entries[key] }

    public mutating func drop(_ key: String) {
        entries[key] = nil
        if let c = charges.removeValue(forKey: key) { account(c.owner, -c.size) }
    }

    /// Live keys (not deleted) starting with `prefix`, sorted.
    public func keys(prefix: String) -> [String] {
        entries.compactMap { k, e in e.value != nil && k.hasPrefix(prefix) ? k : nil }.sorted()
    }

    public var liveCount: Int { entries.values.filter { $0.value != nil }.count }

    /// Forgets tombstones older than the TTL (no arithmetic on stored versions, so no version can make it trap).
    public mutating func collectGarbage(now: Int64) {
        let cutoff = now.subtractingReportingOverflow(tombstoneTTL)
        guard !cutoff.overflow else { return }
        for (k, e) in entries where e.value == nil && e.version <= cutoff.partialValue { drop(k) }
    }

    /// Whose share a value counts against: the user of a private key, the owner named in a public value (when it is a
    /// valid user name), else "" (values with no owner share one budget, so a peer that sends junk cannot take more
    /// than one person's share).
    public static func owner(of key: String, _ value: JSONValue?) -> String {
        if let user = PeerNamespace.owner(of: key) { return user }
        if let value, let (owner, _) = PeerNamespace.unwrap(value), PeerNamespace.isValidUser(owner) { return owner }
        return ""
    }

    /// The bytes an entry is counted as: its key, its origin, its seal, its value (the larger of its JSON text and what it takes
    /// in memory, `JSONValue.memoryFootprint`), and 64 for the version and bookkeeping (a deletion counts too: it is
    /// kept until the TTL).
    public static func size(of key: String, _ entry: Entry) -> Int64 {
        let value = entry.value.map { max($0.encodedSizeBound, $0.memoryFootprint) } ?? 0
        return StorageBudget.sum(
            // A deletion's seal is counted too: it is kept (a day) and passed on with it.
            Int64(key.utf8.count) + Int64(entry.origin.utf8.count) + Int64(entry.seal?.utf8.count ?? 0) + 64, Int64(clamping: value))
    }

    /// What each held key is counted as, and against whom.
    public struct Charge: Hashable, Sendable {
        public var owner: String
        public var size: Int64
    }

    public private(set) var charges: [String: Charge] = [:]

    private mutating func account(_ owner: String, _ delta: Int64) {
        heldBytes = max(0, StorageBudget.sum(heldBytes, delta))
        let now = max(0, StorageBudget.sum(heldByOwner[owner] ?? 0, delta))
        heldByOwner[owner] = now == 0 ? nil : now
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

/// Which entries a peer accepts from another (`MEM_SYNC`, an answer to `MEM_FETCH`) besides their versions: a stored
/// key no longer than a client's key with its namespace, an origin the length of a worker id, and a value within the
/// limit a client's `SET_MEM` has (with room for a public value's owner). A peer holds what it accepts, so nothing
/// larger gets in by another door.
public enum EntryRules {
    /// A client's key (`PeerNames.maxKeyBytes`) with its namespace (a mark, a user name, a mark).
    public static let maxStoredKeyBytes = PeerNames.maxKeyBytes + 80
    public static let maxOriginBytes = 128

    /// Why an entry is refused, or nil when it is acceptable. Never traps.
    public static func check(key: String, origin: String, value: JSONValue?, encodedSize: ((JSONValue) -> Int)? = nil) -> GridError? {
        guard (1...maxStoredKeyBytes).contains(key.utf8.count) else {
            return GridError(.badRequest, "a memory key of \(key.utf8.count) bytes is out of range (1–\(maxStoredKeyBytes))")
        }
        guard (1...maxOriginBytes).contains(origin.utf8.count) else {
            return GridError(.badRequest, "a memory entry's origin of \(origin.utf8.count) bytes is out of range (1–\(maxOriginBytes))")
        }
        // The bound is cheap but can be far over the text (24 bytes a number, 2 a `/`); a writer over it measured the
        // real text, and so does this (`encodedSize`): a value a writer took is never refused here for its spelling.
        if let value, value.encodedSizeBound > PeerNames.maxValueBytes + 128 {
            let size = encodedSize?(value) ?? value.encodedSizeBound
            if size > PeerNames.maxValueBytes + 128 {
                return GridError(.badRequest, "a memory value of about \(size) bytes is over the limit (\(PeerNames.maxValueBytes >> 10) KiB)")
            }
        }
        return nil
    }
}
