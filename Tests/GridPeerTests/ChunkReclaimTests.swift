import GridCore
import GridPeer
import Testing

@Suite("ChunkReclaim: when a peer may delete a file chunk")
struct ChunkReclaimTests {
    static func hash(_ c: Character) -> String { String(repeating: c, count: 64) }
    static func manifest(_ chunks: [String]) -> JSONValue {
        .object(["filename": .string("f"), "size": .number(1), "sha256": .string(hash("0")), "chunk_size": .number(4), "chunks": .array(chunks.map { .string($0) })])
    }

    @Test func onlyFileManifestsNameChunks() {
        let a = Self.hash("a")
        let b = Self.hash("b")
        let own = PeerNamespace.stored("data.bin", user: "ada", kind: .file)
        #expect(ChunkReclaim.references(key: own, value: Self.manifest([a, b])) == [a, b])
        // A public file's manifest is wrapped with its owner; unwrapped it names nothing.
        let pub = PeerNamespace.stored("shared.bin", user: nil, kind: .file)
        #expect(ChunkReclaim.references(key: pub, value: PeerNamespace.wrap(Self.manifest([a]), owner: "ada")) == [a])
        #expect(ChunkReclaim.references(key: pub, value: Self.manifest([a])) == [])
        // A memory value shaped like a manifest (a user can write any JSON there) keeps no chunk.
        #expect(ChunkReclaim.references(key: PeerNamespace.stored("k", user: "ada", kind: .memory), value: Self.manifest([a])) == [])
        #expect(ChunkReclaim.references(key: PeerNamespace.stored("k", user: nil, kind: .memory), value: PeerNamespace.wrap(Self.manifest([a]), owner: "ada")) == [])
        // Deleted (a tombstone), malformed, or with names that are no chunk names.
        #expect(ChunkReclaim.references(key: own, value: nil) == [])
        #expect(ChunkReclaim.references(key: own, value: .string("x")) == [])
        #expect(ChunkReclaim.references(key: own, value: .object(["chunks": .string(a)])) == [])
        #expect(ChunkReclaim.references(key: own, value: Self.manifest(["../../etc", a.uppercased(), String(a.dropLast()), a])) == [a])
        // A key with no valid owner is nobody's file.
        #expect(ChunkReclaim.references(key: "\u{2}\u{1f}x", value: Self.manifest([a])) == [])
        #expect(ChunkReclaim.references(key: "data.bin", value: Self.manifest([a])) == [])
    }

    @Test func theTableNamesTheChunksOfItsLiveManifestsOnly() {
        let (a, b, c) = (Self.hash("a"), Self.hash("b"), Self.hash("c"))
        let entries: [String: MemoryTable.Entry] = [
            PeerNamespace.stored("one", user: "ada", kind: .file): .init(value: Self.manifest([a, b]), version: 1, origin: "p"),
            PeerNamespace.stored("two", user: "bob", kind: .file): .init(value: Self.manifest([b]), version: 1, origin: "p"),
            PeerNamespace.stored("gone", user: "bob", kind: .file): .init(value: nil, version: 2, origin: "p"),
            PeerNamespace.stored("k", user: "bob", kind: .memory): .init(value: Self.manifest([c]), version: 1, origin: "p"),
        ]
        #expect(ChunkReclaim.references(in: entries) == [a, b])
        // Asked about some: only those come back (a tombstone's and a memory value's names never).
        #expect(ChunkReclaim.references(in: entries, among: [b, c, Self.hash("d")]) == [b])
        #expect(ChunkReclaim.references(in: entries, among: []) == [])
    }

    @Test func leaseRenewalAndSettlingHoldAtTheirBoundsAndForNonsense() {
        #expect(ChunkReclaim.isPastLease(modified: 100, now: 200, lease: 100))
        #expect(!ChunkReclaim.isPastLease(modified: 100.5, now: 200, lease: 100))
        #expect(ChunkReclaim.isPastLease(modified: 0, now: 0, lease: 0))
        // A time ahead of the clock, or not a number, keeps the chunk.
        #expect(!ChunkReclaim.isPastLease(modified: 300, now: 200, lease: 0))
        for bad in [Double.nan, .infinity, -.infinity] {
            #expect(!ChunkReclaim.isPastLease(modified: bad, now: 200, lease: 1))
            #expect(!ChunkReclaim.isPastLease(modified: 1, now: bad, lease: 1))
            #expect(!ChunkReclaim.isPastLease(modified: 1, now: 200, lease: bad))
        }
        #expect(!ChunkReclaim.isPastLease(modified: 1, now: 200, lease: -1))
        #expect(ChunkReclaim.isPastLease(modified: -.greatestFiniteMagnitude, now: .greatestFiniteMagnitude, lease: 1))

        // Renewed every eighth of the lease; never, or a clock set back: now.
        #expect(ChunkReclaim.isScanDue(scanned: nil, now: 1_000, lease: 800))
        #expect(ChunkReclaim.isScanDue(scanned: 900, now: 1_000, lease: 800))
        #expect(!ChunkReclaim.isScanDue(scanned: 901, now: 1_000, lease: 800))
        #expect(ChunkReclaim.isScanDue(scanned: 1_001, now: 1_000, lease: 800))
        #expect(ChunkReclaim.isScanDue(scanned: .nan, now: 1_000, lease: 800))
        // A copy is kept a lease and a half; a repair copy takes over at most half a lease of age. The margin covers
        // two missed renewals and an inherited age, with the lease itself left for the manifests' holders to be away.
        let lease = ChunkReclaim.defaultLeaseSeconds
        #expect(ChunkReclaim.keptFor(lease: lease) == lease * 1.5 && ChunkReclaim.maxInheritedAge(lease: lease) == lease / 2)
        #expect(lease + 2 * (lease / 8) <= ChunkReclaim.keptFor(lease: lease))

        #expect(!ChunkReclaim.isSettled(changedAt: nil, now: 1_000, stable: 0))
        #expect(ChunkReclaim.isSettled(changedAt: 400, now: 1_000, stable: 600))
        #expect(!ChunkReclaim.isSettled(changedAt: 401, now: 1_000, stable: 600))
        #expect(!ChunkReclaim.isSettled(changedAt: 2_000, now: 1_000, stable: 0))
        #expect(!ChunkReclaim.isSettled(changedAt: .nan, now: 1_000, stable: 0))
    }

    @Test func everyPeerMustAnswerFromTheSameMembership() {
        let (a, b, c) = (Self.hash("a"), Self.hash("b"), Self.hash("c"))
        let others = ["p2", "p3"]
        let answers: [String: ChunkReclaim.Answer] = [
            "p2": .init(referenced: [a], members: "m"),
            "p3": .init(referenced: [], members: "m"),
        ]
        #expect(ChunkReclaim.verdict(candidates: [a, b, c], others: others, members: "m", answers: answers) == .delete([b, c]))
        // A peer that did not answer, or that sees other members (manifests may be moving to one we do not know),
        // stops the round: nothing is deleted.
        var missing = answers
        missing["p3"] = nil
        guard case .keepAll(let why) = ChunkReclaim.verdict(candidates: [b], others: others, members: "m", answers: missing) else {
            Issue.record("a missing answer let chunks go")
            return
        }
        #expect(why.contains("p3"))
        var moving = answers
        moving["p2"]?.members = "m2"
        #expect(ChunkReclaim.verdict(candidates: [b], others: others, members: "m", answers: moving) == .keepAll("peer p2 sees another membership"))
        // A lying peer can only keep more: names it was not asked about change nothing, and it cannot make another
        // peer's use of a chunk count for less.
        let liar: [String: ChunkReclaim.Answer] = ["p2": .init(referenced: [a, b, c, Self.hash("d")], members: "m"), "p3": .init(referenced: [], members: "m")]
        #expect(ChunkReclaim.verdict(candidates: [a, b], others: others, members: "m", answers: liar) == .delete([]))
        let silentLiar: [String: ChunkReclaim.Answer] = ["p2": .init(referenced: [], members: "m"), "p3": .init(referenced: [b], members: "m")]
        #expect(ChunkReclaim.verdict(candidates: [a, b], others: others, members: "m", answers: silentLiar) == .delete([a]))
        // Alone (no other peer), a peer decides from what it holds; nothing to ask about is nothing to delete; a
        // candidate listed twice goes once.
        #expect(ChunkReclaim.verdict(candidates: [a, a], others: [], members: "m", answers: [:]) == .delete([a]))
        #expect(ChunkReclaim.verdict(candidates: [], others: others, members: "m", answers: [:]) == .delete([]))
    }
}
