import Crypto
import Foundation
import GridClient
import GridCore
import GridSandbox
import GridTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `openssl` with its standard input held open by the test (s_server ends when its input does) and its output in a
/// file the test reads; stopped by PID when the test ends.
final class OpenSSLProcess: Sendable {
    private let process: Process
    private let input: Pipe
    let outputPath: String

    init(_ arguments: [String], folder: String) throws {
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

    var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    func send(_ line: String) { input.fileHandleForWriting.write(Data((line + "\n").utf8)) }

    /// The first line of the output holding `marker`, waited for at most `timeout` seconds.
    func line(containing marker: String, timeout: Double = 20) async -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let line = output.split(separator: "\n").first(where: { $0.contains(marker) }) { return String(line) }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

extension Integration.TLS {
    /// Issue 11's TLS, attacked by a user with a worker of her own: the manager gives her worker a peer certificate
    /// for a key she holds. She shows it on a port of hers, as if she were the manager (on a campus network she would
    /// be in the path by ARP or DNS spoofing, or a rogue access point). Neither the CLI nor a worker may take it for the
    /// manager's: the manager's CA vouches for the manager alone. Before, that CA signed peer certificates too, and
    /// both sent her what they send the manager (a password, a token, a join token).
    @Test func aWorkersPeerCertificatePassesNeitherForTheManagerWithTheCLINorWithAWorker() async throws {
        let grid = try TestGrid(label: "tlspose")
        defer { grid.shutdown() }
        try await grid.startManager(extra: ["--tls"])
        let mallory = try await grid.user("mallory")
        let malloryJoin = try #require(try await mallory.createToken(kind: "worker").join)

        // Her worker registers over the real grid port, with a key she keeps.
        let key = P256.Signing.PrivateKey()
        let client = try OpenSSLProcess(["s_client", "-connect", "127.0.0.1:\(grid.gridPort)", "-quiet", "-tls1_3"], folder: grid.root)
        defer { client.stop() }
        let token = String(malloryJoin.split(separator: "@")[0])
        func json(_ object: [String: Any]) throws -> String { String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self) }
        client.send(try json(["type": "HELLO", "id": 1, "version": 1, "token": token, "name": "mallory-box"]))
        _ = try #require(await client.line(containing: "HELLO_OK"), "no HELLO_OK: \(client.output)")
        client.send(
            try json([
                "type": "REGISTER", "id": 2, "resources": ["cpus": 1, "ram_gb": 1, "gpus": 0, "gpu_memory_gb": 0], "gpu_names": [] as [String],
                "tier": "restricted", "slots": 1, "host": "127.0.0.1", "port": 9, "running": [] as [String],
                "tls_key": key.publicKey.pemRepresentation,
            ]))
        let registered = try #require(await client.line(containing: "REGISTERED"), "no REGISTERED: \(client.output)")
        let answer = try #require(try JSONSerialization.jsonObject(with: Data(registered.utf8)) as? [String: Any])
        let certificate = try #require(answer["peer_certificate"] as? String, "\(answer.keys)")
        let authority = try #require(answer["peer_authority"] as? String)
        let files = (leaf: grid.root + "/mallory-leaf.pem", key: grid.root + "/mallory-key.pem", chain: grid.root + "/mallory-chain.pem")
        for (path, text) in [(files.leaf, certificate), (files.key, key.pemRepresentation), (files.chain, authority)] {
            #expect(FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]))
        }

        // She serves them, with the CA that issued them, where the victims think the manager is.
        let port = freeTCPPort()
        let posing = try OpenSSLProcess(
            ["s_server", "-accept", "\(port)", "-cert", files.leaf, "-key", files.key, "-cert_chain", files.chain, "-quiet", "-tls1_3"],
            folder: grid.root)
        defer { posing.stop() }
        // A connection it accepts and that is closed at once (the probe's handshake never starts).
        let listening = await eventually(timeout: 20, interval: 0.05) { (try? RawConnection(port: port)) != nil }
        #expect(listening, "openssl s_server did not listen on \(port)")

        // The CLI, trusting the manager's CA, refuses her before its request (and the token in it) leaves.
        let alice = try await grid.user("alice")
        let aliceToken = try #require(alice.token)
        let cli = try await grid.cli(["whoami", "--manager", "https://127.0.0.1:\(port)", "--ca", grid.root + "/manager/ca.pem"], token: aliceToken)
        #expect(cli.status != 0, "the CLI took her certificate for the manager's: \(cli.stdout)")
        // A worker whose join string pins the manager's CA refuses her before its HELLO (and the join token in it).
        let ownerJoin = try #require(try await grid.user("owner").createToken(kind: "worker").join)
        let fooled = try grid.spawn(
            "w-fooled", ["worker", "-m", "127.0.0.1:\(port)", "--token-file", try grid.tokenFile(ownerJoin), "--data-dir", grid.root + "/fooled", "--json"])
        await #expect(fooled.nextLine(timeout: 20) == nil, "it registered with her")
        await #expect(fooled.waitForExit(timeout: 30) != 0)
        #expect(fooled.errorLog.contains("certificate authority"), "\(fooled.errorLog.suffix(2000))")

        let heard = posing.output
        #expect(!heard.contains(aliceToken) && !heard.contains("GET "), "the CLI sent her its request:\n\(heard.prefix(2000))")
        #expect(!heard.contains("HELLO") && !heard.contains(String(ownerJoin.split(separator: "@")[0])), "the worker sent her its HELLO:\n\(heard.prefix(2000))")
    }
}
