import Foundation
public import GridCore
import NIOCore
public import NIOSSL

/// TLS for peer ports: the CA that issues every peer's certificate and, for a worker, its own certificate and key.
/// A client (the CLI, or a peer connecting to another) trusts a peer port only if it shows a certificate from that CA;
/// a worker's listener shows its own and checks any certificate a connecting peer presents against the same CA.
/// Peers are reached by address, and which worker answers is proven by `PEER_AUTH`, so host names are not checked.
public struct PeerTLS: Sendable {
    public let caPEM: String
    private let client: NIOSSLContext
    private let server: NIOSSLContext?

    /// A client that only verifies peers (the CLI): `caPEM` from `--ca`.
    public init(caPEM: String) throws(GridError) {
        try self.init(caPEM: caPEM, certificatePEM: nil, keyPEM: nil)
    }

    /// A worker: `certificatePEM` for `keyPEM` (PEM), both from the manager's `REGISTERED`, signed by `caPEM`.
    public init(caPEM: String, certificatePEM: String?, keyPEM: String?) throws(GridError) {
        self.caPEM = caPEM
        do {
            let ca = try NIOSSLCertificate(bytes: Array(caPEM.utf8), format: .pem)
            var c = TLSConfiguration.makeClientConfiguration()
            c.minimumTLSVersion = .tlsv13
            c.trustRoots = .certificates([ca])
            c.certificateVerification = .noHostnameVerification
            var identity: (chain: [NIOSSLCertificateSource], key: NIOSSLPrivateKeySource)?
            if let certificatePEM, let keyPEM {
                let leaf = try NIOSSLCertificate(bytes: Array(certificatePEM.utf8), format: .pem)
                let key = try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)
                identity = ([.certificate(leaf), .certificate(ca)], .privateKey(key))
                c.certificateChain = [.certificate(leaf), .certificate(ca)]
                c.privateKey = .privateKey(key)
            }
            client = try NIOSSLContext(configuration: c)
            if let identity {
                var s = TLSConfiguration.makeServerConfiguration(certificateChain: identity.chain, privateKey: identity.key)
                s.minimumTLSVersion = .tlsv13
                s.trustRoots = .certificates([ca])
                // Clients (the CLI) show no certificate; a connecting peer shows its own, which must come from the CA.
                s.certificateVerification = .optionalVerification
                server = try NIOSSLContext(configuration: s)
            } else {
                server = nil
            }
        } catch {
            throw GridError(.badRequest, "the peer TLS material does not load: \(error)")
        }
    }

    /// The handler a connection to a peer starts with.
    public func clientHandler() throws -> NIOSSLClientHandler {
        try NIOSSLClientHandler(context: client, serverHostname: nil)
    }

    /// The handler an accepted connection starts with (nil for a client-only `PeerTLS`).
    public func serverHandler() -> NIOSSLServerHandler? {
        server.map { NIOSSLServerHandler(context: $0) }
    }
}
