import Foundation
import GridCore
import GridProtocol
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// Trust on first use for `login` and `register` against an `https` manager whose CA the user was not given: the
/// chain the manager presents is read in a TLS handshake that sends nothing else, and its CA (the last certificate) is
/// what the CLI trusts from then on. Nothing is sent before the user's trust is settled.
public enum ManagerProbe {
    /// The chain (DER, leaf first) the TLS server at `host:port` presents. No request is sent.
    public static func presentedChain(host: String, port: Int, timeout: Double = 15) async throws -> [[UInt8]] {
        let seen = Box()
        var c = TLSConfiguration.makeClientConfiguration()
        c.minimumTLSVersion = .tlsv13
        c.certificateVerification = .none
        let context = try NIOSSLContext(configuration: c)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.milliseconds(Int64(timeout * 1000)))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = try NIOSSLClientHandler(context: context, serverHostname: nil) { certificates, promise in
                        seen.set(certificates.compactMap { try? $0.toDERBytes() })
                        // Only looked at: the connection is closed right after the handshake.
                        promise.succeed(.certificateVerified)
                    }
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .connect(host: host, port: port).get()
        let deadline = Date().addingTimeInterval(timeout)
        while seen.get().isEmpty && channel.isActive && Date() < deadline { try await Task.sleep(for: .milliseconds(10)) }
        try? await channel.close()
        let chain = seen.get()
        guard !chain.isEmpty else { throw GridError(.unreachable, "\(host):\(port) did not complete a TLS handshake") }
        return chain
    }

    /// The CA to trust from `chain`: its last certificate (the manager's own CA, or the top of an operator's chain).
    public static func authority(of chain: [[UInt8]]) throws -> (pem: String, fingerprint: String) {
        guard let last = chain.last else { throw GridError(.unreachable, "the manager presented no certificate") }
        let b64 = Data(last).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
        return ("-----BEGIN CERTIFICATE-----\n\(b64)\n-----END CERTIFICATE-----\n", ManagerTrust.fingerprint(der: last))
    }

    private final class Box: Sendable {
        private let value = Mutex<[[UInt8]]>([])
        func set(_ v: [[UInt8]]) { value.withLock { $0 = v } }
        func get() -> [[UInt8]] { value.withLock { $0 } }
    }
}

extension ManagerProbe {
    /// Whether something accepts TCP connections at `baseURL`'s host and port within `timeout` (issue 16: a client with
    /// several managers skips a dead one at once, instead of letting the HTTP client retry it until its deadline).
    static func accepts(_ baseURL: String, timeout: Double = 2) async -> Bool {
        guard let parts = URLComponents(string: baseURL), let host = parts.host else { return false }
        let port = parts.port ?? (parts.scheme == "https" ? 443 : 80)
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.milliseconds(Int64(timeout * 1000)))
                .connect(host: host, port: port).get()
            try? await channel.close()
            return true
        } catch {
            return false
        }
    }
}
