/// How much of a contributor's machine the grid's shared storage may take on one peer, and how much of that one person
/// may hold there. A stranger's keys or files must never fill a laptop's memory or disk, nor crowd everyone else out.
///
/// Pure: the caller says what is held now. Sizes come from the wire, so nothing here traps, whatever the numbers.
public struct StorageBudget: Sendable, Hashable {
    /// Bytes this peer keeps for everyone together.
    public var totalBytes: Int64
    /// Bytes one owner may hold on this peer (a quarter of the total unless set).
    public var perOwnerBytes: Int64
    /// What is kept, for messages: "memory values", "file chunks".
    public var what: String
    /// What the writer can do when the peer is full, for messages.
    public var remedy: String

    public init(totalBytes: Int64, perOwnerBytes: Int64? = nil, what: String, remedy: String = "delete some, or add peers") {
        self.totalBytes = max(0, totalBytes)
        self.perOwnerBytes = max(0, perOwnerBytes ?? Self.share(of: totalBytes))
        self.what = what
        self.remedy = remedy
    }

    /// The default share of one owner: a quarter of the total, so at least four people fit on a full peer.
    public static func share(of total: Int64) -> Int64 { max(0, total) / 4 }

    /// The budget of a peer's file chunks: for the whole peer (a peer storing a chunk for another does not know whose
    /// file it is part of). A deleted file's chunks are freed only once no other file names them and their grace has
    /// passed (`ChunkReclaim`), so the remedy a full peer names is more room, more peers, or time.
    public static func disk(totalBytes: Int64) -> StorageBudget {
        StorageBudget(
            totalBytes: totalBytes, perOwnerBytes: totalBytes, what: "file chunks",
            remedy: "its owner can lend more (--share-disk-mb), or more peers can join; deleted files' chunks are freed ten and a half days after no file names them")
    }

    /// No limit (a test or bench that stores more than a laptop should).
    public static func unlimited(what: String) -> StorageBudget { StorageBudget(totalBytes: .max, perOwnerBytes: .max, what: what) }

    /// Why `adding` more bytes are refused, or nil when they fit. `totalHeld`: what the peer holds now for everyone;
    /// `owner`: whose bytes they are and what that owner holds now (nil: not counted per owner, as for file chunks,
    /// whose owner a peer does not know). A change that does not grow what is held (`adding` ≤ 0) always fits, so an
    /// owner over their share can still delete or shrink.
    public func refusal(adding: Int64, totalHeld: Int64, owner: (name: String, holds: Int64)? = nil) -> String? {
        guard adding > 0 else { return nil }
        if let owner, Self.sum(owner.holds, adding) > perOwnerBytes {
            let who = owner.name.isEmpty ? "values with no owner" : owner.name
            return "\(who) would hold \(Self.describe(Self.sum(owner.holds, adding))) of \(what) on this peer; "
                + "one person's share here is \(Self.describe(perOwnerBytes)): delete some first"
        }
        if Self.sum(totalHeld, adding) > totalBytes {
            return "this peer's \(what) are full (\(Self.describe(max(0, totalHeld))) of \(Self.describe(totalBytes)), "
                + "the limit its owner set); \(remedy)"
        }
        return nil
    }

    /// `a + b`, stopping at `Int64.max` (and at 0 below) rather than trapping.
    public static func sum(_ a: Int64, _ b: Int64) -> Int64 {
        let (s, overflow) = a.addingReportingOverflow(b)
        if overflow { return b > 0 ? .max : 0 }
        return s
    }

    /// A byte count for people: "512 KiB", "20 GiB".
    public static func describe(_ bytes: Int64) -> String {
        if bytes == .max { return "no limit" }
        for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] as [(String, Int64)] where bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return "\(bytes >> shift) \(unit)"
        }
        for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] as [(String, Int64)] where bytes >= 1 << shift {
            return "\(bytes >> shift).\(((bytes % (1 << shift)) * 10) >> shift) \(unit)"
        }
        return "\(bytes) bytes"
    }
}
