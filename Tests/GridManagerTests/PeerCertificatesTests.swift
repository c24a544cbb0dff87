import Crypto
import Foundation
import GridCore
import GridProtocol
import Testing
import SwiftASN1
import X509

@testable import GridManager

/// The manager's CA signing peer-port keys (issue 11): what it signs, and what it refuses.
@Suite struct PeerCertificatesTests {
    let issuer: PeerCertificates
    let folder: String

    init() throws {
        folder = NSTemporaryDirectory() + "cg-peercert-\(UUID().uuidString.prefix(8))"
        issuer = PeerCertificates(ca: try ManagerCA.loadOrCreatePeerCA(directory: folder))
    }

    static func der(pem: String) throws -> [UInt8] { ManagerCA.der(try Certificate(pemEncoded: pem)) }

    /// A worker owner holds a peer certificate and its key. Shown in place of the manager's, it must not pass: the
    /// peer CA that signs it is not the CA the join string pins (nor the one the CLI trusts), and the manager's CA
    /// signs only the manager. Before, the manager's CA signed both, and a peer certificate passed for the manager's.
    @Test func aPeerCertificateDoesNotPassForTheManagersWhateverChainComesWithIt() throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let managerCA = try ManagerCA.loadOrCreate(directory: folder)
        #expect(managerCA.fingerprint != issuer.ca.fingerprint, "two CAs")
        let (server, _) = try managerCA.issueServer(names: ["localhost"], addresses: ["127.0.0.1"])
        let managerChain = [ManagerCA.der(server), ManagerCA.der(managerCA.certificate)]
        #expect(ManagerTrust.check(chain: managerChain, pinned: managerCA.fingerprint, now: Date()) == nil, "the manager itself passes")

        let key = P256.Signing.PrivateKey()
        let leaf = try Self.der(pem: try issuer.issue(workerId: "w-evil", host: "127.0.0.1", keyPEM: key.publicKey.pemRepresentation))
        for chain in [[leaf], [leaf, ManagerCA.der(issuer.ca.certificate)], [leaf, ManagerCA.der(managerCA.certificate)],
            [leaf, ManagerCA.der(issuer.ca.certificate), ManagerCA.der(managerCA.certificate)]]
        {
            #expect(ManagerTrust.check(chain: chain, pinned: managerCA.fingerprint, now: Date()) != nil, "a chain of \(chain.count) passed")
        }
        // A peer certificate the manager's CA signed (as before this change; they last 30 days) is refused too.
        let old = try managerCA.issueLeaf(
            publicKey: Certificate.PublicKey(key.publicKey),
            subject: try DistinguishedName {
                OrganizationName("CampusGrid")
                OrganizationalUnitName("peer")
                CommonName("w-evil")
            }, alternatives: [.dnsName("localhost")], days: 30, now: Date())
        let refusal = ManagerTrust.check(chain: [ManagerCA.der(old), ManagerCA.der(managerCA.certificate)], pinned: managerCA.fingerprint, now: Date())
        #expect(refusal?.message.contains("peer certificate") == true, "\(String(describing: refusal))")
    }

    /// A client binds a peer's handshake to its TLS link by the worker its certificate names; only a peer
    /// certificate names one.
    @Test func aPeerCertificateNamesItsWorkerAndNoOtherCertificateNamesOne() throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let leaf = try issuer.issue(workerId: "w-42", host: "127.0.0.1", keyPEM: P256.Signing.PrivateKey().publicKey.pemRepresentation)
        #expect(ManagerTrust.peerWorkerId(certificate: try Self.der(pem: leaf)) == "w-42")
        let managerCA = try ManagerCA.loadOrCreate(directory: folder)
        let (server, _) = try managerCA.issueServer(names: ["localhost"], addresses: ["127.0.0.1"])
        #expect(ManagerTrust.peerWorkerId(certificate: ManagerCA.der(server)) == nil)
        #expect(ManagerTrust.peerWorkerId(certificate: [0x30, 0x00]) == nil)
    }

    @Test func onlyThePeerCAIsTakenForOne() throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let managerCA = try ManagerCA.loadOrCreate(directory: folder)
        #expect(ManagerTrust.isPeerAuthority(pem: issuer.caPEM))
        #expect(!ManagerTrust.isPeerAuthority(pem: managerCA.certificatePEM))
        let leaf = try issuer.issue(workerId: "w-1", host: "127.0.0.1", keyPEM: P256.Signing.PrivateKey().publicKey.pemRepresentation)
        #expect(!ManagerTrust.isPeerAuthority(pem: leaf), "a peer's own certificate is no CA")
        #expect(!ManagerTrust.isPeerAuthority(pem: "garbage"))
        // Each CA keeps its own files; loading again gives the same two.
        #expect(try ManagerCA.loadOrCreatePeerCA(directory: folder).fingerprint == issuer.ca.fingerprint)
        #expect(try ManagerCA.loadOrCreate(directory: folder).fingerprint == managerCA.fingerprint)
    }

    @Test func aP256KeyGetsACertificateTheCASignedNamingTheWorkerAndItsAddress() throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let key = P256.Signing.PrivateKey()
        let pem = try issuer.issue(workerId: "w-1", host: "10.1.2.3", keyPEM: key.publicKey.pemRepresentation)
        let cert = try Certificate(pemEncoded: pem)
        #expect(cert.publicKey == Certificate.PublicKey(key.publicKey))
        #expect(ManagerTrust.verify(leaf: Array(try cert.serializeAsPEM().derBytes), ca: ManagerCA.der(issuer.ca.certificate), now: Date()) == nil)
        let names = try #require(try cert.extensions.subjectAlternativeNames)
        #expect(names.contains(.dnsName("w-1")))
        #expect(names.contains(.ipAddress(ASN1OctetString(contentBytes: [10, 1, 2, 3]))))
        #expect(!names.contains(.ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))), "a campus address is not also loopback")
        #expect(try cert.extensions.basicConstraints == .notCertificateAuthority)
        #expect(cert.notValidAfter.timeIntervalSinceNow < 31 * 86400)
    }

    @Test func aLoopbackPeerIsNamedByEveryLoopbackName() {
        #expect(PeerCertificates.addresses(for: "127.0.0.1") == ["127.0.0.1", "localhost"])
        #expect(PeerCertificates.addresses(for: "localhost") == ["localhost", "127.0.0.1"])
        #expect(PeerCertificates.addresses(for: "lab-7.campus") == ["lab-7.campus"])
    }

    @Test("anything but a P-256 public key is refused, not signed", arguments: [
        "", "garbage", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        String(repeating: "A", count: 1_000),
    ])
    func junkKeysAreRefused(junk: String) {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        #expect(throws: GridError.self) { try issuer.issue(workerId: "w-1", host: "127.0.0.1", keyPEM: junk) }
    }

    @Test func anEd25519KeyIsRefused() {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let ed = Curve25519.Signing.PrivateKey().publicKey.rawRepresentation.base64EncodedString()
        let pem = "-----BEGIN PUBLIC KEY-----\n\(ed)\n-----END PUBLIC KEY-----\n"
        #expect(throws: GridError.self) { try issuer.issue(workerId: "w-1", host: "127.0.0.1", keyPEM: pem) }
    }

    @Test func aWorkerClaimingAHugeKeyIsRefusedByTheRangeCheck() {
        let reg = Msg.Register(resources: Resources(cpus: 1, ramGb: 1), tier: .bwrap, slots: 1, tlsKey: String(repeating: "A", count: 5_000))
        #expect(WorkerClaims.problem(.register(reg))?.message.contains("tls_key") == true)
    }
}

/// `manager --tls-cert CHAIN --tls-key KEY`: workers pin the manager's certificate itself, whatever the chain: any CA
/// above it (a public one, a campus one) signs others' certificates too, and workers check no host names.
@Suite struct OperatorCertificateTests {
    @Test func theJoinStringPinsTheCertificateItself() throws {
        let folder = NSTemporaryDirectory() + "cg-opcert-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let now = Date()
        /// A certificate for `subject`, with a fresh key, signed by `issuer` (itself when nil); `ca`: how many CAs may
        /// follow below it, nil for none (a server's).
        func make(_ subject: String, by issuer: (name: String, key: Certificate.PrivateKey)?, ca: Int?) throws -> (Certificate, Certificate.PrivateKey) {
            let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
            let extensions = try ca.map { n in try Certificate.Extensions { Critical(BasicConstraints.isCertificateAuthority(maxPathLength: n)) } }
            let certificate = try Certificate(
                version: .v3, serialNumber: .init(), publicKey: key.publicKey, notValidBefore: now - 3600, notValidAfter: now + 86400,
                issuer: try DistinguishedName { CommonName(issuer?.name ?? subject) }, subject: try DistinguishedName { CommonName(subject) },
                signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions ?? Certificate.Extensions(), issuerPrivateKey: issuer?.key ?? key)
            return (certificate, key)
        }
        let (root, rootKey) = try make("root", by: nil, ca: 1)
        let (mid, midKey) = try make("intermediate", by: ("root", rootKey), ca: 0)
        let (leaf, leafKey) = try make("grid.example.edu", by: ("intermediate", midKey), ca: nil)
        let (other, _) = try make("attacker.example", by: ("intermediate", midKey), ca: nil)
        let keyFile = folder + "/key.pem"
        try leafKey.serializeAsPEM().pemString.write(toFile: keyFile, atomically: true, encoding: .utf8)
        func pinned(_ chain: [Certificate]) throws -> String {
            let file = folder + "/chain-\(chain.count).pem"
            try chain.map { try $0.serializeAsPEM().pemString }.joined(separator: "\n").write(toFile: file, atomically: true, encoding: .utf8)
            var config = ManagerConfig(dataDirectory: folder)
            config.tlsCertificateFile = file
            config.tlsKeyFile = keyFile
            return try ManagerTLS.load(config: config).caFingerprint
        }
        #expect(try pinned([leaf, mid, root]) == ManagerTrust.fingerprint(der: ManagerCA.der(leaf)))
        #expect(try pinned([leaf, mid]) == ManagerTrust.fingerprint(der: ManagerCA.der(leaf)))
        // And the pin works: the chain as presented passes, another certificate from the same CA does not.
        let pin = try pinned([leaf, mid, root])
        #expect(ManagerTrust.check(chain: [leaf, mid, root].map(ManagerCA.der), pinned: pin, now: now) == nil)
        #expect(ManagerTrust.check(chain: [other, mid, root].map(ManagerCA.der), pinned: pin, now: now) != nil)
        // Only the grid's own shape (a certificate and the root that signed it) is trusted on first use by the CLI.
        #expect(!ManagerTrust.isGridShape([leaf, mid, root].map(ManagerCA.der)))
        #expect(!ManagerTrust.isGridShape([leaf, mid].map(ManagerCA.der)))
        #expect(ManagerTrust.isGridShape([mid, root].map(ManagerCA.der)), "an intermediate and the root that signed it have the shape")
    }
}
