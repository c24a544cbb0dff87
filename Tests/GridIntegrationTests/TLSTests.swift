import Crypto
import Foundation
import GridClient
import GridCore
import GridSandbox
import GridTestSupport
import Testing

/// A manager started with `--tls` (loopback would otherwise stay plain text): HTTPS, the grid port in TLS 1.3, join
/// strings that pin its CA, workers that refuse any other CA.
extension Integration {
    @Suite struct TLS {
        /// `sha256:<hex>` of the first certificate of a PEM file.
        static func fingerprint(pem: String) -> String {
            let body = pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
            let der = Data(base64Encoded: body) ?? Data()
            return "sha256:" + SHA256.hash(data: der).map { String(format: "%02x", $0) }.joined()
        }

        @Test func aJobRunsEndToEndOverTLSWithAJoinStringThatPinsTheCA() async throws {
            let grid = try TestGrid(label: "tls")
            defer { grid.shutdown() }
            try await grid.startManager(extra: ["--tls"])
            #expect(grid.baseURL.hasPrefix("https://"))
            let ca = try #require(grid.caPEM, "the manager made its CA in its data folder")
            let mode = try FileManager.default.attributesOfItem(atPath: grid.root + "/manager/ca-key.pem")[.posixPermissions] as? Int
            #expect(mode == 0o600)

            let owner = try await grid.user("owner")
            let join = try await owner.createToken(kind: "worker")
            #expect(join.join == "\(join.token)@\(Self.fingerprint(pem: ca))", "the join string carries the CA's fingerprint")
            try await grid.startWorker("w1", token: join.join ?? "")

            let alice = try await grid.user("alice")
            let submitted = try await alice.submit(
                API.SubmitRequest(
                    spec: JobSpec(name: "tls", cpus: 1, ramGb: 0, minutes: 1, minTier: .restricted),
                    script: API.FileUpload(name: "job.py", contentBase64: Data("print('over tls', 6 * 7)\n".utf8).base64EncodedString()),
                    inputs: []))
            let done = await eventually(timeout: 60) { (try? await alice.job(submitted.job.id).state.isFinal) == true }
            #expect(done)
            let status = try await alice.job(submitted.job.id)
            #expect(status.state == .completed, "\(status)")
            let log = try await alice.logs(submitted.job.id, from: 0)
            #expect(log.text.contains("over tls 42"), "\(log.text)")
        }

        @Test func theCLITrustsTheManagerThroughCAAndRefusesItWithout() async throws {
            let grid = try TestGrid(label: "tlscli")
            defer { grid.shutdown() }
            try await grid.startManager(extra: ["--tls"])
            let alice = try await grid.user("alice")
            let trusted = try await grid.cli(["whoami", "--ca", grid.root + "/manager/ca.pem"], token: alice.token!)
            #expect(trusted.status == 0 && trusted.stdout.contains("alice"), "\(trusted.stderr)")
            // Refused at once with what to do, not after the HTTP client's retries ran out a minute later.
            let untrusted = try await grid.cli(["whoami"], token: alice.token!)
            #expect(untrusted.status != 0, "the system's roots do not know the grid's CA")
            #expect(untrusted.stderr.contains("does not trust") && untrusted.stderr.contains("--ca"), "\(untrusted.stderr)")
        }

        @Test func loginTrustsTheManagersCAOnFirstUseAndRefusesAnotherLoudly() async throws {
            let grid = try TestGrid(label: "tofu")
            defer { grid.shutdown() }
            try await grid.startManager(extra: ["--tls"])
            let first = Self.fingerprint(pem: try #require(grid.caPEM))
            let password = "correct horse battery\n"
            let registered = try await grid.cli(["register", "--username", "ada", "--password-stdin"], stdin: password)
            #expect(registered.status == 0, "\(registered.stderr)")
            #expect(registered.stderr.contains("First contact") && registered.stderr.contains(first), "\(registered.stderr)")
            // From now on the CLI trusts that CA without --ca, and says nothing more about it.
            let me = try await grid.cli(["whoami"])
            #expect(me.status == 0 && me.stdout.contains("ada"), "\(me.stderr)")
            let again = try await grid.cli(["login", "--username", "ada", "--password-stdin"], stdin: password)
            #expect(again.status == 0 && !again.stderr.contains("First contact"), "\(again.stderr)")

            // Another CA at the same address (a manager replaced, or someone in between): refused before the password
            // is sent, loudly, naming both fingerprints.
            let (gridPort, httpPort) = (grid.gridPort, grid.httpPort)
            grid.manager?.stop()
            for file in ["ca.pem", "ca-key.pem"] {
                try FileManager.default.moveItem(atPath: grid.root + "/manager/" + file, toPath: grid.root + "/old-" + file)
            }
            try await grid.startManager(gridPort: gridPort, httpPort: httpPort, extra: ["--tls"])
            let second = Self.fingerprint(pem: try #require(grid.caPEM))
            #expect(first != second)
            let refused = try await grid.cli(["login", "--username", "ada", "--password-stdin"], stdin: password)
            #expect(refused.status != 0, "\(refused.stdout)")
            #expect(
                refused.stderr.contains("HAS CHANGED") && refused.stderr.contains(first) && refused.stderr.contains(second), "\(refused.stderr)")
            #expect(try await grid.cli(["whoami"]).status != 0, "a command with the stored CA does not trust the new one either")
        }

        @Test func plainTextToATLSGridPortGetsNoAnswer() async throws {
            let grid = try TestGrid(label: "tlsplain")
            defer { grid.shutdown() }
            try await grid.startManager(extra: ["--tls"])
            let c = try RawConnection(port: grid.gridPort)
            c.send(#"{"type":"HELLO","id":1,"version":2,"token":"cgw_x"}"# + "\n")
            #expect(c.readMessage(timeout: 3) == nil, "no grid-protocol answer in clear text")
        }

        @Test func plainHTTPToTheHTTPSPortIsRedirectedAndHTTPSStillServes() async throws {
            let grid = try TestGrid(label: "tlsredirect")
            defer { grid.shutdown() }
            try await grid.startManager(extra: ["--tls"])
            let c = try RawConnection(port: grid.httpPort)
            #expect(c.send("GET /jobs?page=2 HTTP/1.1\r\nHost: 127.0.0.1:\(grid.httpPort)\r\n\r\n"))
            var head: [String] = []
            for _ in 0..<10 {
                guard let line = c.readLine(timeout: 10), !line.isEmpty, line != "\r" else { break }
                head.append(line.trimmingCharacters(in: .whitespacesAndNewlines))
            }
            #expect(head.first == "HTTP/1.1 308 Permanent Redirect", "\(head)")
            #expect(head.contains("Location: https://127.0.0.1:\(grid.httpPort)/jobs?page=2"), "\(head)")
            #expect(c.isClosed(timeout: 10), "the plain connection is closed after the answer")
            // TLS clients on the same port are unaffected.
            let alice = try await grid.user("alice")
            #expect(try await alice.me().username == "alice")
        }

        @Test func aWorkerWithAJoinStringForAnotherCARefusesAndNamesBothFingerprints() async throws {
            let grid = try TestGrid(label: "tlspin")
            defer { grid.shutdown() }
            try await grid.startManager(extra: ["--tls"])
            let ca = try #require(grid.caPEM)
            let owner = try await grid.user("owner")
            let token = try await owner.createToken(kind: "worker").token
            let wrong = "sha256:" + String(repeating: "ab", count: 32)
            let w = try grid.spawn(
                "w-wrong",
                ["worker", "-m", grid.managerAddress, "--token-file", try grid.tokenFile("\(token)@\(wrong)"), "--data-dir", grid.root + "/w", "--json"])
            await #expect(w.nextLine(timeout: 20) == nil, "it never registers")
            await #expect(w.waitForExit(timeout: 20) != 0)
            let log = w.errorLog
            #expect(log.contains(wrong), "\(log.suffix(2000))")
            #expect(log.contains(Self.fingerprint(pem: ca)), "\(log.suffix(2000))")
            let workers = try await owner.workers()
            #expect(workers.workers.isEmpty, "the token was never presented")
        }
    }
}
