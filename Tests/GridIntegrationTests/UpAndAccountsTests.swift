import Foundation
import GridClient
import GridCore
import GridSandbox
import GridTestSupport
import Testing

extension Integration {
    @Suite struct UpAndAccounts {
        @Test func upStartsAGridWhoseWorkersEarnForTheDemoAccountAndStopsCleanly() async throws {
            let grid = try TestGrid(label: "up")
            defer { grid.shutdown() }
            let up = try grid.spawn("up", ["up", "--json", "--workers", "2", "--data-dir", grid.root + "/local"])
            let first = try #require(await up.nextLine(timeout: 120), "up printed nothing:\n\(up.errorLog.suffix(3000))")
            let info = try JSONDecoder().decode([String: String].self, from: Data(first.utf8))
            let dashboard = try #require(info["dashboard"])
            #expect(info["manager"]?.hasPrefix("127.0.0.1:") == true)
            #expect(info["managers"] == nil && info["dashboards"] == nil, "issue 16: plain `up` prints what it printed before")
            #expect(info["user"] == "demo")
            #expect((info["password"] ?? "").count >= 12)
            let demo = GridClient(baseURL: dashboard, token: info["token"])
            let workers = try await demo.workers().workers
            #expect(workers.filter(\.online).count == 2)
            #expect(workers.allSatisfy { $0.owner == "demo" })

            var alice = GridClient(baseURL: dashboard)
            alice.token = try await alice.register("alice", password: "long enough").token
            let script = Data("print('via up')\n".utf8).base64EncodedString()
            let job = try await alice.submit(
                API.SubmitRequest(spec: JobSpec(name: "up", minTier: .restricted), script: API.FileUpload(name: "up.py", contentBase64: script), inputs: []))
            let done = try await Scenario.waitForState(alice, job.job.id, [.completed, .failed])
            #expect(done.state == .completed)
            #expect(try await demo.me().balance == 100 + (done.paid ?? 0), "the local workers earn for the demo account")

            let pids = try childPIDs(of: up.pid)
            #expect(pids.count == 3, "a manager and two workers")
            up.signal(SIGTERM)
            await #expect(up.waitForExit(timeout: 30) == 0)
            #expect(pids.allSatisfy { !isAlive($0) }, "up stopped its children")

            // A second `up` on the same folder logs the demo account in again with the stored password.
            let again = try grid.spawn("up-again", ["up", "--json", "--workers", "1", "--data-dir", grid.root + "/local"])
            let line = try #require(await again.nextLine(timeout: 120))
            let info2 = try JSONDecoder().decode([String: String].self, from: Data(line.utf8))
            #expect(info2["password"] == info["password"])
            again.signal(SIGTERM)
            await #expect(again.waitForExit(timeout: 30) == 0)
        }

        @Test func registerLoginWhoamiLogoutThroughTheCLI() async throws {
            let grid = try TestGrid(label: "accounts")
            defer { grid.shutdown() }
            let manager = try await grid.startManager()
            let reg = try await grid.cli(["register", "--username", "carol", "--password-stdin"], stdin: "s3cret-pass\n")
            #expect(reg.status == 0, "\(reg.stderr)")
            let who = try await grid.cli(["whoami"])
            #expect(who.stdout.contains("carol (balance 100 credits)"), "the stored token is used: \(who.stderr)")
            let token = try await grid.cli(["token", "create", "--worker", "--json"])
            #expect(token.stdout.contains("cgw_"))
            let out = try await grid.cli(["logout"])
            #expect(out.status == 0)
            let after = try await grid.cli(["whoami"])
            #expect(after.status != 0 && after.stderr.contains("not logged in"), "\(after.stderr)")
            let wrong = try await grid.cli(["login", "--username", "carol", "--password-stdin"], stdin: "wrong-password\n")
            #expect(wrong.status != 0 && wrong.stderr.contains("wrong username or password"))
            let login = try await grid.cli(["login", "--username", "carol", "--password-stdin"], stdin: "s3cret-pass\n")
            #expect(login.status == 0, "\(login.stderr)")
            let credits = try await grid.cli(["credits", "--json"])
            let parsed = try GridJSONTest.decode(API.Credits.self, credits.stdout)
            #expect(parsed.balance == 100)
            #expect(parsed.ledger.map(\.reason) == ["signup"])
            let taken = try await grid.cli(["register", "--username", "CAROL", "--password-stdin"], stdin: "another-pass\n")
            #expect(taken.status != 0 && taken.stderr.contains("taken"), "\(taken.stderr)")
            // A logout the manager cannot carry out (it is down) says so and keeps the token, still valid there, so
            // that it can be revoked once the manager is back.
            manager.signal(SIGTERM)
            _ = await manager.waitForExit(timeout: 30)
            let failed = try await grid.cli(["logout"])
            #expect(failed.status != 0 && failed.stderr.contains("did not revoke the token"), "\(failed.stdout)\(failed.stderr)")
            let store = try String(contentsOfFile: grid.root + "/config/campusgrid/credentials.json", encoding: .utf8)
            #expect(store.contains("cga_"), "the token was forgotten though the manager never revoked it: \(store)")
        }
    }
}

/// Direct children of a process, from /proc.
func childPIDs(of parent: Int32) throws -> [Int32] {
    try FileManager.default.contentsOfDirectory(atPath: "/proc").compactMap { Int32($0) }.filter { pid in
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else {
            return false
        }
        let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
        return fields.count > 1 && Int32(fields[1]) == parent
    }
}

extension Integration.UpAndAccounts {
    @Test func upsChildrenStopThemselvesWhenUpIsKilled() async throws {
        let grid = try TestGrid(label: "upkill")
        defer { grid.shutdown() }
        let up = try grid.spawn("up", ["up", "--json", "--workers", "1", "--data-dir", grid.root + "/local"])
        _ = try #require(await up.nextLine(timeout: 120), "up printed nothing:\n\(up.errorLog.suffix(3000))")
        let pids = try childPIDs(of: up.pid)
        #expect(pids.count == 2, "a manager and a worker")
        up.signal(SIGKILL)
        _ = await up.waitForExit(timeout: 10)
        let gone = await eventually(timeout: 20) { pids.allSatisfy { !isAlive($0) } }
        #expect(gone, "children left running after up was killed: \(pids.filter { isAlive($0) })")
    }
}

extension Integration.UpAndAccounts {
    @Test func noTokenAppearsOnTheCommandLineOfAnythingUpStarts() async throws {
        let grid = try TestGrid(label: "upps")
        defer { grid.shutdown() }
        let dir = grid.root + "/local"
        let up = try grid.spawn("up", ["up", "--json", "--workers", "2", "--data-dir", dir])
        let first = try #require(await up.nextLine(timeout: 120), "up printed nothing:\n\(up.errorLog.suffix(3000))")
        let info = try JSONDecoder().decode([String: String].self, from: Data(first.utf8))
        let apiToken = try #require(info["token"])
        // The workers' join token lives in a file only its owner can read.
        let tokenFile = dir + "/worker-token"
        let joinToken = try String(contentsOfFile: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(joinToken.hasPrefix("cgw_"))
        let mode = try FileManager.default.attributesOfItem(atPath: tokenFile)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        // What `ps` shows: every process up started (and up itself), read from /proc/<pid>/cmdline.
        let pids = try childPIDs(of: up.pid)
        #expect(pids.count == 3, "a manager and two workers")
        var workers = 0
        for pid in pids + [up.pid] {
            let raw = try #require(FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"))
            let argv = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            let line = argv.joined(separator: " ")
            #expect(!line.contains(joinToken) && !line.contains(apiToken), "a token on the command line of \(pid): \(line)")
            #expect(!line.contains("cgw_") && !line.contains("cga_") && !argv.contains("--token"), "\(pid): \(line)")
            if argv.contains("worker") {
                workers += 1
                #expect(argv.contains("--token-file"), "\(line)")
            }
        }
        #expect(workers == 2)
        up.signal(SIGTERM)
        await #expect(up.waitForExit(timeout: 30) == 0)
    }
}
