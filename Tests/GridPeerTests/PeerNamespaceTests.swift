import GridCore
import GridPeer
import GridProtocol
import Testing

@Suite("PeerNamespace and VersionRules")
struct PeerNamespaceTests {
    @Test func aUsersKeysLiveUnderTheirOwnPrefixOnly() {
        let ada = PeerNamespace.stored("user:id", user: "ada", kind: .memory)
        let bob = PeerNamespace.stored("user:id", user: "bob", kind: .memory)
        #expect(ada != bob)
        #expect(PeerNamespace.name(of: ada, user: "ada", kind: .memory) == "user:id")
        #expect(PeerNamespace.name(of: ada, user: "bob", kind: .memory) == nil)
        #expect(PeerNamespace.name(of: ada, user: nil, kind: .memory) == nil)
        #expect(PeerNamespace.name(of: ada, user: "ada", kind: .file) == nil)
    }

    @Test func noClientKeyCanReachIntoAnotherNamespace() {
        // A user whose name is a prefix of another's, or who puts the other's prefix into a key, stays in their own.
        let a = PeerNamespace.stored("x", user: "ad", kind: .memory)
        let b = PeerNamespace.stored("a\u{1e}x", user: "ad", kind: .memory)
        #expect(!a.hasPrefix(PeerNamespace.prefix(user: "ada", kind: .memory)))
        #expect(!b.hasPrefix(PeerNamespace.prefix(user: "ada", kind: .memory)))
        // Keys with control characters (every namespace mark) are refused before they get here.
        #expect(throws: GridError.self) { try PeerNames.validateKey("\u{2}ada\u{1e}user:id") }
        #expect(throws: GridError.self) { try PeerNames.validateKey("\u{3}\u{1e}x") }
    }

    @Test(arguments: ["ada", "bob_2", "a.b-c"]) func ordinaryUsernamesAreValid(name: String) {
        #expect(PeerNamespace.isValidUser(name))
    }

    @Test(arguments: ["", "a\u{1e}b", "a\u{2}", "ü", String(repeating: "a", count: 65)]) func otherUsernamesOwnNothing(name: String) {
        #expect(!PeerNamespace.isValidUser(name))
    }

    @Test func publicValuesCarryTheirOwnerAndOnlyTheOwnerMayWriteThem() {
        let v = PeerNamespace.wrap(.number(101), owner: "ada")
        #expect(PeerNamespace.unwrap(v)?.owner == "ada")
        #expect(PeerNamespace.unwrap(v)?.value == .number(101))
        #expect(PeerNamespace.mayWritePublic(current: nil, user: "bob", name: "k") == nil)
        #expect(PeerNamespace.mayWritePublic(current: v, user: "ada", name: "k") == nil)
        #expect(PeerNamespace.mayWritePublic(current: v, user: "bob", name: "k")?.code == .forbidden)
        #expect(PeerNamespace.mayWritePublic(current: .number(1), user: "ada", name: "k")?.code == .forbidden)
    }

    /// A public name's deletion names no owner, and a peer that holds nothing of the name (a new owner during churn)
    /// keeps anyone's: Mallory's deletion there made Alice's copy lose by version, and the old owner dropped it. A
    /// deletion bars only its own person's copies; another person's deletion does not replace one held.
    @Test func aStrangersDeletionOfAPublicNameIsNoBarToItsOwnersValue() {
        let notice = PeerNamespace.stored("notice", user: nil, kind: .memory)
        let file = PeerNamespace.stored("data.csv", user: nil, kind: .file)
        let hers = PeerNamespace.wrap(.string("by alice"), owner: "alice")
        for key in [notice, file] {
            #expect(!PeerNamespace.deletionBars(key, deletedBy: "mallory", value: hers))
            #expect(PeerNamespace.deletionBars(key, deletedBy: "alice", value: hers))
            // A deletion whose person is unknown (kept before seals named one): versions decide, as before.
            #expect(PeerNamespace.deletionBars(key, deletedBy: nil, value: hers))
            // A value naming no valid owner is no one's: versions decide.
            #expect(PeerNamespace.deletionBars(key, deletedBy: "mallory", value: .string("unwrapped")))
            #expect(PeerNamespace.deletionBars(key, deletedBy: "mallory", value: PeerNamespace.wrap(.number(1), owner: "a\u{1e}b")))
            // Another person's deletion does not replace one held; the same person's does, and so does a value.
            #expect(PeerNamespace.mayWrite(key, value: nil, current: nil, user: "mallory", deletedBy: "alice")?.code == .forbidden)
            #expect(PeerNamespace.mayWrite(key, value: nil, current: nil, user: "alice", deletedBy: "alice") == nil)
            #expect(PeerNamespace.mayWrite(key, value: nil, current: nil, user: "mallory") == nil)
            #expect(PeerNamespace.mayWrite(key, value: hers, current: nil, user: "alice", deletedBy: "mallory") == nil)
            // Her live value stays hers: a stranger's deletion of it is refused, as before.
            #expect(PeerNamespace.mayWrite(key, value: nil, current: hers, user: "mallory")?.code == .forbidden)
        }
        // A private key's deletion is its owner's alone already: versions decide.
        let diary = PeerNamespace.stored("diary", user: "alice", kind: .memory)
        #expect(PeerNamespace.deletionBars(diary, deletedBy: "mallory", value: .string("x")))
    }

    /// A job's read ticket names its input files exactly: listing under one of them as a prefix gave the job's worker
    /// the owner's other files that extend the name. Only the ticket's files are listed; other readers list the prefix.
    @Test func aReadTicketListsOnlyItsOwnFiles() {
        let input = PeerNamespace.stored("in.txt", user: "ada", kind: .file)
        let secret = PeerNamespace.stored("in.txt.secret", user: "ada", kind: .file)
        let other = PeerNamespace.stored("in.txt-2", user: "ada", kind: .file)
        #expect(PeerNamespace.mayRead(input, for: "ada", files: ["in.txt"]))
        #expect(PeerNamespace.listable([input, secret, other], for: "ada", files: ["in.txt"]) == [input])
        #expect(PeerNamespace.listable([input, secret], for: "ada", files: []) == [])
        #expect(PeerNamespace.listable([input, secret], for: "ada", files: nil) == [input, secret])
        // Another person's ticket lists none of Ada's.
        #expect(PeerNamespace.listable([input], for: "bob", files: ["in.txt"]) == [])
    }

    // MARK: Versions

    private let nowMs: Int64 = 1_700_000_000_000

    @Test(arguments: [Int64(0), -1, Int64.min, Int64.max]) func boundaryVersionsAreRefused(version: Int64) {
        #expect(VersionRules.check(version, nowMs: nowMs)?.code == .badRequest)
    }

    @Test func versionsUpToTheSkewAheadAreAccepted() {
        #expect(VersionRules.check(1, nowMs: nowMs) == nil)
        #expect(VersionRules.check(nowMs, nowMs: nowMs) == nil)
        #expect(VersionRules.check(nowMs + VersionRules.maxSkewMs, nowMs: nowMs) == nil)
        #expect(VersionRules.check(nowMs + VersionRules.maxSkewMs + 1, nowMs: nowMs) != nil)
    }

    @Test func oneBadVersionRefusesTheBatch() {
        #expect(VersionRules.check([1, nowMs, Int64.max], nowMs: nowMs) != nil)
        #expect(VersionRules.check([1, nowMs], nowMs: nowMs) == nil)
    }

    @Test func extremeClocksNeverTrap() {
        #expect(VersionRules.check(5, nowMs: Int64.max) == nil)
        #expect(VersionRules.check(Int64.max, nowMs: Int64.max) == nil)
        var t = MemoryTable()
        t.apply("a", .init(value: nil, version: Int64.min, origin: "w"))
        t.apply("b", .init(value: nil, version: Int64.max, origin: "w"))
        t.collectGarbage(now: Int64.min)
        t.collectGarbage(now: Int64.max)
        t.collectGarbage(now: nowMs)
        #expect(t.get("b") != nil)
        var clock = VersionClock()
        _ = clock.next(nowMs: Int64.max)
        #expect(clock.next(nowMs: 0) == Int64.max)
    }

    /// What a peer may read on another, for the person whose mandate it shows (nil: none): public names, and that
    /// person's own; never another's, whatever prefix or key it names.
    @Test func aPeerReadsPublicNamesAndOnlyTheMandatesUsersOwn() {
        for kind in [PeerNamespace.Kind.memory, .file] {
            #expect(PeerNamespace.mayRead(PeerNamespace.stored("x", user: nil, kind: kind), for: nil))
            #expect(PeerNamespace.mayRead(PeerNamespace.stored("x", user: "alice", kind: kind), for: "alice"))
            #expect(!PeerNamespace.mayRead(PeerNamespace.stored("x", user: "alice", kind: kind), for: nil))
            #expect(!PeerNamespace.mayRead(PeerNamespace.stored("x", user: "alice", kind: kind), for: "bob"))
            #expect(!PeerNamespace.mayRead(PeerNamespace.stored("x", user: "alicex", kind: kind), for: "alice"), "a user name is not a prefix of another")
            #expect(PeerNamespace.owner(of: PeerNamespace.stored("x\u{1e}y", user: "alice", kind: kind)) == "alice")
            #expect(PeerNamespace.owner(of: PeerNamespace.prefix(user: "alice", kind: kind)) == "alice")
            #expect(PeerNamespace.owner(of: PeerNamespace.stored("x", user: nil, kind: kind)) == nil)
        }
        for prefix in ["", "\u{2}", "\u{2}ali", "\u{3}", "a"] {
            #expect(!PeerNamespace.mayRead(prefix, for: "alice"), "prefix \(prefix.debugDescription) lists more than alice's")
        }
        #expect(PeerNamespace.owner(of: "\u{2}\u{1e}x") == nil && PeerNamespace.owner(of: "\u{2}bad name\u{1e}") == nil)
        // A job's read ticket: its files only; no memory key, other file or listing of the owner's.
        let files = ["in.csv"]
        #expect(PeerNamespace.mayRead(PeerNamespace.stored("in.csv", user: "alice", kind: .file), for: "alice", files: files))
        #expect(!PeerNamespace.mayRead(PeerNamespace.stored("other.csv", user: "alice", kind: .file), for: "alice", files: files))
        #expect(!PeerNamespace.mayRead(PeerNamespace.stored("in.csv", user: "alice", kind: .memory), for: "alice", files: files))
        #expect(!PeerNamespace.mayRead(PeerNamespace.prefix(user: "alice", kind: .file), for: "alice", files: files))
        #expect(PeerNamespace.mayRead(PeerNamespace.stored("shared", user: nil, kind: .file), for: "alice", files: files))
    }

    /// Which sealed entries a peer keeps: a person's own keys; a public name only with the person as the owner in its
    /// value, and never over another's; a job's write ticket, its prefix of the owner's files only.
    @Test func anEntrySealedForOnePersonNeverLandsOnAnothersKey() {
        func ok(_ e: GridError?) -> Bool { e == nil }
        func no(_ e: GridError?) -> Bool { e?.code == .forbidden }
        let mine = PeerNamespace.stored("diary", user: "alice", kind: .memory)
        let file = PeerNamespace.stored("results/a.txt", user: "alice", kind: .file)
        #expect(ok(PeerNamespace.mayWrite(mine, value: .string("x"), current: nil, user: "alice")))
        #expect(ok(PeerNamespace.mayWrite(mine, value: nil, current: .string("x"), user: "alice")))
        #expect(no(PeerNamespace.mayWrite(mine, value: .string("x"), current: nil, user: "mallory")))
        #expect(no(PeerNamespace.mayWrite(mine, value: nil, current: nil, user: "mallory")))
        #expect(no(PeerNamespace.mayWrite(PeerNamespace.stored("x", user: "alicex", kind: .memory), value: .null, current: nil, user: "alice")))
        // Public names: the owner in the value is the sealed person; a name held by another is never changed here.
        let notice = PeerNamespace.stored("notice", user: nil, kind: .memory)
        let hers = PeerNamespace.wrap(.string("hi"), owner: "alice")
        let his = PeerNamespace.wrap(.string("mine now"), owner: "mallory")
        #expect(ok(PeerNamespace.mayWrite(notice, value: hers, current: nil, user: "alice")))
        #expect(ok(PeerNamespace.mayWrite(notice, value: hers, current: hers, user: "alice")))
        #expect(ok(PeerNamespace.mayWrite(notice, value: nil, current: hers, user: "alice")))
        #expect(no(PeerNamespace.mayWrite(notice, value: hers, current: nil, user: "mallory")), "a value naming alice, sealed for mallory")
        #expect(no(PeerNamespace.mayWrite(notice, value: his, current: hers, user: "mallory")))
        #expect(no(PeerNamespace.mayWrite(notice, value: nil, current: hers, user: "mallory")))
        #expect(no(PeerNamespace.mayWrite(notice, value: .string("unwrapped"), current: nil, user: "alice")))
        #expect(no(PeerNamespace.mayWrite(notice, value: nil, current: .string("no owner"), user: "alice")))
        // Keys in no namespace, and no valid user.
        for key in ["plain", "\u{2}", "\u{4}x", ""] {
            #expect(no(PeerNamespace.mayWrite(key, value: .null, current: nil, user: "alice")), "\(key.debugDescription)")
        }
        #expect(no(PeerNamespace.mayWrite(mine, value: .null, current: nil, user: "")))
        #expect(no(PeerNamespace.mayWrite(mine, value: .null, current: nil, user: "bad name")))
        // A job's write ticket: that prefix of the owner's files, nothing else (no memory key, no public name).
        #expect(ok(PeerNamespace.mayWrite(file, value: .null, current: nil, user: "alice", files: "results/")))
        #expect(no(PeerNamespace.mayWrite(file, value: .null, current: nil, user: "alice", files: "")), "an empty prefix covers nothing")
        #expect(no(PeerNamespace.mayWrite(file, value: .null, current: nil, user: "alice", files: "other/")))
        #expect(no(PeerNamespace.mayWrite(PeerNamespace.stored("results/a.txt", user: "alice", kind: .memory), value: .null, current: nil, user: "alice", files: "results/")))
        #expect(no(PeerNamespace.mayWrite(PeerNamespace.stored("results/a.txt", user: nil, kind: .file), value: hers, current: nil, user: "alice", files: "results/")))
        #expect(no(PeerNamespace.mayWrite(PeerNamespace.stored("results/a.txt", user: "bob", kind: .file), value: .null, current: nil, user: "alice", files: "results/")))
    }

    /// A public name whose replicas disagree on its owner is read as the owner most replicas name, and is disputed
    /// (a conflict) on a tie: never the newest version alone, whatever the versions say.
    @Test func aDisputedPublicNameGoesToTheMostReplicasOrIsAConflict() {
        #expect(PeerNamespace.claims([]) == .agreed)
        #expect(PeerNamespace.claims(["alice", "alice"]) == .agreed, "one owner: no dispute")
        #expect(PeerNamespace.claims(["mallory", "alice", "alice"]) == .majority("alice"), "more replicas")
        #expect(PeerNamespace.claims(["alice", "mallory"]) == .disputed)
        #expect(PeerNamespace.claims(["a", "b", "b", "a"]) == .disputed)
    }

    /// A receiver measures a value as its writer did: the cheap bound counts 24 bytes a number, so a value of many
    /// small numbers the writer measured and took is measured again, not refused on the bound.
    @Test func aValueIsMeasuredAsItsWriterMeasuredIt() {
        let key = PeerNamespace.stored("k", user: "alice", kind: .memory)
        let ones = JSONValue.array(Array(repeating: .number(1), count: 100_000))
        #expect(ones.encodedSizeBound > PeerNames.maxValueBytes)
        #expect(EntryRules.check(key: key, origin: "w", value: ones)?.code == .badRequest, "the bound alone refuses it")
        #expect(EntryRules.check(key: key, origin: "w", value: ones, encodedSize: { _ in 200_001 }) == nil)
        #expect(EntryRules.check(key: key, origin: "w", value: ones, encodedSize: { _ in PeerNames.maxValueBytes + 129 })?.code == .badRequest)
        #expect(EntryRules.check(key: key, origin: "w", value: ones, encodedSize: { _ in Int.max })?.code == .badRequest)
    }

    /// The seal's allowance for a writer's slow clock is the allowance for a version ahead of a receiver's.
    @Test func aSealsSkewIsTheVersionsSkew() {
        #expect(PeerTrust.versionSkewSeconds * 1000 == VersionRules.maxSkewMs)
    }
}
