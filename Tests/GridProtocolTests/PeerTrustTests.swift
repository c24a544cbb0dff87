import Foundation
import GridCore
import GridProtocol
import Testing

private let now: Int64 = 1_700_000_000
private let manager = PeerTrust.Signer()
private let worker = PeerTrust.Signer()
private let there = PeerTrust.Expected(workerId: "w-1", host: "127.0.0.1", port: 9000)

private func credential(_ id: String = "w-1", host: String = "127.0.0.1", port: Int = 9000, key: String = worker.publicKey, at t: Int64 = now)
    -> PeerTrust.Credential
{
    manager.credential(workerId: id, host: host, port: port, key: key, now: t)
}

@Suite("PeerTrust: credentials, proofs, tickets")
struct PeerTrustTests {
    // MARK: Credentials

    @Test func aCredentialTheManagerSignedForTheListedWorkerAndAddressIsGood() {
        #expect(PeerTrust.check(credential(), managerKey: manager.publicKey, now: now, expected: there) == nil)
    }

    @Test func aCredentialSignedByAnyOtherKeyIsRefused() {
        let forged = PeerTrust.Signer().credential(workerId: "w-1", host: "127.0.0.1", port: 9000, key: worker.publicKey, now: now)
        #expect(PeerTrust.check(forged, managerKey: manager.publicKey, now: now, expected: there)?.code == .unauthorized)
    }

    @Test(arguments: [
        PeerTrust.Expected(workerId: "w-2", host: "127.0.0.1", port: 9000),
        PeerTrust.Expected(workerId: "w-1", host: "10.0.0.9", port: 9000),
        PeerTrust.Expected(workerId: "w-1", host: "127.0.0.1", port: 9001),
    ])
    func aCredentialForAnotherWorkerOrAddressIsRefused(expected: PeerTrust.Expected) {
        #expect(PeerTrust.check(credential(), managerKey: manager.publicKey, now: now, expected: expected)?.code == .unauthorized)
    }

    @Test func anyChangedFieldBreaksTheSignature() {
        var c = credential()
        c.port = 9001
        #expect(PeerTrust.check(c, managerKey: manager.publicKey, now: now)?.code == .unauthorized)
        c = credential()
        c.expires += 3600
        #expect(PeerTrust.check(c, managerKey: manager.publicKey, now: now)?.code == .unauthorized)
        c = credential()
        c.key = PeerTrust.Signer().publicKey
        #expect(PeerTrust.check(c, managerKey: manager.publicKey, now: now)?.code == .unauthorized)
    }

    /// Fields were joined by newlines: a worker that chose the id `"w-victim\nx"` got the manager to sign bytes that
    /// read as a credential of `w-victim` at host `"x\n…"`. Each field now goes behind its length, and the signature
    /// of one never passes for the other.
    @Test func aFieldWithANewlineCannotMoveIntoTheNext() {
        let asked = credential("w-victim\nx", host: "127.0.0.1")
        var forged = asked
        forged.workerId = "w-victim"
        forged.host = "x\n127.0.0.1"
        #expect(asked.signedBytes != forged.signedBytes)
        #expect(PeerTrust.check(forged, managerKey: manager.publicKey, now: now)?.code == .unauthorized)
        // The same for every signed text: a proof's fields, a ticket's.
        #expect(PeerTrust.challenge(nonce: "n\nw-2", workerId: "w-1", role: .client) != PeerTrust.challenge(nonce: "n", workerId: "w-1\nw-2", role: .client))
        #expect(PeerTrust.signedText("l", ["a\n1:b"]) != PeerTrust.signedText("l", ["a", "b"]))
    }

    /// A job's seed was a fixed function of its id: a checker saw that a run's seed was not its own job id's, and
    /// found the job it checks by trying ids. It is keyed with the manager's key: the same for every run and every
    /// manager that shares the key, and nothing a worker can compute.
    @Test func aJobsSeedIsKeyedWithTheManagersKey() throws {
        let again = try PeerTrust.Signer(rawRepresentation: manager.rawRepresentation)
        #expect(manager.jobSeed(for: 1234) == again.jobSeed(for: 1234))
        #expect(manager.jobSeed(for: 1234) != manager.jobSeed(for: 1235))
        #expect(manager.jobSeed(for: 1234) != PeerTrust.Signer().jobSeed(for: 1234))
        for id in [Int64.min, -1, 0, Int64.max] { _ = manager.jobSeed(for: id) }
    }

    @Test func workerIdsAndHostsAreMadeOfPlainCharacters() {
        for good in ["w-0123456789", "pc.lab_3-a", String(repeating: "a", count: 64)] { #expect(WorkerNaming.isWellFormed(id: good), "\(good)") }
        for bad in ["", "w-a\nb", "w/a", "w a", "w-\u{0}", "é", String(repeating: "a", count: 65), "w-victim\r"] {
            #expect(!WorkerNaming.isWellFormed(id: bad), "\(bad.debugDescription)")
        }
        for good in ["", "127.0.0.1", "::1", "[fe80::1%eth0]", "lab-pc.campus.example"] { #expect(WorkerNaming.isWellFormed(host: good), "\(good)") }
        for bad in ["x\n127.0.0.1", "a b", "host/path", "h\u{0}", String(repeating: "a", count: 256)] {
            #expect(!WorkerNaming.isWellFormed(host: bad), "\(bad.debugDescription)")
        }
    }

    @Test func anExpiredCredentialIsRefusedAfterTheAllowedSkew() {
        let c = credential()
        #expect(PeerTrust.check(c, managerKey: manager.publicKey, now: c.expires + PeerTrust.clockSkewSeconds) == nil)
        #expect(PeerTrust.check(c, managerKey: manager.publicKey, now: c.expires + PeerTrust.clockSkewSeconds + 1)?.code == .unauthorized)
    }

    @Test(arguments: [Int64.min, -1, 0, Int64.max])
    func extremeExpiriesNeverTrap(expires: Int64) {
        var c = credential()
        c.expires = expires
        #expect(PeerTrust.check(c, managerKey: manager.publicKey, now: now) != nil)
        #expect(PeerTrust.needsRenewal(c, now: now) == (expires < now + PeerTrust.credentialSeconds / 2))
    }

    @Test(arguments: ["", "not base64!", "AAAA", String(repeating: "A", count: 4000)])
    func malformedKeysAndSignaturesAreRefusedNotCrashed(junk: String) {
        var c = credential()
        c.signature = junk
        #expect(PeerTrust.check(c, managerKey: manager.publicKey, now: now) != nil)
        #expect(PeerTrust.check(credential(), managerKey: junk, now: now) != nil)
    }

    @Test func aCredentialIsRenewedWhenLessThanHalfItsLifeIsLeft() {
        let c = credential()
        #expect(!PeerTrust.needsRenewal(c, now: now))
        #expect(!PeerTrust.needsRenewal(c, now: now + PeerTrust.credentialSeconds / 2))
        #expect(PeerTrust.needsRenewal(c, now: now + PeerTrust.credentialSeconds / 2 + 1))
        #expect(PeerTrust.needsRenewal(nil, now: now))
    }

    // MARK: The handshake

    @Test func theAnsweringPeerIsTrustedOnlyWithAProofOverOurNonceByItsCredentialKey() {
        let nonce = PeerTrust.nonce()
        let proof = worker.proof(nonce: nonce, workerId: "w-1", role: .server)
        let good = PeerTrust.checkServer(
            credential: credential(), proof: proof, nonce: nonce, managerKey: manager.publicKey, now: now, expected: there)
        #expect(good == nil)
        // A listener with no credential, or replaying someone's credential without its key, is refused.
        #expect(PeerTrust.checkServer(credential: nil, proof: nil, nonce: nonce, managerKey: manager.publicKey, now: now, expected: there) != nil)
        let thief = PeerTrust.Signer().proof(nonce: nonce, workerId: "w-1", role: .server)
        #expect(
            PeerTrust.checkServer(credential: credential(), proof: thief, nonce: nonce, managerKey: manager.publicKey, now: now, expected: there)?.code
                == .unauthorized)
        // A proof for another nonce (a replay) or made in the other role does not count.
        let replay = worker.proof(nonce: PeerTrust.nonce(), workerId: "w-1", role: .server)
        #expect(
            PeerTrust.checkServer(credential: credential(), proof: replay, nonce: nonce, managerKey: manager.publicKey, now: now, expected: there)
                != nil)
        let reflected = worker.proof(nonce: nonce, workerId: "w-1", role: .client)
        #expect(
            PeerTrust.checkServer(
                credential: credential(), proof: reflected, nonce: nonce, managerKey: manager.publicKey, now: now, expected: there) != nil)
    }

    @Test func aConnectingPeerIsTrustedOnlyWithAGoodCredentialAndProof() {
        let nonce = PeerTrust.nonce()
        let c = credential("w-7", host: "10.0.0.7", port: 9100)
        #expect(
            PeerTrust.checkClient(
                credential: c, proof: worker.proof(nonce: nonce, workerId: "w-7", role: .client, audience: "w-1"), nonce: nonce,
                managerKey: manager.publicKey, now: now, audience: "w-1", link: .plainText) == nil)
        #expect(
            PeerTrust.checkClient(
                credential: c, proof: PeerTrust.Signer().proof(nonce: nonce, workerId: "w-7", role: .client, audience: "w-1"), nonce: nonce,
                managerKey: manager.publicKey, now: now, audience: "w-1", link: .plainText) != nil)
    }

    /// Over TLS the other side's certificate must name the worker that proves itself: another worker's name, or none,
    /// is refused; plain text says nothing either way.
    @Test func aLinksCertificateMustNameTheWorkerThatProvesItself() {
        let nonce = PeerTrust.nonce()
        let c = credential("w-7", host: "10.0.0.7", port: 9100)
        let proof = worker.proof(nonce: nonce, workerId: "w-7", role: .client, audience: "w-1")
        func check(_ link: PeerTrust.LinkIdentity) -> GridError? {
            PeerTrust.checkClient(credential: c, proof: proof, nonce: nonce, managerKey: manager.publicKey, now: now, audience: "w-1", link: link)
        }
        #expect(check(.certificate("w-7")) == nil)
        #expect(check(.plainText) == nil)
        #expect(check(.certificate("w-mallory"))?.code == .unauthorized)
        #expect(check(.certificate(nil))?.code == .unauthorized)
        #expect(PeerTrust.checkLink(.certificate("w-8"), proves: "w-7")?.message.contains("relays another worker") == true)
        #expect(PeerTrust.checkLink(.certificate("w-7"), proves: "w-7") == nil)
    }

    /// Worker M answers W's HELLO with honest B's nonce; W signs it and M relays W's PEER_AUTH to B, which took M for W.
    /// W's proof names M, whose credential W checked: B refuses it.
    @Test func aProofMadeOutToAnotherPeerIsRefused() {
        let nonceOfB = PeerTrust.nonce()
        let c = credential("w-7", host: "10.0.0.7", port: 9100)
        let madeForM = worker.proof(nonce: nonceOfB, workerId: "w-7", role: .client, audience: "w-mallory")
        #expect(
            PeerTrust.checkClient(credential: c, proof: madeForM, nonce: nonceOfB, managerKey: manager.publicKey, now: now, audience: "w-b", link: .plainText)?.code
                == .unauthorized)
        #expect(
            PeerTrust.checkClient(credential: c, proof: madeForM, nonce: nonceOfB, managerKey: manager.publicKey, now: now, audience: "w-mallory", link: .plainText)
                == nil)
    }

    @Test func noncesAreFreshAndLongEnough() {
        let a = PeerTrust.nonce()
        #expect(a.utf8.count == 32)
        #expect(a != PeerTrust.nonce())
    }

    // MARK: Tickets

    @Test func aTicketIsGoodOnlyForItsHolderUntilItExpires() {
        let t = manager.ticket(user: "ada", holder: "w-1", now: now)
        #expect(PeerTrust.check(t, managerKey: manager.publicKey, holder: "w-1", now: now) == nil)
        #expect(PeerTrust.check(t, managerKey: manager.publicKey, holder: "w-2", now: now)?.code == .forbidden)
        #expect(PeerTrust.check(t, managerKey: manager.publicKey, holder: "w-1", now: t.expires)?.code == .forbidden)
    }

    @Test func aTicketWithAnotherUserOrAForgedSignatureIsRefused() {
        var t = manager.ticket(user: "ada", holder: "w-1", now: now)
        t.user = "demo"
        #expect(PeerTrust.check(t, managerKey: manager.publicKey, holder: "w-1", now: now)?.code == .forbidden)
        let forged = PeerTrust.Signer().ticket(user: "demo", holder: "w-1", now: now)
        #expect(PeerTrust.check(forged, managerKey: manager.publicKey, holder: "w-1", now: now)?.code == .forbidden)
    }

    @Test func aForwardedRequestSignatureCoversTheTicketAndEveryByteOfTheRequest() {
        let t = manager.ticket(user: "ada", holder: "w-1", now: now)
        let request = Data(#"{"program":"def main(): return 1","task_id":"T1"}"#.utf8)
        let sig = worker.sign(PeerTrust.requestBytes(ticket: t, requestJSON: request))
        #expect(PeerTrust.isValid(signature: sig, over: PeerTrust.requestBytes(ticket: t, requestJSON: request), key: worker.publicKey))
        let changed = Data(#"{"program":"def main(): return 2","task_id":"T1"}"#.utf8)
        #expect(!PeerTrust.isValid(signature: sig, over: PeerTrust.requestBytes(ticket: t, requestJSON: changed), key: worker.publicKey))
        let other = manager.ticket(user: "bob", holder: "w-1", now: now)
        #expect(!PeerTrust.isValid(signature: sig, over: PeerTrust.requestBytes(ticket: other, requestJSON: request), key: worker.publicKey))
    }

    /// The memo of good tickets skips only the signature's verification: a changed field, a forged signature, another
    /// holder, an expiry or a new manager key are refused as `check` refuses them.
    @Test func aRememberedTicketStillHasItsHolderExpiryAndEveryFieldChecked() {
        var memo = PeerTrust.TicketMemo()
        let key = manager.publicKey
        let t = manager.ticket(user: "ada", holder: "w-1", now: now)
        #expect(memo.check(t, managerKey: key, holder: "w-1", now: now) == nil)
        #expect(memo.count == 1)
        #expect(memo.check(t, managerKey: key, holder: "w-1", now: now + 1) == nil)
        #expect(memo.check(t, managerKey: key, holder: "w-2", now: now)?.code == .forbidden, "another holder")
        #expect(memo.check(t, managerKey: key, holder: "w-1", now: t.expires)?.code == .forbidden, "expired")
        var other = t
        other.user = "demo"
        #expect(memo.check(other, managerKey: key, holder: "w-1", now: now)?.code == .forbidden, "another user, same signature")
        other = t
        other.expires += 3600
        #expect(memo.check(other, managerKey: key, holder: "w-1", now: now)?.code == .forbidden, "a longer life, same signature")
        let forged = PeerTrust.Signer().ticket(user: "ada", holder: "w-1", now: now)
        #expect(memo.check(forged, managerKey: key, holder: "w-1", now: now)?.code == .forbidden, "signed by another key")
        #expect(memo.count == 1, "only good tickets are remembered")
        // A new manager key: the remembered ticket is verified again, against the new key, and refused.
        let newManager = PeerTrust.Signer()
        #expect(memo.check(t, managerKey: newManager.publicKey, holder: "w-1", now: now)?.code == .forbidden)
        #expect(memo.count == 0)
    }

    @Test func theMemoOfGoodTicketsStaysBounded() {
        var memo = PeerTrust.TicketMemo()
        for i in 0..<(PeerTrust.TicketMemo.capacity + 5) {
            let t = manager.ticket(user: "u\(i)", holder: "w-1", now: now)
            #expect(memo.check(t, managerKey: manager.publicKey, holder: "w-1", now: now) == nil)
        }
        #expect(memo.count <= PeerTrust.TicketMemo.capacity)
    }

    @Test func aSignerSurvivesItsRawBytes() throws {
        let copy = try PeerTrust.Signer(rawRepresentation: manager.rawRepresentation)
        #expect(copy.publicKey == manager.publicKey)
    }

    // MARK: Sessions (a person's certificate and proof in place of the API token)

    private let person = PeerTrust.Signer()

    private func pass(user: String = "ada", holder: String? = "w-1", at t: Int64 = now) -> PeerTrust.Pass {
        PeerTrust.Pass(grant: manager.grant(user: user, key: person.publicKey, holder: holder, now: t), signer: person)
    }

    private func check(_ s: Msg.Session, holder: String = "w-1", nonce: String = "n-1", at t: Int64 = now) -> GridError? {
        PeerTrust.check(s, managerKey: manager.publicKey, holder: holder, nonce: nonce, now: t)
    }

    @Test func aSessionOpensOnlyAtThePeerAndOnTheConnectionItWasSignedFor() {
        let p = pass()
        #expect(p.grant.managerKey == manager.publicKey && p.grant.certificate.user == "ada" && p.grant.certificate.key == person.publicKey)
        let s = p.session(holder: "w-1", nonce: "n-1", now: now)
        #expect(s.forward?.user == "ada" && s.forward?.holder == "w-1")
        #expect(check(s) == nil)
        // Replayed by that peer at another one, or on another connection, it opens nothing.
        #expect(check(s, holder: "w-2")?.code == .unauthorized)
        #expect(check(s, nonce: "n-2")?.code == .unauthorized)
        // A forwarding ticket for another peer is not handed to this one.
        #expect(p.session(holder: "w-2", nonce: "n-1", now: now).forward == nil)
        // With no manager reachable the client shows its certificate alone: still a session, with nothing to forward.
        #expect(check(pass(holder: nil).session(holder: "w-1", nonce: "n-1", now: now)) == nil)
    }

    @Test func aCertificateIsGoodUntilItExpiresWithTheAllowedSkew() {
        let s = pass().session(holder: "w-1", nonce: "n-1", now: now)
        let end = s.certificate.expires
        #expect(end == now + PeerTrust.userCertificateSeconds)
        // Forwarding tickets are shorter-lived: without one (no manager), the certificate alone decides.
        var bare = s
        bare.forward = nil
        #expect(check(bare, at: end + PeerTrust.clockSkewSeconds) == nil)
        #expect(check(bare, at: end + PeerTrust.clockSkewSeconds + 1)?.code == .unauthorized)
    }

    @Test func aForgedOrAlteredSessionIsRefused() {
        let good = pass().session(holder: "w-1", nonce: "n-1", now: now)
        // A certificate the manager did not sign; one of the manager's with any field changed.
        let forged = PeerTrust.Pass(grant: PeerTrust.Signer().grant(user: "ada", key: person.publicKey, holder: "w-1", now: now), signer: person)
        #expect(check(forged.session(holder: "w-1", nonce: "n-1", now: now))?.code == .unauthorized)
        var s = good
        s.certificate.user = "bob"
        #expect(check(s)?.code == .unauthorized)
        s = good
        s.certificate.expires = Int64.max
        #expect(check(s)?.code == .unauthorized)
        // Someone else's certificate (seen by a peer) with a proof of their own key: the key is not the certificate's.
        let thief = PeerTrust.Signer()
        s = good
        s.proof = thief.sign(PeerTrust.sessionChallenge(nonce: "n-1", holder: "w-1", user: "ada"))
        #expect(check(s)?.code == .unauthorized)
        // Or the certificate re-made for the thief's key: not the manager's signature.
        s.certificate.key = thief.publicKey
        #expect(check(s)?.code == .unauthorized)
        // A forwarding ticket for someone else, not the manager's, or for another peer spoils the session.
        s = good
        s.forward = manager.ticket(user: "bob", holder: "w-1", now: now)
        #expect(check(s)?.code == .unauthorized)
        s.forward = PeerTrust.Signer().ticket(user: "ada", holder: "w-1", now: now)
        #expect(check(s)?.code == .unauthorized)
        s.forward = manager.ticket(user: "ada", holder: "w-2", now: now)
        #expect(check(s)?.code == .unauthorized)
    }

    @Test(arguments: [Int64.min, -1, 0, Int64.max])
    func extremeCertificateExpiriesNeverTrap(expires: Int64) {
        var s = pass().session(holder: "w-1", nonce: "n-1", now: now)
        s.certificate.expires = expires
        #expect(check(s) != nil)
    }

    @Test func aCertificateNeverPassesForACredentialOrATicketNorTheOtherWayRound() {
        let c = pass().grant.certificate
        let asTicket = PeerTrust.Ticket(user: c.user, holder: "w-1", expires: c.expires, signature: c.signature)
        #expect(PeerTrust.check(asTicket, managerKey: manager.publicKey, holder: "w-1", now: now) != nil)
        let asCredential = PeerTrust.Credential(workerId: c.user, host: "127.0.0.1", port: 9000, key: c.key, expires: c.expires, signature: c.signature)
        #expect(PeerTrust.check(asCredential, managerKey: manager.publicKey, now: now) != nil)
        let t = manager.ticket(user: "ada", holder: "w-1", now: now)
        var fromTicket = pass().session(holder: "w-1", nonce: "n-1", now: now)
        fromTicket.certificate.signature = t.signature
        #expect(check(fromTicket) != nil)
    }

    @Test(arguments: ["", "AAAA", "not base64!", String(repeating: "A", count: 44), Data(count: 33).base64EncodedString()])
    func onlyAnEd25519PublicKeyIsCertified(key: String) {
        #expect(!PeerTrust.isWellFormed(key: key))
        #expect(PeerTrust.isWellFormed(key: person.publicKey))
    }

    /// The peer's `HELLO_OK` as an honest worker `w-1` answers our nonce.
    private func answer(nonce: String, id: String = "w-1", signer: PeerTrust.Signer = worker, says: String? = nil) -> Msg.HelloOk {
        Msg.HelloOk(
            version: ProtocolVersion.current, workerId: says ?? id, owner: "", heartbeatSeconds: 0, credential: credential(id),
            proof: signer.proof(nonce: nonce, workerId: id, role: .server), nonce: PeerTrust.nonce())
    }

    @Test func aClientProvesItselfOnlyToAPeerThatProvedItIsTheWorkerItSays() {
        let nonce = PeerTrust.nonce()
        let key = manager.publicKey
        func check(
            _ ok: Msg.HelloOk, worker: String = "w-1", link: PeerTrust.LinkIdentity = .plainText, at: Int64 = now, host: String = "127.0.0.1",
            port: Int = 9000
        ) -> GridError? {
            PeerTrust.checkPeerForSession(ok, nonce: nonce, managerKey: key, now: at, worker: worker, link: link, host: host, port: port)
        }
        #expect(check(answer(nonce: nonce)) == nil)
        #expect(check(answer(nonce: nonce), link: .certificate("w-1")) == nil)
        // No proof, a stolen credential without its key, a proof over another nonce: nothing is shown.
        var bare = answer(nonce: nonce)
        bare.credential = nil
        #expect(check(bare)?.code == .unauthorized)
        #expect(check(answer(nonce: nonce, signer: PeerTrust.Signer()))?.code == .unauthorized)
        #expect(check(answer(nonce: PeerTrust.nonce()))?.code == .unauthorized)
        // It says it is another worker than it proves, or the tickets were asked for another one.
        #expect(check(answer(nonce: nonce, says: "w-2"))?.code == .unauthorized)
        #expect(check(answer(nonce: nonce), worker: "w-2")?.code == .unauthorized)
        // Its credential is not the manager's, or expired.
        var other = answer(nonce: nonce)
        other.credential = PeerTrust.Signer().credential(workerId: "w-1", host: "127.0.0.1", port: 9000, key: worker.publicKey, now: now)
        #expect(check(other)?.code == .unauthorized)
        #expect(check(answer(nonce: nonce), at: now + PeerTrust.credentialSeconds + PeerTrust.clockSkewSeconds + 1)?.code == .unauthorized)
        // Over TLS, a certificate of another worker (a peer relaying w-1's handshake), or one naming none.
        #expect(check(answer(nonce: nonce), link: .certificate("w-9"))?.code == .unauthorized)
        #expect(check(answer(nonce: nonce), link: .certificate(nil))?.code == .unauthorized)
        // The manager lists it elsewhere than the address dialled (traffic for another worker redirected to it).
        let listedAway = PeerTrust.Expected(workerId: "w-1", host: "10.0.0.5", port: 9000)
        var away = answer(nonce: nonce)
        away.credential = credential(listedAway.workerId, host: listedAway.host, port: listedAway.port)
        #expect(check(away, host: "10.0.0.5", port: 9000) == nil)
        #expect(check(away, host: "10.0.0.9", port: 9000)?.code == .unauthorized)
        #expect(check(away, host: "10.0.0.5", port: 9001)?.code == .unauthorized)
        // Loopback (a tunnel, a forwarded port) and names are not compared.
        #expect(check(away, host: "127.0.0.1", port: 4444) == nil)
        #expect(check(away, host: "::1", port: 4444) == nil)
        #expect(check(away, host: "lab-pc-3.campus.example", port: 9000) == nil)
    }

    // MARK: Mandates (what a peer shows another to read a person's data)

    @Test func aMandateIsTheManagersTicketOrTheCertificateWithItsDelegationForThatPeer() throws {
        let ticket = PeerTrust.Mandate(ticket: manager.readTicket(user: "ada", holder: "w-1", files: ["data.csv"], now: now))
        #expect(try PeerTrust.checkClaims(ticket, holder: "w-1", now: now).get() == PeerTrust.Reader(user: "ada", files: ["data.csv"]))
        #expect(PeerTrust.checkSignatures(ticket, managerKey: manager.publicKey) == nil)
        let s = pass().session(holder: "w-1", nonce: "n-1", now: now)
        let delegated = PeerTrust.Mandate(certificate: s.certificate, delegation: s.delegation)
        #expect(PeerTrust.checkSignatures(delegated, managerKey: manager.publicKey) == nil)
        #expect(try PeerTrust.checkClaims(delegated, holder: "w-1", now: now).get().user == "ada")
        #expect(s.delegation?.expires == now + PeerTrust.delegationSeconds)
        // Shown by another peer, or after it expired: nothing.
        for m in [ticket, delegated] {
            #expect(throws: GridError.self) { try PeerTrust.checkClaims(m, holder: "w-2", now: now).get() }
            #expect(throws: GridError.self) { try PeerTrust.checkClaims(m, holder: "w-1", now: now + PeerTrust.delegationSeconds + 1).get() }
        }
    }

    /// A session is checked on each request, not only when it opens: it ends with its certificate. A peer's link ends
    /// once its credential has expired and the manager no longer lists it (a worker that left, or whose bar lapsed with
    /// its credential, kept an idle link and was served again); a member's link outlives its credential.
    @Test func sessionsEndWithTheirCertificateAndPeerLinksWithCredentialAndMembership() {
        let c = pass().session(holder: "w-1", nonce: "n-1", now: now).certificate
        #expect(!PeerTrust.sessionLapsed(certificate: c, now: c.expires + PeerTrust.clockSkewSeconds))
        #expect(PeerTrust.sessionLapsed(certificate: c, now: c.expires + PeerTrust.clockSkewSeconds + 1))
        var extreme = c
        for e in [Int64.min, -1, 0, Int64.max] {
            extreme.expires = e
            _ = PeerTrust.sessionLapsed(certificate: extreme, now: Int64.min)
            _ = PeerTrust.sessionLapsed(certificate: extreme, now: Int64.max)
        }
        let expires = now + PeerTrust.credentialSeconds
        let later = expires + PeerTrust.clockSkewSeconds + 1
        #expect(!PeerTrust.peerLinkLapsed(credentialExpires: expires, isMember: false, now: expires))
        #expect(PeerTrust.peerLinkLapsed(credentialExpires: expires, isMember: false, now: later))
        #expect(!PeerTrust.peerLinkLapsed(credentialExpires: expires, isMember: true, now: later))
        #expect(PeerTrust.peerLinkLapsed(credentialExpires: nil, isMember: false, now: 0))
        #expect(!PeerTrust.peerLinkLapsed(credentialExpires: Int64.max, isMember: false, now: Int64.max))
    }

    /// A person who only writes to a peer gives it a forwarding ticket (to hand their tasks on), no delegation. A
    /// hostile peer showed that ticket as a mandate at the other peers, and listed and read every private key and file
    /// of the person's. A forwarding ticket reads nothing.
    @Test func aForwardingTicketIsNoMandate() {
        let forwarding = PeerTrust.Mandate(ticket: manager.ticket(user: "ada", holder: "w-evil", now: now))
        #expect(PeerTrust.checkSignatures(forwarding, managerKey: manager.publicKey) == nil)
        #expect(throws: GridError.self) { try PeerTrust.checkClaims(forwarding, holder: "w-evil", now: now).get() }
    }

    @Test func aForgedMandateIsRefused() {
        let s = pass().session(holder: "w-1", nonce: "n-1", now: now)
        let key = manager.publicKey
        // A delegation signed by anyone but the certificate's key (a peer that saw the certificate makes its own).
        var d = s.delegation!
        d.signature = PeerTrust.Signer().sign(d.signedBytes(user: "ada"))
        #expect(PeerTrust.checkSignatures(PeerTrust.Mandate(certificate: s.certificate, delegation: d), managerKey: key) != nil)
        // A delegation moved to another holder, or to another user's certificate.
        d = s.delegation!
        d.holder = "w-9"
        #expect(PeerTrust.checkSignatures(PeerTrust.Mandate(certificate: s.certificate, delegation: d), managerKey: key) != nil)
        let bob = pass(user: "bob").grant.certificate
        #expect(PeerTrust.checkSignatures(PeerTrust.Mandate(certificate: bob, delegation: s.delegation), managerKey: key) != nil)
        // A ticket not the manager's; half a mandate; nothing at all.
        #expect(PeerTrust.checkSignatures(PeerTrust.Mandate(ticket: PeerTrust.Signer().ticket(user: "ada", holder: "w-1", now: now)), managerKey: key) != nil)
        #expect(PeerTrust.checkSignatures(PeerTrust.Mandate(certificate: s.certificate), managerKey: key) != nil)
        #expect(PeerTrust.checkSignatures(PeerTrust.Mandate(), managerKey: key) != nil)
        // A session whose delegation is not the certificate key's for this peer is refused whole.
        var spoiled = s
        spoiled.delegation?.holder = "w-9"
        #expect(check(spoiled)?.code == .unauthorized)
    }

    @Test(arguments: [Int64.min, -1, 0, Int64.max])
    func extremeDelegationExpiriesNeverTrap(expires: Int64) {
        let s = pass().session(holder: "w-1", nonce: "n-1", now: now)
        var d = s.delegation!
        d.expires = expires
        let m = PeerTrust.Mandate(certificate: s.certificate, delegation: d)
        _ = PeerTrust.checkClaims(m, holder: "w-1", now: now)
        #expect(m.expires <= s.certificate.expires)
    }

    @Test func aRememberedMandateStillHasItsHolderAndExpiryChecked() throws {
        var memo = PeerTrust.MandateMemo()
        let s = pass().session(holder: "w-1", nonce: "n-1", now: now)
        let m = PeerTrust.Mandate(certificate: s.certificate, delegation: s.delegation)
        #expect(try memo.check(m, managerKey: manager.publicKey, holder: "w-1", now: now).get().user == "ada")
        #expect(memo.count == 1)
        #expect(throws: GridError.self) { try memo.check(m, managerKey: manager.publicKey, holder: "w-2", now: now).get() }
        #expect(throws: GridError.self) { try memo.check(m, managerKey: manager.publicKey, holder: "w-1", now: now + PeerTrust.delegationSeconds).get() }
        // Under another manager key it is checked again (and fails).
        #expect(throws: GridError.self) { try memo.check(m, managerKey: PeerTrust.Signer().publicKey, holder: "w-1", now: now).get() }
    }

    // MARK: A job's read ticket

    @Test func aJobsReadTicketReadsOnlyItsFilesAndForwardsNothing() throws {
        let t = manager.readTicket(user: "ada", holder: "w-1", files: ["data.csv", "weights.bin"], now: now)
        #expect(PeerTrust.checkForwarding(t)?.code == .forbidden)
        #expect(PeerTrust.checkForwarding(manager.ticket(user: "ada", holder: "w-1", now: now)) == nil)
        // Signed with its files, under a label of its own: neither its files nor its kind can be changed.
        #expect(PeerTrust.check(t, managerKey: manager.publicKey, holder: "w-1", now: now) == nil)
        var more = t
        more.files = ["data.csv", "weights.bin", "secrets.txt"]
        #expect(PeerTrust.check(more, managerKey: manager.publicKey, holder: "w-1", now: now) != nil)
        var plain = t
        plain.files = nil
        #expect(PeerTrust.check(plain, managerKey: manager.publicKey, holder: "w-1", now: now) != nil, "a read ticket passed for an ordinary one")
        let reader = try PeerTrust.checkClaims(PeerTrust.Mandate(ticket: t), holder: "w-1", now: now).get()
        #expect(reader == PeerTrust.Reader(user: "ada", files: ["data.csv", "weights.bin"]))
    }
}
