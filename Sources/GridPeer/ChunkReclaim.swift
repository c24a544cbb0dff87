public import GridCore

/// When a peer may delete a file chunk it holds: when no file refers to it any more (its files were deleted, or an
/// upload was abandoned), anywhere in the grid. Without it, deleting a file freed nothing, and one person who uploaded
/// and deleted over and over filled every peer's lent disk for good.
///
/// A chunk is shared by every file with the same bytes (chunks are named by their SHA-256), of any user, so a peer
/// never deletes one because one file went. Two mechanisms, and a chunk goes only when both let it:
/// * **A lease.** Every peer that holds a manifest naming a chunk (or an upload in progress with it) renews the
///   chunk's copies on its owners (`CHUNK_KEEP`) every eighth of the lease; storing a chunk renews it too. A copy not
///   renewed for a lease and a half (`keptFor`) is one that no peer online in the last week knew a use for. The peers
///   holding a manifest may be away (a laptop closed, a switch down) while the others carry on: the lease is how long
///   they may stay away and find their files whole. Only a chunk's owners reclaim it: a copy elsewhere (kept where
///   no owner had room) is left to the repair pass, which lets it go once every owner holds the chunk.
/// * **A question.** Each round, a peer takes its copies past the lease that nothing it holds names (`candidates`),
///   and asks every other current peer which of those it knows a use for (`CHUNK_REFS`): a manifest it holds, an
///   upload in progress, or a copy of its own within the lease. That catches a manifest that moved between peers, or
///   was written, since its last renewal.
/// The rest go, each only if it is still past the lease at the moment of deletion (storing or renewing a chunk makes
/// it new, under the store's lock).
///
/// Pure: the caller lists, asks, renews and deletes. Every rule that keeps a chunk wins over every rule that lets it
/// go: a peer that does not answer, or answers from another view of the membership, stops the round, and nothing is
/// deleted. A peer's answer is a claim: naming more chunks keeps them (the worst a liar does is keep the disk full,
/// as before this existed), and naming fewer cannot delete a chunk another peer's manifest names.
public enum ChunkReclaim {
    /// The lease: the peers holding a file's manifests may stay away this long and find the file whole (a week).
    public static let defaultLeaseSeconds: Double = 7 * 86_400

    /// How long a copy nobody renewed or stored again is kept: a lease and a half. Renewals come every eighth of a
    /// lease and may miss a copy twice (it moved to a new owner since, or its holder restarted and had not read its
    /// manifests back yet), and a copy moved keeps at most half a lease of age (`maxInheritedAge`).
    public static func keptFor(lease: Double) -> Double { lease * 1.5 }

    /// The most age a copy made by the repair pass takes over from the copy it came from (`CHUNK_PUT {stored_at}`):
    /// half a lease, so a sender's clock set back, or its copy's age, cannot make the new copy due at once.
    public static func maxInheritedAge(lease: Double) -> Double { lease / 2 }
    /// How long the membership must have been unchanged first: while peers come and go, manifests move between them.
    public static let defaultStableSeconds: Double = 600
    /// Candidates asked about in one round (one `CHUNK_REFS` per peer); the rest wait for the next rounds.
    public static let maxPerRound = 5_000

    /// Hashes in one `CHUNK_KEEP`.
    public static let maxPerKeep = 5_000

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

    /// Those of `wanted` that the manifests among `entries` name (memory: what was asked, not every name there is).
    public static func references(in entries: [String: MemoryTable.Entry], among wanted: Set<String>) -> Set<String> {
        var out = Set<String>()
        guard !wanted.isEmpty else { return out }
        for (key, entry) in entries where entry.value != nil {
            for hash in references(key: key, value: entry.value) where wanted.contains(hash) { out.insert(hash) }
        }
        return out
    }

    /// Whether a chunk last stored or renewed at `modified` (seconds since 1970) is past its lease at `now`. A time in
    /// the future (a clock set back) or not a number keeps it.
    public static func isPastLease(modified: Double, now: Double, lease: Double) -> Bool {
        guard modified.isFinite, now.isFinite, lease.isFinite, lease >= 0 else { return false }
        return modified <= now && now - modified >= lease
    }

    /// Whether the chunks this peer's manifests name are due for renewal, last renewed at `scanned` (nil: never): every
    /// eighth of the lease, so a copy is renewed seven times before it could go, and a copy moved to a new owner (it
    /// keeps its age) is renewed well within its lease. A clock set back renews at once.
    public static func isScanDue(scanned: Double?, now: Double, lease: Double) -> Bool {
        guard let scanned, scanned.isFinite, now.isFinite, lease.isFinite else { return true }
        return scanned > now || now - scanned >= lease / 8
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
        /// These chunks (a subset of the candidates) may go, each if it is still past its lease.
        case delete([String])
        /// Nothing goes this round, for this reason.
        case keepAll(String)
    }

    /// What may go of `candidates` (chunks past their lease that nothing this peer holds names), given the answers of
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
