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
        issuer = PeerCertificates(ca: try ManagerCA.loadOrCreate(directory: folder))
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
