import Foundation
import GridClient
import GridCore
import GridSandbox
import GridTestSupport
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

extension Integration {
    /// Trust between strangers, with real processes: the two token kinds, the sign-up limit, admin-only checks.
    @Suite struct Identities {
        @Test func aWorkerStartedWithAnAPITokenStopsWithAMessageThatNamesTheKind() async throws {
            let grid = try TestGrid(label: "apijoin")
            defer { grid.shutdown() }
            try await grid.startManager()
            let ann = try await grid.user("ann")
            let api = try #require(ann.token)
            for (how, args, env) in [
                ("--token-file", ["--token-file", try grid.tokenFile(api)], [String: String]()),
                ("CAMPUSGRID_TOKEN", [], ["CAMPUSGRID_TOKEN": api]),
            ] {
                let w = try grid.spawn("api-\(how)", ["worker", "-m", grid.managerAddress, "--data-dir", grid.root + "/w-\(how)"] + args, extraEnvironment: env)
                await #expect(w.waitForExit(timeout: 30) != 0, "\(how)")
                #expect(
                    w.errorLog.contains("this is an API token; workers join with a worker join token (`campusgrid token create --worker`)"),
                    "\(how): \(w.errorLog.suffix(2000))")
            }
            #expect(try await ann.workers().workers.isEmpty)
        }

        @Test func aJoinTokenCannotActAsItsOwnerThroughTheCLI() async throws {
            let grid = try TestGrid(label: "joinasuser")
            defer { grid.shutdown() }
            try await grid.startManager()
            let ann = try await grid.user("ann")
            let join = try await ann.createToken(kind: "worker").token
            for command in [["whoami"], ["credits"], ["token", "create", "--api"], ["jobs"], ["admin", "check-ledger"]] {
                let r = try await grid.cli(command, token: join)
                #expect(r.status != 0, "\(command): \(r.stdout)")
                #expect(r.stderr.contains("this is a worker join token; it only joins workers — use an API token from `campusgrid login`"), "\(command): \(r.stderr)")
            }
            // What ps showed did not let anyone mint an API token: ann has only her login token's account untouched.
            #expect(try await ann.me().balance == 100)
        }

        @Test func tokenOnTheCommandLineStillWorksButWarnsThatPsShowsIt() async throws {
            let grid = try TestGrid(label: "tokenflag")
            defer { grid.shutdown() }
            try await grid.startManager()
            let ann = try await grid.user("ann")
            let join = try await ann.createToken(kind: "worker").token
            let w = try grid.spawn("flag", ["worker", "-m", grid.managerAddress, "--token", join, "--data-dir", grid.root + "/w", "--json"])
            await #expect(w.nextLine(timeout: 60) != nil, "the worker registered: \(w.errorLog.suffix(2000))")
            #expect(w.errorLog.contains("warning: --token puts the join token on the command line"), "\(w.errorLog.suffix(2000))")
            #expect(w.errorLog.contains("--token-file"))
            let both = try grid.spawn("both", ["worker", "-m", grid.managerAddress, "--token", join, "--token-file", try grid.tokenFile(join)])
            await #expect(both.waitForExit(timeout: 30) != 0)
            #expect(both.errorLog.contains("give the join token once"))
        }

        /// A package index's credentials on a worker's command line are shown to everyone by `ps`: said, with what to
        /// use instead. Beside `--env-allow-sdist` they are refused (a package's build script would read them from the
        /// installer's environment), from the environment too; and so are sdists where builds cannot be sandboxed and
        /// the worker runs other users' jobs. The worker stops before it joins.
        @Test func indexCredentialsOnTheCommandLineWarnAndSdistsAreRefusedWhereTheyWouldLeak() async throws {
            let grid = try TestGrid(label: "indexcreds")
            defer { grid.shutdown() }
            try await grid.startManager()
            let ann = try await grid.user("ann")
            let tokenFile = try grid.tokenFile(try await ann.createToken(kind: "worker").token)
            func worker(_ name: String, _ args: [String], env: [String: String] = [:]) throws -> ManagedProcess {
                try grid.spawn(name, ["worker", "-m", grid.managerAddress, "--token-file", tokenFile, "--data-dir", grid.root + "/" + name] + args, extraEnvironment: env)
            }
            let flag = try worker("flag", ["--env-allow-sdist", "--index-url", "https://user:pw@pkgs.example/simple"])
            await #expect(flag.waitForExit(timeout: 60) != 0)
            #expect(flag.errorLog.contains("warning: --index-url puts the index's credentials on the command line"), "\(flag.errorLog.suffix(2000))")
            #expect(flag.errorLog.contains("--env-allow-sdist with a package index URL that carries a password"), "\(flag.errorLog.suffix(2000))")
            let env = try worker("env", ["--env-allow-sdist"], env: ["CAMPUSGRID_INDEX_URL": "https://TOKEN@pkgs.example/simple"])
            await #expect(env.waitForExit(timeout: 60) != 0)
            #expect(!env.errorLog.contains("warning: --index-url"), "\(env.errorLog.suffix(2000))")
            #expect(env.errorLog.contains("--env-allow-sdist with a package index URL that carries a password"), "\(env.errorLog.suffix(2000))")
            let unsandboxed = try worker("nobwrap", ["--sandbox", "none", "--allow-unsandboxed", "--bwrap", "/nonexistent/bwrap", "--env-allow-sdist"])
            await #expect(unsandboxed.waitForExit(timeout: 60) != 0)
            #expect(unsandboxed.errorLog.contains("package builds cannot be sandboxed here"), "\(unsandboxed.errorLog.suffix(2000))")
            // A --find-links URL with credentials is refused: the installer takes it on its command line for every build.
            let links = try worker("links", ["--find-links", "https://u:p@links.example/wheels", "--json"])
            await #expect(links.waitForExit(timeout: 60) != 0)
            #expect(links.errorLog.contains("a --find-links URL carries credentials"), "\(links.errorLog.suffix(2000))")
            #expect(try await ann.workers().workers.isEmpty, "a worker joined")
        }

        /// The manager's files (the store with every account's password hash, its keys) are its own, whatever the
        /// umask it was started with; a data folder others may enter is named, with the `chmod` that closes it.
        @Test func theManagersFilesAreItsOwnAndAnOpenDataFolderIsNamed() async throws {
            let grid = try TestGrid(label: "managerfiles")
            defer { grid.shutdown() }
            let folder = grid.root + "/manager"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            let manager = try await grid.startManager()
            #expect(manager.errorLog.contains("may be read by other users of this machine (mode 755)"), "\(manager.errorLog.suffix(2000))")
            #expect(manager.errorLog.contains("chmod 700 \(folder)"))
            _ = try await grid.user("ann")
            let made = try FileManager.default.subpathsOfDirectory(atPath: folder)
            #expect(!made.isEmpty)
            for name in made {
                let mode = try #require(try FileManager.default.attributesOfItem(atPath: folder + "/" + name)[.posixPermissions] as? NSNumber).intValue
                #expect(mode & 0o077 == 0, "\(name) is mode \(String(mode, radix: 8))")
            }
        }

        @Test func aRegistrationFloodFromOneAddressGets429WithRetryAfter() async throws {
            let grid = try TestGrid(label: "flood")
            defer { grid.shutdown() }
            try await grid.startManager(extra: ["--registration-burst", "3", "--registrations-per-minute", "1"])
            var statuses: [Int] = []
            var retryAfter: String?
            for i in 0..<6 {
                var request = URLRequest(url: URL(string: grid.baseURL + "/api/v1/register")!)
                request.httpMethod = "POST"
                request.setValue("application/json", forHTTPHeaderField: "Content-Type")
                request.httpBody = Data(#"{"username":"flood\#(i)","password":"long enough pw"}"#.utf8)
                let (_, response) = try await URLSession.shared.data(for: request)
                let http = try #require(response as? HTTPURLResponse)
                statuses.append(http.statusCode)
                if http.statusCode == 429 { retryAfter = http.value(forHTTPHeaderField: "Retry-After") }
            }
            #expect(statuses == [201, 201, 201, 429, 429, 429])
            #expect(retryAfter.flatMap { Int($0) }.map { (1...60).contains($0) } == true, "Retry-After: \(retryAfter ?? "none")")
            // The CLI says so, with the wait.
            let cli = try await grid.cli(["register", "--username", "flood9", "--password-stdin"], stdin: "long enough pw\n")
            #expect(cli.status != 0 && cli.stderr.contains("too many new accounts"), "\(cli.stderr)")
        }

        @Test func checkLedgerNeedsAnAdmin() async throws {
            let grid = try TestGrid(label: "admin")
            defer { grid.shutdown() }
            try await grid.startManager(extra: ["--admin", "dora"])
            let first = try await grid.user("first")
            let bob = try await grid.user("bob")
            let dora = try await grid.user("dora")
            let refused = try await grid.cli(["admin", "check-ledger"], token: bob.token)
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("bob is not an admin"), "\(refused.stderr)")
            for (who, client) in [("first account", first), ("--admin dora", dora)] {
                let ok = try await grid.cli(["admin", "check-ledger"], token: client.token)
                #expect(ok.status == 0 && ok.stdout.contains("Ledger OK"), "\(who): \(ok.stderr)")
            }
            let forbidden = try await grid.httpGet("/api/v1/admin/ledger-check", token: bob.token)
            #expect(forbidden.status == 403)
        }
    }
}
