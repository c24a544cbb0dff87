import Crypto
import Foundation
import GridCore
import GridProtocol
import NIOCore
public import NIOSSL
import SwiftASN1
import X509

/// A certificate authority of the manager: a P-256 key and a self-signed CA certificate in the data folder (both mode
/// 0600), made on first start. There are two, and neither signs what the other does:
/// - the manager's CA (`ca-key.pem`, `ca.pem`) issues only the manager its server certificate (for its host names and
///   addresses, fresh at each start). Workers pin it by its fingerprint, which the join string carries, and the CLI
///   trusts it for the manager;
/// - the peer CA (`peer-ca-key.pem`, `peer-ca.pem`) issues each worker's peer-port certificate. A worker owner holds
///   such a certificate and its key; were it signed by the manager's CA, it would pass for the manager's own, and its
///   holder could sit between the grid's users and the manager.
struct ManagerCA: Sendable {
    static let keyFile = "ca-key.pem"
    static let certFile = "ca.pem"
    static let peerKeyFile = "peer-ca-key.pem"
    static let peerCertFile = "peer-ca.pem"
    /// The organisational unit of the peer CA's name, and of every certificate it issues (`ManagerTrust` refuses a
    /// manager that shows one).
    static let peerUnit = ManagerTrust.peerUnit

    let key: Certificate.PrivateKey
    let certificate: Certificate
    let certificatePEM: String

    var fingerprint: String { ManagerTrust.fingerprint(der: Self.der(certificate)) }

    static func der(_ certificate: Certificate) -> [UInt8] {
        var serializer = DER.Serializer()
        try? serializer.serialize(certificate)
        return serializer.serializedBytes
    }

    /// The manager's CA in `directory`, made when there is none. A key others may read is refused.
    static func loadOrCreate(directory: String, now: Date = Date()) throws -> ManagerCA {
        try loadOrCreate(directory: directory, keyFile: keyFile, certFile: certFile, now: now) {
            try DistinguishedName {
                OrganizationName("CampusGrid")
                CommonName("CampusGrid manager CA \(UUID().uuidString.prefix(8))")
            }
        }
    }

    /// The peer CA in `directory`, made when there is none.
    static func loadOrCreatePeerCA(directory: String, now: Date = Date()) throws -> ManagerCA {
        try loadOrCreate(directory: directory, keyFile: peerKeyFile, certFile: peerCertFile, now: now) {
            try DistinguishedName {
                OrganizationName("CampusGrid")
                OrganizationalUnitName(peerUnit)
                CommonName("CampusGrid peer CA \(UUID().uuidString.prefix(8))")
            }
        }
    }

    private static func loadOrCreate(
        directory: String, keyFile: String, certFile: String, now: Date, name makeName: () throws -> DistinguishedName
    ) throws -> ManagerCA {
        let fm = FileManager.default
        let keyPath = (directory as NSString).appendingPathComponent(keyFile)
        let certPath = (directory as NSString).appendingPathComponent(certFile)
        if fm.fileExists(atPath: keyPath) {
            if let mode = (try fm.attributesOfItem(atPath: keyPath)[.posixPermissions] as? NSNumber)?.intValue, mode & 0o077 != 0 {
                throw GridError(.internal, "\(keyPath) may be read by other users (mode \(String(mode, radix: 8))); run `chmod 600 \(keyPath)`")
            }
            guard let keyPEM = fm.contents(atPath: keyPath).map({ String(decoding: $0, as: UTF8.self) }),
                let certPEM = fm.contents(atPath: certPath).map({ String(decoding: $0, as: UTF8.self) })
            else { throw GridError(.internal, "the CA in \(directory) is incomplete (\(keyFile), \(certFile)); move both away to make a new one") }
            let key = try Certificate.PrivateKey(pemEncoded: keyPEM)
            let cert = try Certificate(pemEncoded: certPEM)
            guard cert.publicKey == key.publicKey else { throw GridError(.internal, "\(certPath) does not belong to \(keyPath)") }
            return ManagerCA(key: key, certificate: cert, certificatePEM: certPEM)
        }
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let name = try makeName()
        let cert = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.publicKey,
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(20 * 365 * 86400),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: key)
        let keyPEM = try key.serializeAsPEM().pemString
        let certPEM = try cert.serializeAsPEM().pemString
        // Mode 0600 from the moment the file exists (`PrivateFile`): the key is never readable by others.
        try PrivateFile.write(Data(keyPEM.utf8), to: keyPath)
        try PrivateFile.write(Data(certPEM.utf8), to: certPath)
        return ManagerCA(key: key, certificate: cert, certificatePEM: certPEM)
    }

    /// A server certificate for `names` (DNS names) and `addresses` (IPv4/IPv6 text), with a fresh key.
    func issueServer(names: [String], addresses: [String], now: Date = Date()) throws -> (Certificate, Certificate.PrivateKey) {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        var alternatives: [GeneralName] = names.map { .dnsName($0) }
        for a in addresses {
            if let bytes = Self.addressBytes(a) { alternatives.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes)))) }
        }
        let subject = try DistinguishedName {
            OrganizationName("CampusGrid")
            CommonName(names.first ?? "campusgrid-manager")
        }
        let cert = try issueLeaf(publicKey: key.publicKey, subject: subject, alternatives: alternatives, days: 365, now: now)
        return (cert, key)
    }

    /// A leaf certificate this CA signs for `publicKey`: not a CA, for TLS servers and clients, valid from an hour ago.
    func issueLeaf(publicKey: Certificate.PublicKey, subject: DistinguishedName, alternatives: [GeneralName], days: Int, now: Date) throws
        -> Certificate
    {
        try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(Double(days) * 86400),
            issuer: certificate.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectAlternativeNames(alternatives)
            },
            issuerPrivateKey: key)
    }

    static func addressBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }
}

/// What the manager's TLS listeners present: its certificate chain and key, and the fingerprint of the CA that
/// workers pin (the manager's own CA, or the last certificate of an operator's chain given with `--tls-cert`).
public struct ManagerTLS: Sendable {
    public let chain: [NIOSSLCertificate]
    public let key: NIOSSLPrivateKey
    public let caFingerprint: String
    /// The CA certificate (PEM), for `--ca` files and the dashboard's download.
    public let caPEM: String

    /// The manager's own CA (made on first start) issues the server certificate, or the operator's files are used.
    static func load(config: ManagerConfig) throws -> ManagerTLS {
        if let certFile = config.tlsCertificateFile, let keyFile = config.tlsKeyFile {
            let chain = try NIOSSLCertificate.fromPEMFile(certFile)
            guard let leaf = chain.first else { throw GridError(.badRequest, "\(certFile) holds no certificate") }
            let key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
            // Workers pin the manager's certificate itself: they check no host names, and any CA above it (a public
            // one, a campus one that signs every host) signs others' certificates too. Renewing it needs new join
            // strings. (The manager's own CA, the default, signs nothing but the manager.)
            let caDER = try leaf.toDERBytes()
            let caPEM = try Certificate(derEncoded: caDER).serializeAsPEM().pemString
            return ManagerTLS(chain: chain, key: key, caFingerprint: ManagerTrust.fingerprint(der: caDER), caPEM: caPEM)
        }
        let ca = try ManagerCA.loadOrCreate(directory: config.dataDirectory)
        let (names, addresses) = hostIdentities(bindHost: config.host, extra: config.tlsNames)
        let (cert, key) = try ca.issueServer(names: names, addresses: addresses)
        let chain = [
            try NIOSSLCertificate(bytes: Array(try cert.serializeAsPEM().pemString.utf8), format: .pem),
            try NIOSSLCertificate(bytes: Array(ca.certificatePEM.utf8), format: .pem),
        ]
        let nioKey = try NIOSSLPrivateKey(bytes: Array(try key.serializeAsPEM().pemString.utf8), format: .pem)
        return ManagerTLS(chain: chain, key: nioKey, caFingerprint: ca.fingerprint, caPEM: ca.certificatePEM)
    }

    /// The names and addresses the server certificate covers: this host's name, localhost, the bound address (or,
    /// bound to every address, those of each interface), and any the operator adds (`--tls-name`).
    static func hostIdentities(bindHost: String, extra: [String]) -> (names: [String], addresses: [String]) {
        var names = ["localhost", ProcessInfo.processInfo.hostName]
        var addresses = ["127.0.0.1", "::1"]
        for item in [bindHost] + extra where !item.isEmpty && item != "0.0.0.0" && item != "::" {
            if ManagerCA.addressBytes(item) != nil { addresses.append(item) } else { names.append(item) }
        }
        if bindHost == "0.0.0.0" || bindHost == "::" {
            for device in (try? System.enumerateDevices()) ?? [] {
                if let ip = device.address?.ipAddress { addresses.append(ip) }
            }
        }
        var seen = Set<String>()
        return (names.filter { seen.insert($0).inserted }, addresses.filter { seen.insert($0).inserted })
    }

    /// TLS 1.3 for a listener.
    func serverContext() throws -> NIOSSLContext {
        var c = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        c.minimumTLSVersion = .tlsv13
        return try NIOSSLContext(configuration: c)
    }
}

/// Peer-port certificates on a TLS grid: the manager's own CA signs each worker's P-256 key, naming the worker id
/// (common name) and the address `PEERS` lists for it (subject alternative name). Peers and clients trust a peer port
/// only if it shows such a certificate; a worker's private key never leaves it. Issued at each `REGISTER`, for 30 days.
struct PeerCertificates: Sendable {
    let ca: ManagerCA

    var caPEM: String { ca.certificatePEM }

    /// A certificate for `keyPEM` (a P-256 public key, PEM) naming worker `workerId` reachable at `host`. Any other
    /// kind of key, or a key that does not parse, is refused with a reason.
    func issue(workerId: String, host: String, keyPEM: String, now: Date = Date()) throws(GridError) -> String {
        let key: Certificate.PublicKey
        do {
            key = Certificate.PublicKey(try P256.Signing.PublicKey(pemRepresentation: keyPEM))
        } catch {
            throw GridError(.badRequest, "tls_key must be a P-256 public key in PEM")
        }
        var alternatives: [GeneralName] = [.dnsName(workerId)]
        for address in Self.addresses(for: host) {
            if let bytes = ManagerCA.addressBytes(address) {
                alternatives.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes))))
            } else {
                alternatives.append(.dnsName(address))
            }
        }
        do {
            let subject = try DistinguishedName {
                OrganizationName("CampusGrid")
                OrganizationalUnitName(ManagerCA.peerUnit)
                CommonName(workerId)
            }
            return try ca.issueLeaf(publicKey: key, subject: subject, alternatives: alternatives, days: 30, now: now).serializeAsPEM().pemString
        } catch {
            throw GridError(.internal, "could not issue a peer certificate: \(error)")
        }
    }

    /// The names a peer certificate carries for `host` (pure): the host itself, and loopback's addresses when it is
    /// on loopback (a peer on one machine is reached at either).
    static func addresses(for host: String) -> [String] {
        var out = [host]
        if TransportChoice.isLoopback(host) { out += ["127.0.0.1", "localhost"] }
        var seen = Set<String>()
        return out.filter { !$0.isEmpty && seen.insert($0).inserted }
    }
}
