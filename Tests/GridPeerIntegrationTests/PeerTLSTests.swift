import Crypto
import Foundation
import GridClient
import GridCore
import GridProtocol
import GridSandbox
import GridTestSupport
import SwiftASN1
import Testing
import X509

#if canImport(Glibc)
import Glibc
#endif

/// Issue 11: on a TLS grid the peer ports speak TLS 1.3 with certificates from the manager's CA; clients and peers
/// trust nothing else, and nothing readable crosses the wire.
@Suite(.serialized) struct PeerTLSTests {
    /// A certificate authority the grid has never seen, and a certificate it issued for `key` (both PEM).
    static func strangerCA(for key: P256.Signing.PrivateKey) throws -> (ca: String, leaf: String) {
        let caKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let caName = try DistinguishedName { CommonName("Mallory's CA") }
        let now = Date()
        let ca = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: caKey.publicKey, notValidBefore: now - 3600,
            notValidAfter: now + 86400, issuer: caName, subject: caName, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions { Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0)) },
            issuerPrivateKey: caKey)
        let leaf = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: now - 3600, notValidAfter: now + 86400, issuer: caName, subject: try DistinguishedName { CommonName("w-rogue") },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
            },
            issuerPrivateKey: caKey)
        return (try ca.serializeAsPEM().pemString, try leaf.serializeAsPEM().pemString)
    }

    /// A peer that relays another's handshake: Mallory's worker has a peer certificate (for a key she holds) and her
    /// relay shows it to Alice's CLI while it passes the bytes on to an honest peer over a TLS link of its own. The
    /// honest peer's credential and proof pass through intact, but Alice's CLI sees that the TLS certificate names
    /// Mallory's worker, not the one that proved itself, and stops: no session, no proof of Alice's, goes through.
    @Test func theCLIProvesNothingToAPeerThatRelaysAnothersHandshake() async throws {
        let g = try await PeerGrid(label: "peer-tls-relay", managerExtra: ["--tls"])
        defer { g.shutdown() }
        let honest = try await g.startPeer("honest")
        let mallory = try await g.grid.user("mallory")
        let join = try #require(try await mallory.createToken(kind: "worker").join)
        let key = P256.Signing.PrivateKey()
        let relayPort = freeTCPPort()
        let worker = try await OpenSSLProcess.registerWorker(
            gridPort: g.grid.gridPort, token: String(join.split(separator: "@")[0]), keyPEM: key.publicKey.pemRepresentation, peerPort: relayPort,
            folder: g.grid.root)
        defer { worker.process.stop() }
        let dir = g.grid.root + "/relay"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (name, text) in [("leaf.pem", worker.certificatePEM), ("key.pem", key.pemRepresentation), ("chain.pem", worker.authorityPEM)] {
            #expect(FileManager.default.createFile(atPath: dir + "/" + name, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]))
        }
        // s_server (her certificate) ⇄ s_client (to the honest peer), joined by a FIFO; what the victim sends is kept in
        // `sent`. The link onward opens only once the victim's first line came, so no HELLO deadline runs before.
        let script = """
            cd \(dir) && mkfifo back && exec openssl s_server -accept \(relayPort) -cert leaf.pem -key key.pem -cert_chain chain.pem -quiet -tls1_3 0<>back \
              | { IFS= read -r first; { printf '%s\\n' "$first"; cat; } | tee sent | openssl s_client -connect 127.0.0.1:\(honest.port) -quiet -tls1_3 > back; }
            """
        let relay = Process()
        relay.executableURL = URL(fileURLWithPath: "/bin/sh")
        relay.arguments = ["-c", script]
        relay.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try relay.run()
        defer {
            kill(-relay.processIdentifier, SIGKILL)
            kill(relay.processIdentifier, SIGKILL)
            relay.waitUntilExit()
        }
        let listening = await eventually(timeout: 20, interval: 0.05) { (try? RawConnection(port: relayPort)) != nil }
        #expect(listening, "the relay did not listen on \(relayPort)")

        let asked = try await g.cli(["get-mem", "--port", "\(relayPort)", "--ca", g.grid.root + "/manager/ca.pem", "--key", "anything"], timeout: 60)
        #expect(asked.status != 0 && asked.stderr.contains("relays another worker"), "status \(asked.status): \(asked.stderr)")
        let sent = (try? String(contentsOfFile: dir + "/sent", encoding: .utf8)) ?? ""
        #expect(sent.contains("HELLO"), "the CLI's HELLO never went through the relay, so the test proves nothing: \(sent.prefix(500))")
        #expect(!sent.contains("SESSION") && !sent.contains(g.token), "the CLI proved Alice to the relay: \(sent.prefix(2000))")
    }

    /// The answering peer's side of a relayed handshake: a worker's TLS certificate must name the worker it proves to
    /// be. Mallory has two workers, each with a peer certificate and a credential of its own; she opens a TLS link to an
    /// honest peer with one's certificate and proves herself as the other (as a relay passing on another worker's
    /// proof over its own TLS session would). Refused; with the matching certificate, the same proof is taken.
    @Test func aPeerWhoseCertificateNamesAnotherWorkerThanItsProofIsRefused() async throws {
        let g = try await PeerGrid(label: "peer-tls-mismatch", managerExtra: ["--tls"])
        defer { g.shutdown() }
        let honest = try await g.startPeer("honest")
        let mallory = try await g.grid.user("mallory")
        var workers: [(tls: PeerTLS, signer: PeerTrust.Signer, id: String, credential: PeerTrust.Credential)] = []
        var processes: [OpenSSLProcess] = []
        defer { for p in processes { p.stop() } }
        for _ in 0..<2 {
            let join = try #require(try await mallory.createToken(kind: "worker").join)
            let key = P256.Signing.PrivateKey()
            let signer = PeerTrust.Signer()
            let w = try await OpenSSLProcess.registerWorker(
                gridPort: g.grid.gridPort, token: String(join.split(separator: "@")[0]), keyPEM: key.publicKey.pemRepresentation,
                peerPort: freeTCPPort(), folder: g.grid.root, peerKey: signer.publicKey)
            processes.append(w.process)
            let tls = try PeerTLS(caPEM: w.authorityPEM, certificatePEM: w.certificatePEM, keyPEM: key.pemRepresentation)
            workers.append((tls, signer, w.id, try #require(w.credential)))
        }
        func connect(tlsOf a: Int, proving b: Int) async throws -> PeerLink {
            let (signer, id, credential) = (workers[b].signer, workers[b].id, workers[b].credential)
            return try await PeerLink.connectAsPeer(host: "127.0.0.1", port: honest.port, nonce: PeerTrust.nonce(), timeout: 20, tls: workers[a].tls) {
                ok, _ in
                Msg.PeerAuth(credential: credential, proof: signer.proof(nonce: ok.nonce ?? "", workerId: id, role: .client, audience: ok.workerId))
            }
        }
        do {
            let l = try await connect(tlsOf: 0, proving: 1)
            l.close()
            Issue.record("a peer whose certificate names \(workers[0].id) was taken as \(workers[1].id)")
        } catch let e as GridError {
            #expect(e.code == .unauthorized && e.message.contains("relays another worker"), "\(e)")
        }
        let matching = try await connect(tlsOf: 1, proving: 1)
        matching.close()
    }

    @Test func peersOfATLSGridServeOverTLSAndTrustOnlyTheirCA() async throws {
        let g = try await PeerGrid(label: "peer-tls", managerExtra: ["--tls"])
        defer { g.shutdown() }
        let peers = try await g.startPeers(2)
        let a = try await g.link(peers[0])
        let b = try await g.link(peers[1])

        // The seed's flows over TLS: values and files set through one peer read back through the other (the peers'
        // own links are TLS too), and a task runs.
        for i in 0..<20 {
            _ = try await a.request(.setMem(Msg.SetMem(key: "k\(i)", value: .string("tls-secret-\(i)"))), timeout: 60)
        }
        for i in 0..<20 {
            guard case .memResult(let r) = try await b.request(.getMem(Msg.MemKey(key: "k\(i)")), timeout: 60).message else {
                throw TestGridError("no MEM_RESULT")
            }
            #expect(r.value == .string("tls-secret-\(i)"))
        }
        let bytes = Data("file bytes over tls".utf8).base64EncodedString()
        _ = try await a.request(.putFile(Msg.PutFile(filename: "t.txt", data: bytes)), timeout: 60)
        guard case .fileInfo(let f) = try await b.request(.getFile(Msg.FileRef(filename: "t.txt")), timeout: 60).message else {
            throw TestGridError("no FILE_INFO")
        }
        #expect(f.data == bytes)
        let task = Msg.CPUTask(taskId: "tls-1", program: "def main(x):\n    return x * 6", args: .array([.number(7)]))
        guard case .cpuResult(let r) = try await a.request(.cpuTask(task), timeout: 90).message else { throw TestGridError("no CPU_RESULT") }
        #expect(r.ok && r.result == .number(42), "\(r)")

        // Plain text gets nothing from a TLS peer port.
        await #expect(throws: GridError.self) {
            let l = try await PeerLink.connect(host: "127.0.0.1", port: peers[0].port, grant: g.alice.grantSource, timeout: 10)
            l.close()
        }
        // A client that trusts another CA refuses the peer before it asks for (or shows) any ticket.
        let key = P256.Signing.PrivateKey()
        let stranger = try Self.strangerCA(for: key)
        await #expect(throws: GridError.self) {
            let l = try await PeerLink.connect(host: "127.0.0.1", port: peers[0].port, grant: g.alice.grantSource, timeout: 10, tls: try PeerTLS(caPEM: stranger.ca))
            l.close()
        }
        // Nor does one that trusts only the manager's CA: peer ports show the peer CA's certificates, and the manager's
        // CA vouches for the manager alone.
        let managerCA = try #require(g.grid.caPEM)
        #expect(!ManagerTrust.isPeerAuthority(pem: managerCA))
        await #expect(throws: GridError.self) {
            let l = try await PeerLink.connect(host: "127.0.0.1", port: peers[0].port, grant: g.alice.grantSource, timeout: 10, tls: try PeerTLS(caPEM: managerCA))
            l.close()
        }
        // A would-be peer whose certificate another CA issued cannot complete the handshake, even though it trusts the
        // grid's peer CA itself.
        let ca = try #require(g.grid.peerCAPEM)
        #expect(ManagerTrust.isPeerAuthority(pem: ca))
        let rogue = try PeerTLS(caPEM: ca, certificatePEM: stranger.leaf, keyPEM: key.pemRepresentation)
        await #expect(throws: GridError.self) {
            let l = try await PeerLink.connectAsPeer(host: "127.0.0.1", port: peers[0].port, nonce: PeerTrust.nonce(), timeout: 10, tls: rogue) { _, _ in
                Issue.record("a peer with another CA's certificate completed the TLS handshake and got HELLO_OK")
                throw GridError(.unauthorized, "stop here")
            }
            l.close()
        }

        // The CLI speaks TLS to a peer when given the manager's CA (it asks that manager for the peer CA), or the peer CA
        // itself, and says what to do when given neither.
        let caFile = g.grid.root + "/manager/ca.pem"
        let port = "\(peers[1].port)"
        let set = try await g.cli(["set-mem", "--port", port, "--ca", caFile, "--key", "cli", "--value", "\"over tls\""])
        #expect(set.status == 0, "\(set.stderr)")
        let plain = try await g.cli(["get-mem", "--port", port, "--key", "cli"])
        #expect(plain.status != 0 && plain.stderr.contains("--ca"), "status \(plain.status): \(plain.stderr)")
        // The peer CA alone vouches for peers, not for the manager that grants the session: the CLI says so, and sends
        // nothing, until the manager is trusted (`login` trusts its CA on first use).
        let peerCAFile = g.grid.root + "/manager/peer-ca.pem"
        let untrusted = try await g.cli(["get-mem", "--port", port, "--ca", peerCAFile, "--key", "cli"])
        #expect(untrusted.status != 0 && untrusted.stderr.contains("login"), "status \(untrusted.status): \(untrusted.stderr)")
        let login = try await g.grid.cli(["login", "--username", "alice", "--password-stdin"], stdin: "correct horse battery\n")
        #expect(login.status == 0, "\(login.stderr)")
        let got = try await g.cli(["get-mem", "--port", port, "--ca", peerCAFile, "--key", "cli"])
        #expect(got.status == 0 && got.stdout.contains("over tls"), "\(got.stdout)\(got.stderr)")
        // And once it is trusted, no --ca is needed at all: the manager names the peer CA.
        let stored = try await g.cli(["get-mem", "--port", port, "--key", "cli"])
        #expect(stored.status == 0 && stored.stdout.contains("over tls"), "\(stored.stdout)\(stored.stderr)")

        // A capture of the stream between a client and a peer shows neither the token nor the value nor the file.
        let relay = try CaptureRelay(to: peers[0].port)
        defer { relay.stop() }
        let watched = try await PeerLink.connect(host: "127.0.0.1", port: relay.port, grant: g.alice.grantSource, timeout: 30, tls: try g.peerTLS())
        _ = try await watched.request(.setMem(Msg.SetMem(key: "captured", value: .string("wire-secret-value"))), timeout: 60)
        _ = try await watched.request(.putFile(Msg.PutFile(filename: "w.txt", data: Data("wire-secret-file".utf8).base64EncodedString())), timeout: 60)
        watched.close()
        #expect(relay.captured.count > 200, "the capture saw \(relay.captured.count) bytes")
        #expect(relay.captured.first == 0x16, "the stream does not open with a TLS handshake record")
        for secret in [g.token, "wire-secret-value", Data("wire-secret-file".utf8).base64EncodedString(), "SET_MEM", "HELLO"] {
            #expect(!relay.saw(secret), "\(secret.prefix(12))… crossed the wire in clear text")
        }
        a.close()
        b.close()
    }
}
