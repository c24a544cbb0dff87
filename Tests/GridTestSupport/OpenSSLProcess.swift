import Foundation
public import GridProtocol

#if canImport(Glibc)
import Glibc
#endif

/// `openssl` with its standard input held open by the test (s_server ends when its input does) and its output in a
/// file the test reads; stopped by PID when the test ends.
public final class OpenSSLProcess: Sendable {
    private let process: Process
    private let input: Pipe
    public let outputPath: String

    public init(_ arguments: [String], folder: String) throws {
        outputPath = folder + "/openssl-\(UUID().uuidString.prefix(8)).out"
        FileManager.default.createFile(atPath: outputPath, contents: nil)
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        input = Pipe()
        process.standardInput = input
        process.standardOutput = FileHandle(forWritingAtPath: outputPath)
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
    }

    public var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    public func send(_ line: String) { input.fileHandleForWriting.write(Data((line + "\n").utf8)) }

    /// The first line of the output holding `marker`, waited for at most `timeout` seconds.
    public func line(containing marker: String, timeout: Double = 20) async -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let line = output.split(separator: "\n").first(where: { $0.contains(marker) }) { return String(line) }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    public func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// A worker registered by hand over a TLS grid's port (`openssl s_client`), with join token `token` and the P-256
    /// public key `keyPEM`: what a user with a worker of her own gets, a peer certificate for a key she holds. Keep
    /// `process` running while the worker should stay registered.
    public struct RegisteredWorker: Sendable {
        public var process: OpenSSLProcess
        public var id: String
        public var certificatePEM: String
        public var authorityPEM: String
        /// The peer credential the manager signed, when `peerKey` was given.
        public var credential: PeerTrust.Credential?
    }

    /// `peerKey`: the worker's Ed25519 peer key (`PeerTrust.Signer.publicKey`), for a peer credential.
    public static func registerWorker(
        gridPort: Int, token: String, keyPEM: String, peerPort: Int, folder: String, peerKey: String? = nil
    ) async throws -> RegisteredWorker {
        let client = try OpenSSLProcess(["s_client", "-connect", "127.0.0.1:\(gridPort)", "-quiet", "-tls1_3"], folder: folder)
        func json(_ object: [String: Any]) throws -> String { String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self) }
        var hello: [String: Any] = ["type": "HELLO", "id": 1, "version": ProtocolVersion.current, "token": token, "name": "mallory-box"]
        if let peerKey { hello["peer_key"] = peerKey }
        client.send(try json(hello))
        guard let hello = await client.line(containing: "HELLO_OK"),
            let ok = try JSONSerialization.jsonObject(with: Data(hello.utf8)) as? [String: Any], let id = ok["worker_id"] as? String
        else {
            client.stop()
            throw TestGridError("no HELLO_OK: \(client.output)")
        }
        client.send(
            try json([
                "type": "REGISTER", "id": 2, "resources": ["cpus": 1, "ram_gb": 1, "gpus": 0, "gpu_memory_gb": 0], "gpu_names": [] as [String],
                "tier": "restricted", "slots": 1, "host": "127.0.0.1", "port": peerPort, "running": [] as [String], "tls_key": keyPEM,
            ]))
        guard let registered = await client.line(containing: "REGISTERED"),
            let answer = try JSONSerialization.jsonObject(with: Data(registered.utf8)) as? [String: Any],
            let certificate = answer["peer_certificate"] as? String, let authority = answer["peer_authority"] as? String
        else {
            client.stop()
            throw TestGridError("no REGISTERED with a peer certificate: \(client.output)")
        }
        let credential = try (answer["credential"]).map {
            try GridJSON.decode(PeerTrust.Credential.self, from: JSONSerialization.data(withJSONObject: $0))
        }
        return RegisteredWorker(process: client, id: id, certificatePEM: certificate, authorityPEM: authority, credential: credential)
    }
}
