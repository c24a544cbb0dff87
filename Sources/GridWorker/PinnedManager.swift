import Foundation
import GridCore
import GridProtocol
import NIOCore
import NIOSSL
import Synchronization

/// The worker's side of TLS to the manager: verifies the chain the manager presents against the CA fingerprint of the
/// join string (`ManagerTrust.check`, pure) during the handshake, so that nothing, not even `HELLO` with its token,
/// is sent to a manager that cannot show that CA. Keeps the refusal so the worker can say which CA it found.
final class PinnedManager: Sendable {
    let fingerprint: String?
    private let refused = Mutex<GridError?>(nil)

    init(fingerprint: String?) {
        self.fingerprint = fingerprint
    }

    /// Why the last handshake was refused, if it was.
    var refusal: GridError? { refused.withLock { $0 } }

    /// TLS 1.3, verified by the callback below (nil: plain text).
    func context() throws -> NIOSSLContext? {
        guard fingerprint != nil else { return nil }
        var c = TLSConfiguration.makeClientConfiguration()
        c.minimumTLSVersion = .tlsv13
        // The callback replaces the usual checks: the pinned CA, not the system's roots or a host name, is the identity.
        c.certificateVerification = .noHostnameVerification
        return try NIOSSLContext(configuration: c)
    }

    func handler(context: NIOSSLContext) throws -> NIOSSLClientHandler {
        try NIOSSLClientHandler(context: context, serverHostname: nil) { [self] certificates, promise in
            promise.succeed(self.verify(certificates))
        }
    }

    func verify(_ certificates: [NIOSSLCertificate]) -> NIOSSLVerificationResult {
        guard let fingerprint else { return .failed }
        let chain = certificates.compactMap { try? $0.toDERBytes() }
        if let error = ManagerTrust.check(chain: chain, pinned: fingerprint, now: Date()) {
            refused.withLock { $0 = error }
            return .failed
        }
        return .certificateVerified
    }
}
