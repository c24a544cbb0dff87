public import GridCore

/// When a peer may delete a file chunk it holds: when no file refers to it any more (its files were deleted, or an
/// upload was abandoned), anywhere in the grid. Without it, deleting a file freed nothing, and one person who uploaded
/// and deleted over and over filled every peer's lent disk for good.
///
/// A chunk is shared by every file with the same bytes (chunks are named by their SHA-256), of any user, so a peer
/// never deletes one because one file went: only when no manifest any peer holds, and no upload in progress on any
/// peer, names it. Each round, a peer
/// 1. takes its chunks last stored more than `grace` ago and named by none of the manifests and uploads it holds
///    itself (`candidates`);
/// 2. asks every other peer which of those it knows a use for (`CHUNK_REFS`);
/// 3. deletes the rest, each only if it is still that old at the moment of deletion (storing a chunk again, as an
///    upload of the same bytes does, makes it new).
///
/// Pure: the caller lists, asks and deletes. Every rule that keeps a chunk wins over every rule that lets it go: a peer
/// that does not answer, or answers from another view of the membership, stops the round, and nothing is deleted.
/// A peer's answer is a claim: naming more chunks keeps them (the worst a liar does is keep the disk full, as before
/// this existed), and naming fewer cannot delete a chunk another peer's manifest names.
public enum ChunkReclaim {
    /// How long a chunk no file names is kept from when it was last stored (an upload's first chunks wait for its last;
    /// a job's outputs are stored before their manifest).
    public static let defaultGraceSeconds: Double = 3600
    /// How long the membership must have been unchanged first: while peers come and go, manifests move between them.
    public static let defaultStableSeconds: Double = 600
    /// Candidates asked about in one round (one `CHUNK_REFS` per peer); the rest wait for the next rounds.
    public static let maxPerRound = 5_000

    /// The chunks a stored memory entry names when it is a file's manifest (a user's own, or a public one), else none.
    /// Only well-formed chunk names count.
    public static func references(key: String, value: JSONValue?) -> [String] {
        guard let value else { return [] }
        let manifest: JSONValue
        if key.hasPrefix(PeerNamespace.prefix(user: nil, kind: .file)) {
            guard let (_, inner) = PeerNamespace.unwrap(value) else { return [] }
            manifest = inner
        } else if isPrivateFile(key) {
            manifest = value
        } else {
            return []
        }
        guard case .object(let o) = manifest, case .array(let chunks)? = o["chunks"] else { return [] }
        return chunks.compactMap { item in
            guard case .string(let hash) = item, PeerNames.isChunkHash(hash) else { return nil }
            return hash
        }
    }

    /// Whether a stored key lies in a user's private file namespace (`\u{2}` USER `\u{1f}` NAME), not their memory's.
    static func isPrivateFile(_ key: String) -> Bool {
        guard let owner = PeerNamespace.owner(of: key) else { return false }
        return key.hasPrefix(PeerNamespace.prefix(user: owner, kind: .file))
    }

    /// Every chunk named by the manifests among `entries`.
    public static func references(in entries: [String: MemoryTable.Entry]) -> Set<String> {
        var out = Set<String>()
        for (key, entry) in entries where entry.value != nil { out.formUnion(references(key: key, value: entry.value)) }
        return out
    }

    /// Whether a chunk last stored at `modified` (seconds since 1970) is past its grace at `now`. A time in the future
    /// (a clock set back) or not a number keeps it.
    public static func isPastGrace(modified: Double, now: Double, grace: Double) -> Bool {
        guard modified.isFinite, now.isFinite, grace.isFinite, grace >= 0 else { return false }
        return modified <= now && now - modified >= grace
    }

    /// Whether the membership has been unchanged for long enough: `changedAt` is when it last changed (nil: no
    /// membership announced yet, so this peer cannot know who else holds manifests), on a monotonic clock.
    public static func isSettled(changedAt: Double?, now: Double, stable: Double) -> Bool {
        guard let changedAt, changedAt.isFinite, now.isFinite, stable.isFinite else { return false }
        return now >= changedAt && now - changedAt >= stable
    }

    /// One peer's answer: the asked chunks it knows a use for, and the digest of the membership it sees.
    public struct Answer: Hashable, Sendable {
        public var referenced: Set<String>
        public var members: String
        public init(referenced: Set<String>, members: String) {
            self.referenced = referenced
            self.members = members
        }
    }

    public enum Verdict: Hashable, Sendable {
        /// These chunks (a subset of the candidates) may go, each if it is still past its grace.
        case delete([String])
        /// Nothing goes this round, for this reason.
        case keepAll(String)
    }

    /// What may go of `candidates` (chunks past their grace that nothing this peer holds names), given the answers of
    /// the other peers (`others`: every member but this one; a missing answer is one that failed). `members`: the
    /// digest of this peer's own view of the membership.
    public static func verdict(candidates: [String], others: [String], members: String, answers: [String: Answer]) -> Verdict {
        guard !candidates.isEmpty else { return .delete([]) }
        var named = Set<String>()
        for peer in others {
            guard let answer = answers[peer] else { return .keepAll("peer \(peer.prefix(64)) did not answer") }
            guard answer.members == members else { return .keepAll("peer \(peer.prefix(64)) sees another membership") }
            named.formUnion(answer.referenced)
        }
        var seen = Set<String>()
        return .delete(candidates.filter { !named.contains($0) && seen.insert($0).inserted })
    }
}
