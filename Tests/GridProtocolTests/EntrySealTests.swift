import Foundation
import GridCore
import GridProtocol
import Testing

/// `PeerTrust.SealChecker`: a memory entry is kept only with its writer's seal, under a session its person opened with
/// that writer or the manager's write ticket for it, in date at the entry's version, over the entry as it stands.
@Suite struct EntrySealTests {
    let manager = PeerTrust.Signer()
    let writer = PeerTrust.Signer()
    let alice = PeerTrust.Signer()
    let now: Int64 = 1_800_000_000
    var nowMs: Int64 { now * 1000 }
    let key = "\u{2}alice\u{1e}diary"

    var credential: PeerTrust.Credential { manager.credential(workerId: "w-writer", host: "10.0.0.2", port: 9100, key: writer.publicKey, now: now) }

    /// Alice's session with the writer, from a client that writes: her certificate and her write grant to it.
    func session(
        holder: String = "w-writer", user: String = "alice", signer: PeerTrust.Signer? = nil, at: Int64? = nil, writeSeconds: Int64 = 3600
    ) -> PeerTrust.Authority {
        let signer = signer ?? alice
        let grant = manager.grant(user: user, key: signer.publicKey, holder: nil, now: at ?? now)
        let nonce = String(repeating: "ab", count: 16)
        let pass = PeerTrust.Pass(grant: grant, signer: signer, delegationSeconds: nil, writeSeconds: writeSeconds)
        return PeerTrust.Authority.session(pass.session(holder: holder, nonce: nonce, now: at ?? now))!
    }

    func seal(_ value: JSONValue?, version: Int64? = nil, key: String? = nil, authority: PeerTrust.Authority? = nil, credential c: PeerTrust.Credential? = nil)
        -> String
    {
        writer.seal(
            key: key ?? self.key, value: value, version: version ?? nowMs, origin: "w-writer", authority: authority ?? session(),
            credential: c ?? credential)
    }

    func check(
        _ value: JSONValue?, version: Int64? = nil, key: String? = nil, origin: String = "w-writer", seal: String?
    ) -> Result<PeerTrust.Sealed, GridError> {
        var checker = PeerTrust.SealChecker(managerKey: manager.publicKey)
        return checker.check(key: key ?? self.key, value: value, version: version ?? nowMs, origin: origin, seal: seal)
    }

    func refused(_ r: Result<PeerTrust.Sealed, GridError>, _ words: String) -> Bool {
        guard case .failure(let e) = r else { return false }
        return e.code == .forbidden && e.message.contains(words)
    }

    @Test func aSessionSealedEntryIsAlicesAndAnyChangeBreaksIt() throws {
        let value = JSONValue.object(["page": .number(1), "text": .string("dear diary")])
        let s = seal(value)
        #expect(try check(value, seal: s).get() == PeerTrust.Sealed(user: "alice", filePrefix: nil))
        // A deletion is sealed the same way.
        #expect(try check(nil, seal: seal(nil)).get().user == "alice")
        // Another value, version, key, or a deletion in its place: the writer's signature no longer covers it.
        #expect(refused(check(.string("forged"), seal: s), "was not signed by its writer"))
        #expect(refused(check(nil, seal: s), "was not signed by its writer"))
        #expect(refused(check(value, version: nowMs + 1, seal: s), "was not signed by its writer"))
        #expect(refused(check(value, key: "\u{2}alice\u{1e}other", seal: s), "was not signed by its writer"))
        // Passed off as another peer's write.
        #expect(refused(check(value, origin: "w-other", seal: s), "not by its origin"))
    }

    /// The person an entry's seal names (checked when it came, or by whoever kept it): a session's or a write ticket's; nothing for text
    /// that is no seal.
    @Test func aSealsPersonIsReadFromItsText() {
        #expect(PeerTrust.Seal.person(text: seal(nil)) == "alice")
        let ticket = manager.writeTicket(user: "carol", holder: "w-writer", prefix: "out/", now: now, seconds: 60)
        #expect(PeerTrust.Seal.person(text: seal(.string("x"), key: "\u{2}carol\u{1f}out/a", authority: PeerTrust.Authority(ticket: ticket))) == "carol")
        #expect(PeerTrust.Seal.person(text: "{}") == nil)
        #expect(PeerTrust.Seal.person(text: "not json") == nil)
        #expect(PeerTrust.Seal.person(text: nil) == nil)
    }

    /// `signatureChecks` counts what a check cost (`SealStrikes` charges a sender's failed entries with it): the
    /// credential, certificate and grant once, remembered after; each entry's own signature once; nothing for an
    /// entry refused before any signature.
    @Test func theSignatureChecksASealCostAreCounted() throws {
        var checker = PeerTrust.SealChecker(managerKey: manager.publicKey)
        let value = JSONValue.string("x")
        _ = try checker.check(key: key, value: value, version: nowMs, origin: "w-writer", seal: seal(value)).get()
        #expect(checker.signatureChecks == 4)
        let other = JSONValue.string("y")
        _ = try checker.check(key: key, value: other, version: nowMs, origin: "w-writer", seal: seal(other)).get()
        #expect(checker.signatureChecks == 5, "the parts checked before are remembered")
        let forged = PeerTrust.Signer().seal(key: key, value: value, version: nowMs, origin: "w-writer", authority: session(), credential: credential)
        #expect(refused(checker.check(key: key, value: value, version: nowMs, origin: "w-writer", seal: forged), "was not signed by its writer"))
        #expect(checker.signatureChecks == 6)
        #expect(refused(checker.check(key: key, value: value, version: nowMs, origin: "w-writer", seal: "{}"), "malformed"))
        #expect(checker.signatureChecks == 6)
        // A good entry sent again (a replay, a repair pass's copy) costs no check: it is remembered whole.
        let again = seal(other)
        for _ in 0..<100 { _ = try checker.check(key: key, value: other, version: nowMs, origin: "w-writer", seal: again).get() }
        #expect(checker.signatureChecks == 6)
        // A forged one sent again costs its check each time: it is never remembered (and `SealStrikes` counts it).
        _ = checker.check(key: key, value: value, version: nowMs, origin: "w-writer", seal: forged)
        #expect(checker.signatureChecks == 7)
    }

    @Test func aSealNeedsTheManagersCredentialAndThePersonsOwnProof() throws {
        let value = JSONValue.string("x")
        // No seal, junk, an oversized one.
        #expect(refused(check(value, seal: nil), "no seal"))
        #expect(refused(check(value, seal: "{}"), "malformed"))
        #expect(refused(check(value, seal: String(repeating: " ", count: EntrySealRules.maxSealBytes + 1)), "malformed"))
        // A credential another key signed (a writer that made its own).
        let selfMade = PeerTrust.Signer().credential(workerId: "w-writer", host: "10.0.0.2", port: 9100, key: writer.publicKey, now: now)
        #expect(refused(check(value, seal: seal(value, credential: selfMade)), "credential the manager did not sign"))
        // A certificate another key signed.
        let forgedGrant = PeerTrust.Signer().grant(user: "alice", key: alice.publicKey, holder: nil, now: now)
        let nonce = String(repeating: "cd", count: 16)
        let forged = PeerTrust.Pass(grant: forgedGrant, signer: alice, delegationSeconds: nil).session(holder: "w-writer", nonce: nonce, now: now)
        #expect(refused(check(value, seal: seal(value, authority: PeerTrust.Authority.session(forged)!)), "certificate the manager did not sign"))
        // Alice's grant to another peer, replayed by this writer.
        #expect(refused(check(value, seal: seal(value, authority: session(holder: "w-other"))), "not to its writer"))
        // Mallory's certificate with Alice's grant: Mallory's key did not sign it.
        var stolen = session(user: "mallory", signer: PeerTrust.Signer())
        stolen.grant = session().grant
        #expect(refused(check(value, seal: seal(value, authority: stolen)), "mallory's key did not sign"))
        // A session that gave no write grant (a client that only read or ran tasks), and no authority at all.
        var bare = session()
        bare.grant = nil
        #expect(refused(check(value, seal: seal(value, authority: bare)), "without its write grant"))
        let readOnly = PeerTrust.Pass(grant: manager.grant(user: "alice", key: alice.publicKey, holder: nil, now: now), signer: alice, writeSeconds: nil)
        #expect(PeerTrust.Authority.session(readOnly.session(holder: "w-writer", nonce: nonce, now: now)) == nil)
        #expect(refused(check(value, seal: seal(value, authority: PeerTrust.Authority())), "no authority"))
        // Both at once is neither.
        var both = session()
        both.ticket = manager.writeTicket(user: "alice", holder: "w-writer", prefix: "out/", now: now, seconds: 60)
        #expect(refused(check(value, seal: seal(value, authority: both)), "no authority"))
    }

    @Test func versionsOutsideTheCredentialOrCertificateAreRefusedWithoutATrap() throws {
        let value = JSONValue.bool(true)
        for version in [Int64.min, -1, 0, 1, Int64.max, Int64.max - 1, nowMs - 3_600_000, nowMs + 13 * 3_600_000] {
            #expect(refused(check(value, version: version, seal: seal(value, version: version)), "outside"), "version \(version)")
        }
        // Within the credential (10 minutes), the 12 hours a peer cut off from its manager goes on with it, and the
        // skew: good.
        for version in [nowMs, nowMs + 599_000, nowMs - 29_000, nowMs + 3_500_000] {
            #expect((try? check(value, version: version, seal: seal(value, version: version)).get()) != nil, "version \(version)")
        }
        // A credential in date, but a certificate that ended a day before: a session cannot be backdated past it.
        let old = session(at: now - 86_400)
        #expect(refused(check(value, seal: seal(value, authority: old)), "outside its person's certificate"))
        // A write grant counts for its hour (or less, as its client gave), never after.
        let hour = nowMs + 3_590_000
        #expect((try? check(value, version: hour, seal: seal(value, version: hour)).get()) != nil)
        let after = nowMs + 3_700_000
        #expect(refused(check(value, version: after, seal: seal(value, version: after)), "outside its write grant"))
        let short = nowMs + 60_000
        #expect(refused(check(value, version: short, seal: seal(value, version: short, authority: session(writeSeconds: 10))), "outside its write grant"))
        // A client asking for a day gets the hour.
        #expect(session(writeSeconds: 86_400).grant?.expires == now + 3600)
    }

    @Test func aWriteTicketCoversItsHolderAndItsTimeOnly() throws {
        let ticket = manager.writeTicket(user: "alice", holder: "w-writer", prefix: "results/", now: now, seconds: 3600)
        let key = "\u{2}alice\u{1f}results/total.txt"
        let manifest = JSONValue.object(["size": .number(3)])
        let good = seal(manifest, key: key, authority: PeerTrust.Authority(ticket: ticket))
        #expect(try check(manifest, key: key, seal: good).get() == PeerTrust.Sealed(user: "alice", filePrefix: "results/"))
        // Another holder's ticket, one the manager did not sign, one used after it ended or before it began.
        let theirs = manager.writeTicket(user: "alice", holder: "w-other", prefix: "results/", now: now, seconds: 3600)
        #expect(refused(check(manifest, key: key, seal: seal(manifest, key: key, authority: .init(ticket: theirs))), "not its writer"))
        var widened = ticket
        widened.prefix = ""
        #expect(refused(check(manifest, key: key, seal: seal(manifest, key: key, authority: .init(ticket: widened))), "did not sign"))
        let late = nowMs + 3_700_000
        let c = manager.credential(workerId: "w-writer", host: "10.0.0.2", port: 9100, key: writer.publicKey, now: late / 1000)
        #expect(refused(check(manifest, version: late, key: key, seal: seal(manifest, version: late, key: key, authority: .init(ticket: ticket), credential: c)), "outside its write ticket"))
        let early = nowMs - 400_000
        let c2 = manager.credential(workerId: "w-writer", host: "10.0.0.2", port: 9100, key: writer.publicKey, now: early / 1000)
        #expect(refused(check(manifest, version: early, key: key, seal: seal(manifest, version: early, key: key, authority: .init(ticket: ticket), credential: c2)), "outside its write ticket"))
        // A ticket with an expiry at the end of time does not trap.
        let endless = manager.writeTicket(user: "alice", holder: "w-writer", prefix: "r", now: Int64.max - 5, seconds: Int64.max)
        #expect(endless.expires == Int64.max)
    }

    @Test func theCheckerRemembersPartsByTheirWholeContent() throws {
        var checker = PeerTrust.SealChecker(managerKey: manager.publicKey)
        let value = JSONValue.string("v")
        #expect((try? checker.check(key: key, value: value, version: nowMs, origin: "w-writer", seal: seal(value)).get()) != nil)
        // The same credential signature with another worker's key in it is not taken from memory.
        var swapped = credential
        let mallory = PeerTrust.Signer()
        swapped.key = mallory.publicKey
        let forged = mallory.seal(key: key, value: value, version: nowMs, origin: "w-writer", authority: session(), credential: swapped)
        guard case .failure(let e) = checker.check(key: key, value: value, version: nowMs, origin: "w-writer", seal: forged) else {
            Issue.record("a credential with a swapped key passed on a remembered signature")
            return
        }
        #expect(e.message.contains("credential the manager did not sign"))
    }

    @Test func aValuesDigestIsItsStructureNotItsSpelling() throws {
        func decoded(_ text: String) throws -> JSONValue { try GridJSON.decode(JSONValue.self, from: Data(text.utf8)) }
        let a = try decoded(#"{"b": [1, 2.5, "x"], "a": {"z": null, "y": true}}"#)
        let b = try decoded(#"{"a":{"y":true,"z":null},"b":[1.0,2.5,"x"]}"#)
        #expect(PeerTrust.digest(of: a) == PeerTrust.digest(of: b))
        // As the wire carries it: written and read back, any number of times.
        for v in [a, .number(1e16), .number(0.1), .number(-0.0), .number(Double(Int64.max)), .string("é\u{301}\u{0}\n\"")] {
            var x = v
            for _ in 0..<3 { x = try GridJSON.decode(JSONValue.self, from: GridJSON.encode(x)) }
            #expect(PeerTrust.digest(of: x) == PeerTrust.digest(of: v), "\(v)")
        }
        // Different structures never share one.
        let distinct: [JSONValue] = [
            .array([.string("a"), .string("b")]), .array([.string("ab")]), .object(["a": .string("b")]), .string("ab"), .null, .bool(false),
            .number(0), .array([]), .object([:]), .array([.array([])]), .string(""),
        ]
        #expect(Set(distinct.map(PeerTrust.digest(of:))).count == distinct.count)
    }

    /// Which keys the person may write is asked first, with the person the seal claims: a forgery for a key its person
    /// may not write is refused for that, before (and whatever) its signatures.
    @Test func thePersonsRightToTheKeyIsAskedBeforeAnySignature() {
        var checker = PeerTrust.SealChecker(managerKey: manager.publicKey)
        var junk = PeerTrust.Seal(credential: credential, authority: session(user: "mallory"), signature: "AAAA")
        junk.credential.signature = "BBBB"
        var asked: [PeerTrust.Sealed] = []
        let r = checker.check(key: key, value: .null, version: nowMs, origin: "w-writer", seal: junk.text()) { claimed in
            asked.append(claimed)
            return GridError(.forbidden, "not yours")
        }
        guard case .failure(let e) = r else {
            Issue.record("a refused person passed")
            return
        }
        #expect(e.message == "not yours" && asked == [PeerTrust.Sealed(user: "mallory", filePrefix: nil)])
    }

    /// A writer whose clock runs behind the manager's versions its first writes after a renewal before the
    /// credential's and certificate's issue: up to 5 minutes of that is allowed, no more.
    @Test func aWriterWhoseClockIsSlowIsAllowedTheVersionSkew() {
        let value = JSONValue.string("v")
        let slow = nowMs - 290_000
        #expect((try? check(value, version: slow, seal: seal(value, version: slow)).get()) != nil)
        let slower = nowMs - 320_000
        #expect(refused(check(value, version: slower, seal: seal(value, version: slower)), "outside"))
    }

    /// A peer will not seal under a grant that has expired, or that runs further ahead of its clock than a grant
    /// counts for (the client's clock is ahead, and every replica would refuse what it sealed): it says so at once.
    @Test func aGrantRunningAheadOfThePeersClockIsRefusedWithTheReason() {
        func grant(_ expires: Int64) -> PeerTrust.WriteGrant { PeerTrust.WriteGrant(holder: "w", expires: expires, signature: "") }
        #expect(PeerTrust.grantRefusal(grant(now + 3600), now: now) == nil)
        #expect(PeerTrust.grantRefusal(grant(now + 3600 + 300), now: now) == nil, "within the skew")
        #expect(PeerTrust.grantRefusal(grant(now + 1), now: now) == nil)
        #expect(PeerTrust.grantRefusal(grant(now), now: now)?.contains("expired") == true)
        #expect(PeerTrust.grantRefusal(grant(now + 7200), now: now)?.contains("clock runs") == true)
        // Boundaries never trap: far ahead is a clock running ahead, behind is expired.
        for (expires, at) in [(Int64.max, now), (now, Int64.min), (Int64.max, Int64.min)] {
            #expect(PeerTrust.grantRefusal(grant(expires), now: at)?.contains("clock runs") == true, "\(expires) at \(at)")
        }
        for (expires, at) in [(Int64.min, now), (now, Int64.max), (Int64.min, Int64.max)] {
            #expect(PeerTrust.grantRefusal(grant(expires), now: at)?.contains("expired") == true, "\(expires) at \(at)")
        }
    }
}
