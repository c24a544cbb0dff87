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
        let worker = try await OpenSSLProcess.registerWorker(
            gridPort: grid.gridPort, token: String(malloryJoin.split(separator: "@")[0]), keyPEM: key.publicKey.pemRepresentation, peerPort: 9,
            folder: grid.root)
        defer { worker.process.stop() }
        let (certificate, authority) = (worker.certificatePEM, worker.authorityPEM)
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
