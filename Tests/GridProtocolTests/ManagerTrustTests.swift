import Crypto
import Foundation
import GridCore
import GridProtocol
import SwiftASN1
import Testing
import X509

/// The pure trust decisions: fingerprints, join strings, the pinned-CA check, plain text or TLS.
@Suite("ManagerTrust")
struct ManagerTrustTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func der(_ c: Certificate) -> [UInt8] {
        var s = DER.Serializer()
        try! s.serialize(c)
        return s.serializedBytes
    }

    /// A CA and a leaf it signed, valid around `now`.
    static func pair(leafValidUntil: Date = now.addingTimeInterval(86400)) throws -> (ca: [UInt8], leaf: [UInt8]) {
        let caKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let caName = try DistinguishedName { CommonName("test CA \(UUID().uuidString.prefix(6))") }
        let ca = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: caKey.publicKey, notValidBefore: now.addingTimeInterval(-86400),
            notValidAfter: now.addingTimeInterval(86400 * 365), issuer: caName, subject: caName, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions { Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0)) },
            issuerPrivateKey: caKey)
        let leafKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let leaf = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: leafKey.publicKey, notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: leafValidUntil, issuer: caName, subject: try DistinguishedName { CommonName("manager") },
            signatureAlgorithm: .ecdsaWithSHA256, extensions: Certificate.Extensions(), issuerPrivateKey: caKey)
        return (der(ca), der(leaf))
    }

    @Test func aChainWithThePinnedCAThatSignedTheLeafIsTrusted() throws {
        let (ca, leaf) = try Self.pair()
        #expect(ManagerTrust.check(chain: [leaf, ca], pinned: ManagerTrust.fingerprint(der: ca), now: Self.now) == nil)
    }

    /// `manager --tls-cert`: a chain that ends in a root (the operator's CA) pins that root; one that ends below a root
    /// (a public CA's intermediate, which signs anyone's certificate) pins the manager's certificate itself, and a
    /// certificate of another holder from the same intermediate is refused.
    @Test func onlyARootIsPinnedAsTheManagersCA() throws {
        let (ca, leaf) = try Self.pair()
        #expect(ManagerTrust.isRoot(der: ca))
        #expect(!ManagerTrust.isRoot(der: leaf), "issued by another: no root")
        #expect(!ManagerTrust.isRoot(der: [0x30, 0x00]))
        // A self-named certificate that its own key did not sign is no root.
        let otherKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let name = try DistinguishedName { CommonName("looks like a root") }
        let forged = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: Certificate.PrivateKey(P256.Signing.PrivateKey()).publicKey,
            notValidBefore: Self.now.addingTimeInterval(-60), notValidAfter: Self.now.addingTimeInterval(60), issuer: name, subject: name,
            signatureAlgorithm: .ecdsaWithSHA256, extensions: Certificate.Extensions(), issuerPrivateKey: otherKey)
        #expect(!ManagerTrust.isRoot(der: Self.der(forged)))
        // The leaf pinned itself: trusted when presented, and any other certificate is not.
        let (_, another) = try Self.pair()
        #expect(ManagerTrust.check(chain: [leaf], pinned: ManagerTrust.fingerprint(der: leaf), now: Self.now) == nil)
        #expect(ManagerTrust.check(chain: [another, ca], pinned: ManagerTrust.fingerprint(der: leaf), now: Self.now) != nil)
    }

    /// Loopback is an address of 127.0.0.0/8, `::1` or `localhost`: a name that starts with "127." is anyone's.
    @Test(arguments: [
        ("127.0.0.1", true), ("127.1.2.3", true), ("localhost", true), ("LOCALHOST", true), ("::1", true), ("[::1]", true),
        ("127.evil.example", false), ("127.0.0.1.evil.example", false), ("127.0.0.1a", false), ("10.0.0.1", false), ("127..0.1", false),
    ])
    func loopbackIsAnAddressNotAName(host: String, loopback: Bool) {
        #expect(TransportChoice.isLoopback(host) == loopback)
    }

    @Test func theFingerprintIsCheckedCaseInsensitively() throws {
        let (ca, leaf) = try Self.pair()
        #expect(ManagerTrust.check(chain: [leaf, ca], pinned: ManagerTrust.fingerprint(der: ca).uppercased(), now: Self.now) == nil)
    }

    @Test func anotherCAIsRefusedAndTheMessageNamesBothFingerprints() throws {
        let (ca, leaf) = try Self.pair()
        let pinned = "sha256:" + String(repeating: "0", count: 64)
        let refusal = try #require(ManagerTrust.check(chain: [leaf, ca], pinned: pinned, now: Self.now))
        #expect(refusal.code == .unauthorized)
        #expect(refusal.message.contains(pinned))
        #expect(refusal.message.contains(ManagerTrust.fingerprint(der: ca)))
    }

    @Test func aLeafThatThePinnedCADidNotSignIsRefused() throws {
        let (ca, _) = try Self.pair()
        let (_, strangerLeaf) = try Self.pair()
        #expect(ManagerTrust.check(chain: [strangerLeaf, ca], pinned: ManagerTrust.fingerprint(der: ca), now: Self.now) != nil)
    }

    @Test func anExpiredLeafIsRefused() throws {
        let (ca, leaf) = try Self.pair(leafValidUntil: Self.now.addingTimeInterval(-1))
        let refusal = ManagerTrust.check(chain: [leaf, ca], pinned: ManagerTrust.fingerprint(der: ca), now: Self.now)
        #expect(refusal?.message.contains("not valid now") == true)
    }

    @Test func anEmptyChainIsRefused() {
        #expect(ManagerTrust.check(chain: [], pinned: "sha256:" + String(repeating: "a", count: 64), now: Self.now) != nil)
    }

    // MARK: Join strings

    @Test func aJoinStringCarriesTheTokenAndTheFingerprint() throws {
        let fp = "sha256:" + String(repeating: "a1", count: 32)
        let join = try JoinString(parsing: "cgw_0123@\(fp)\n")
        #expect(join.token == "cgw_0123" && join.caFingerprint == fp)
        #expect(join.description == "cgw_0123@\(fp)")
    }

    @Test func aBareTokenHasNoFingerprint() throws {
        #expect(try JoinString(parsing: "cgw_0123").caFingerprint == nil)
    }

    @Test(arguments: ["cgw_1@sha256:abc", "cgw_1@md5:" + String(repeating: "a", count: 64), "@sha256:" + String(repeating: "a", count: 64), "cgw_1@"])
    func aMalformedJoinStringIsRefused(text: String) {
        #expect(throws: GridError.self) { try JoinString(parsing: text) }
    }

    // MARK: Plain text or TLS

    @Test func loopbackMayStayPlainTextAndSaysSo() {
        let c = TransportChoice.decide(bindHost: "127.0.0.1", tlsAsked: false, insecurePlaintext: false)
        #expect(c == .plaintextLoopback)
        #expect(c.notice("the manager")?.contains("loopback") == true)
    }

    @Test(arguments: ["0.0.0.0", "10.1.2.3", "grid.campus.example"])
    func beyondLoopbackIsTLSUnlessPlainTextIsChosen(host: String) {
        #expect(TransportChoice.decide(bindHost: host, tlsAsked: false, insecurePlaintext: false) == .tls)
        let insecure = TransportChoice.decide(bindHost: host, tlsAsked: false, insecurePlaintext: true)
        #expect(insecure == .plaintextInsecure)
        #expect(insecure.notice("the manager")?.hasPrefix("WARNING") == true)
    }

    @Test func tlsCanBeAskedForOnLoopback() {
        #expect(TransportChoice.decide(bindHost: "127.0.0.1", tlsAsked: true, insecurePlaintext: false) == .tls)
    }

    @Test func aWorkerWithoutAPinRefusesARemoteManagerUnlessPlainTextIsChosen() throws {
        guard case .failure(let e) = TransportChoice.forWorker(managerHost: "10.0.0.1", pinned: false, insecurePlaintext: false) else {
            Issue.record("a bare token to a remote manager must be refused")
            return
        }
        #expect(e.message.contains("TOKEN@sha256"))
        #expect(try TransportChoice.forWorker(managerHost: "10.0.0.1", pinned: false, insecurePlaintext: true).get() == .plaintextInsecure)
        #expect(try TransportChoice.forWorker(managerHost: "10.0.0.1", pinned: true, insecurePlaintext: false).get() == .tls)
        #expect(try TransportChoice.forWorker(managerHost: "127.0.0.1", pinned: false, insecurePlaintext: false).get() == .plaintextLoopback)
    }
}

/// Trust on first use for the CLI (issue 11): the decision, event by event.
@Suite struct FirstUseTests {
    let ca = "sha256:" + String(repeating: "a", count: 64)
    let leaf = "sha256:" + String(repeating: "b", count: 64)
    let other = "sha256:" + String(repeating: "c", count: 64)

    @Test func aFirstContactTrustsTheTopOfTheChain() {
        #expect(FirstUse.decide(trusted: nil, presented: [leaf, ca]) == .trustNew(fingerprint: ca))
    }

    @Test func theSameCAIsSilentlyTrusted() {
        #expect(FirstUse.decide(trusted: ca, presented: [leaf, ca]) == .same)
    }

    @Test func anotherCAIsRefusedNamingBoth() {
        #expect(FirstUse.decide(trusted: ca, presented: [leaf, other]) == .changed(trusted: ca, presented: other))
        #expect(FirstUse.decide(trusted: ca, presented: [leaf]) == .changed(trusted: ca, presented: leaf))
    }

    @Test func noChainDecidesNothing() {
        #expect(FirstUse.decide(trusted: nil, presented: []) == nil)
        #expect(FirstUse.decide(trusted: ca, presented: []) == nil)
    }

    @Test func aPEMsFingerprintIsItsDERs() {
        let der: [UInt8] = Array("not really a certificate, but DER bytes all the same".utf8)
        let pem = "-----BEGIN CERTIFICATE-----\n" + Data(der).base64EncodedString(options: .lineLength64Characters) + "\n-----END CERTIFICATE-----\n"
        #expect(FirstUse.fingerprint(pem: pem) == ManagerTrust.fingerprint(der: der))
        #expect(FirstUse.fingerprint(pem: "no certificate here") == nil)
        #expect(FirstUse.fingerprint(pem: "-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n") == nil)
    }
}
