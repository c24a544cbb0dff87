import Foundation
import GridCore
import GridProtocol
import Testing

private let now: Int64 = 1_700_000_000
private let manager = PeerTrust.Signer()
private let person = PeerTrust.Signer()
private let token = String(repeating: "ab", count: 32)

private func certificate(user: String = "alice", token: String? = token, by signer: PeerTrust.Signer = manager, at t: Int64 = now)
    -> PeerTrust.UserCertificate
{
    signer.grant(user: user, key: person.publicKey, holder: nil, now: t, tokenHash: token).certificate
}

/// A person's certificate names the API token it was granted under, and stands only while that token does
/// (`PeerTrust.Standing`): the manager decides from what its store holds under the token's hash, a peer keeps the
/// answer. Attacked as a stranger would: a token changed or removed, another user's or a worker's token, forged
/// signatures, boundary times.
@Suite("PeerTrust.Standing: a certificate stands while its token does")
struct TokenStandingTests {
    @Test func theTokenIsSignedWithTheCertificateAndCanBeNeitherChangedNorRemoved() {
        let c = certificate()
        #expect(c.tokenHash == token)
        #expect(PeerTrust.Standing.check(c, managerKey: manager.publicKey, now: now, holder: ("alice", "api")) == nil)
        var changed = c
        changed.tokenHash = String(repeating: "cd", count: 32)
        var removed = c
        removed.tokenHash = nil
        for forged in [changed, removed] {
            #expect(PeerTrust.Standing.check(forged, managerKey: manager.publicKey, now: now, holder: ("alice", "api"))?.code == .unauthorized)
            let session = PeerTrust.Pass(grant: PeerTrust.Grant(certificate: forged, forward: nil, managerKey: manager.publicKey), signer: person)
                .session(holder: "w-1", nonce: "0123456789abcdef", now: now)
            #expect(
                PeerTrust.check(session, managerKey: manager.publicKey, holder: "w-1", nonce: "0123456789abcdef", now: now) != nil,
                "a session with a certificate whose token was \(forged.tokenHash == nil ? "removed" : "changed") was accepted")
        }
    }

    @Test func aRevokedTokenAnotherUsersOrAWorkersTokenDoesNotStand() {
        let c = certificate()
        for holder in [nil, ("bob", "api"), ("alice", "worker"), ("alice", ""), ("", "api")] as [(user: String, kind: String)?] {
            let refusal = PeerTrust.Standing.check(c, managerKey: manager.publicKey, now: now, holder: holder)
            #expect(refusal?.code == .unauthorized && refusal?.message.contains("revoked") == true, "holder \(String(describing: holder))")
        }
    }

    @Test func aCertificateAnotherKeySignedOrOneExpiredOrWithNoTokenIsRefused() {
        let forged = certificate(by: PeerTrust.Signer())
        #expect(PeerTrust.Standing.check(forged, managerKey: manager.publicKey, now: now, holder: ("alice", "api"))?.code == .unauthorized)
        let old = certificate(at: now - PeerTrust.userCertificateSeconds - PeerTrust.clockSkewSeconds - 1)
        #expect(PeerTrust.Standing.check(old, managerKey: manager.publicKey, now: now, holder: ("alice", "api"))?.message.contains("expired") == true)
        // A certificate of an older manager names no token: it cannot be asked about, and the manager says so.
        let legacy = certificate(token: nil)
        #expect(PeerTrust.Standing.check(legacy, managerKey: manager.publicKey, now: now, holder: ("alice", "api"))?.code == .badRequest)
    }

    @Test(arguments: [Int64.min, -1, 0, Int64.max])
    func boundaryTimesNeitherTrapNorPass(t: Int64) {
        // Neither the manager's check nor the memo traps on the clock's or a certificate's extremes.
        var c = certificate()
        c.expires = t
        _ = PeerTrust.Standing.check(c, managerKey: manager.publicKey, now: t, holder: ("alice", "api"))
        var memo = PeerTrust.Standing.Memo()
        memo.record(token: token, stands: true, now: t, standsFor: t, certificateExpires: t)
        memo.record(token: "other", stands: false, now: t, standsFor: Int64.max, certificateExpires: t)
        #expect(memo.verdict(token: "other", now: t) != .stands)
        _ = memo.verdict(token: token, now: t)
    }

    @Test func aPeerAsksAgainOnceAStandingAnswerIsOldAndKeepsARevokedOneUntilTheCertificateExpires() {
        var memo = PeerTrust.Standing.Memo()
        #expect(memo.verdict(token: token, now: now) == .ask)
        memo.record(token: token, stands: true, now: now, standsFor: 60, certificateExpires: now + 3600)
        #expect(memo.verdict(token: token, now: now + 59) == .stands)
        #expect(memo.verdict(token: token, now: now + 60) == .ask)
        memo.record(token: token, stands: false, now: now + 60, standsFor: 60, certificateExpires: now + 3600)
        #expect(memo.verdict(token: token, now: now + 3599) == .revoked)
        #expect(memo.verdict(token: token, now: now + 3600) == .ask, "past its certificate's expiry the certificate is refused anyway")
        // A standing answer that raced the revoked one (a late or failed ask) does not undo it.
        memo.record(token: token, stands: true, now: now + 61, standsFor: 60, certificateExpires: now + 3600)
        #expect(memo.verdict(token: token, now: now + 61) == .revoked)
        // Nothing kept for 0 s or less: asked each time.
        memo.record(token: "t2", stands: true, now: now, standsFor: 0, certificateExpires: now + 3600)
        memo.record(token: "t3", stands: true, now: now, standsFor: -5, certificateExpires: now + 3600)
        #expect(memo.verdict(token: "t2", now: now) == .ask && memo.verdict(token: "t3", now: now) == .ask)
    }

    @Test func aFloodOfTokensKeepsTheMemoBounded() {
        var memo = PeerTrust.Standing.Memo()
        for i in 0..<(PeerTrust.Standing.Memo.limit + 500) {
            memo.record(token: "t\(i)", stands: true, now: now, standsFor: 60, certificateExpires: now + 3600)
            #expect(memo.count <= PeerTrust.Standing.Memo.limit)
        }
        #expect(memo.verdict(token: "t\(PeerTrust.Standing.Memo.limit + 499)", now: now) == .stands, "the newest answer is kept")
        // Revoked answers outlive a flood of standing ones.
        var kept = PeerTrust.Standing.Memo()
        kept.record(token: "revoked", stands: false, now: now, standsFor: 60, certificateExpires: now + 3600)
        for i in 0..<(PeerTrust.Standing.Memo.limit + 10) {
            kept.record(token: "t\(i)", stands: true, now: now, standsFor: 60, certificateExpires: now + 3600)
        }
        #expect(kept.verdict(token: "revoked", now: now) == .revoked, "a flood of standing answers pushed out a revoked one")
    }
}
