import Foundation
import GridClient
import GridCore
import GridSandbox
import GridTestSupport
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Issue 16: several `campusgrid manager` processes on one store (here one SQLite file, shared through one data folder,
/// which also gives them one identity), one leader by the lease row.
extension ManagerFaults {
    @Suite struct SeveralManagers {
        /// A manager of the HA grid, as started by `HA.start`.
        struct Manager {
            var process: ManagedProcess
            var gridPort: Int
            var httpPort: Int
            var url: String { "http://127.0.0.1:\(httpPort)" }
            var address: String { "127.0.0.1:\(gridPort)" }
        }

        /// What `GET /api/v1/leader` says.
        struct LeaderView: Decodable {
            var role: String
            var epoch: Int64?
            var leader: String?
        }

        enum HA {
            /// 3 s: with 1.5 s, a leader starved for a second on a loaded machine stepped down, and the epochs and
            /// leaders the tests look for moved on.
            static let leaderLease = "3"

            /// Another manager on the grid's data folder (the first one is `grid.startManager(extra: HA.extra)`), on the
            /// store `env` names (nothing: the data folder's SQLite file; CAMPUSGRID_DATABASE: PostgreSQL), on the given
            /// ports (0: free ones).
            static func start(
                _ grid: TestGrid, _ index: Int, env: [String: String] = [:], gridPort: Int = 0, httpPort: Int = 0
            ) async throws -> Manager {
                let p = try grid.spawn(
                    "manager-\(index)",
                    [
                        "manager", "--data-dir", grid.root + "/manager", "--host", "127.0.0.1", "--port", "\(gridPort)", "--dashboard-port",
                        "\(httpPort)", "--lease-seconds", "3", "--admin", TestGrid.adminName, "--json",
                    ] + extra, extraEnvironment: env)
                guard let line = await p.nextLine(timeout: 60),
                    let ready = try? JSONDecoder().decode([String: JSONValue].self, from: Data(line.utf8)),
                    case .number(let g)? = ready["grid_port"], case .number(let h)? = ready["http_port"]
                else { throw TestGridError("manager \(index) did not become ready:\n\(p.errorLog.suffix(3000))") }
                return Manager(process: p, gridPort: Int(g), httpPort: Int(h))
            }

            static var extra: [String] { ["--leader-lease", leaderLease] }

            /// The first manager, started the usual way (so `grid.user`, `grid.admin` talk to it).
            static func first(_ grid: TestGrid, env: [String: String] = [:]) async throws -> Manager {
                let p = try await grid.startManager(leaseSeconds: 3, extraEnvironment: env, extra: extra)
                return Manager(process: p, gridPort: grid.gridPort, httpPort: grid.httpPort)
            }

            /// A manager's view of the leadership; nil if it does not answer within 2 s (dead or stopped).
            static func view(_ m: Manager) async -> LeaderView? {
                var request = URLRequest(url: URL(string: m.url + "/api/v1/leader")!)
                request.timeoutInterval = 2
                guard let (data, _) = try? await URLSession.shared.data(for: request) else { return nil }
                return try? JSONDecoder().decode(LeaderView.self, from: data)
            }

            /// Waits (bounded) until exactly one of `managers` leads; returns it.
            static func leader(among managers: [Manager], timeout: Double = 20) async throws -> Manager {
                var found: Manager?
                _ = await eventually(timeout: timeout, interval: 0.1) {
                    var leaders: [Manager] = []
                    for m in managers where await view(m)?.role == "leader" { leaders.append(m) }
                    found = leaders.count == 1 ? leaders[0] : nil
                    return found != nil
                }
                guard let found else { throw TestGridError("no single leader among \(managers.map(\.url))") }
                return found
            }

            /// Starts a worker listing `managers` (in that order) and waits until it registered.
            static func worker(_ grid: TestGrid, _ name: String, owner: GridClient, managers: [Manager]) async throws -> ManagedProcess {
                let token = try await owner.createToken(kind: "worker")
                let w = try grid.spawn(
                    name,
                    [
                        "worker", "-m", managers.map(\.address).joined(separator: ","), "--token-file", try grid.tokenFile(token.join ?? token.token),
                        "--data-dir", grid.root + "/\(name)", "-n", name, "--cpus", "2", "--memory", "4", "--json",
                    ])
                guard await w.nextLine(timeout: 60) != nil else { throw TestGridError("worker \(name) did not register:\n\(w.errorLog.suffix(3000))") }
                return w
            }

            /// Sends `HELLO` on a raw connection to `m`'s grid port and returns the first answer's type and fields.
            static func hello(_ m: Manager, token: String) async throws -> [String: Any]? {
                let port = m.gridPort
                return try await onThread {
                    let c = try RawConnection(port: port)
                    _ = c.send(#"{"type":"HELLO","id":1,"version":2,"token":"\#(token)"}"# + "\n")
                    return c.readMessage(timeout: 10).map { SendableDict($0) }
                }?.value
            }

            static func spec(_ name: String) -> JobSpec { JobSpec(name: name, minutes: 1, minTier: .restricted) }
            static func script(_ text: String) -> API.FileUpload { API.FileUpload(name: "main.py", contentBase64: Data(text.utf8).base64EncodedString()) }
        }

        struct SendableDict: @unchecked Sendable {
            let value: [String: Any]
            init(_ value: [String: Any]) { self.value = value }
        }

        @Test(arguments: IntegrationStore.allCases)
        func oneLeadsAFollowerRedirectsTheWorkerAndTakesOverWhenTheLeaderDies(store: IntegrationStore) async throws {
            let env = try await store.managerEnvironment()
            let grid = try TestGrid(label: "ha-takeover")
            defer { grid.shutdown() }
            let m0 = try await HA.first(grid, env: env)
            let m1 = try await HA.start(grid, 1, env: env)
            let m2 = try await HA.start(grid, 2, env: env)
            let all = [m0, m1, m2]
            #expect(try await HA.leader(among: all).url == m0.url, "the first manager leads")
            var named: String?
            _ = await eventually(timeout: 10) {
                named = await HA.view(m1)?.leader
                return named == m0.url
            }
            #expect(named == m0.url, "a follower names the leader")

            let owner = try await grid.user("owner")
            let alice = try await grid.user("alice")
            let adminToken = try await grid.admin().token
            // A follower answers HELLO with NOT_LEADER naming the leader's worker address, before checking any token.
            let answer = try await HA.hello(m1, token: "whatever")
            #expect(answer?["type"] as? String == "NOT_LEADER")
            #expect(answer?["leader"] as? String == m0.address)

            // The worker lists the followers first: it is redirected, and ends up registered with the leader.
            let worker = try await HA.worker(grid, "w1", owner: owner, managers: [m1, m2, m0])
            #expect(worker.errorLog.contains("the manager does not lead"))
            let first = try await alice.submit(API.SubmitRequest(spec: HA.spec("before"), script: HA.script("print('before')\n"), inputs: []))
            #expect(try await Scenario.waitForState(alice, first.job.id, [.completed, .failed]).state == .completed)

            // A follower refuses a write with 503, naming the leader's URL.
            var onFollower = GridClient(baseURL: m1.url, token: alice.token)
            onFollower.token = alice.token
            do {
                _ = try await onFollower.submit(API.SubmitRequest(spec: HA.spec("refused"), script: HA.script("print(1)\n"), inputs: []))
                Issue.record("a follower accepted a write")
            } catch {
                #expect("\(error)".contains("not the leader") && "\(error)".contains(m0.url), "\(error)")
            }
            // …and serves reads.
            #expect(try await onFollower.job(first.job.id).state == .completed)

            // The leader dies. Submit a new job as a client listing every manager would (any manager that takes it),
            // and time from the kill to the job being placed on the worker.
            let killed = Date()
            m0.process.signal(SIGKILL)
            _ = await m0.process.waitForExit(timeout: 10)
            var placedId: JobID?
            var newLeader: Manager?
            _ = await eventually(timeout: 30, interval: 0.1) {
                for m in [m1, m2] {
                    let c = GridClient(baseURL: m.url, token: alice.token)
                    if let r = try? await c.submit(API.SubmitRequest(spec: HA.spec("after"), script: HA.script("print('after')\n"), inputs: [])) {
                        placedId = r.job.id
                        newLeader = m
                        return true
                    }
                }
                return false
            }
            let id = try #require(placedId, "no manager took the job after the leader died")
            let leader = try #require(newLeader)
            let c = GridClient(baseURL: leader.url, token: alice.token)
            var placedAt: Date?
            _ = try await eventually(timeout: 30, interval: 0.05) {
                let s = try await c.job(id)
                if s.state == .running || s.state.isFinal { placedAt = Date() }
                return placedAt != nil
            }
            let takeover = try #require(placedAt).timeIntervalSince(killed)
            print("several managers: takeover from SIGKILL of the leader to the first job placed: \(String(format: "%.2f", takeover)) s")
            // The issue's bound (a follower takes over within 10 s) is the bench's to measure (`ha.failover`): a test
            // asserts no timing. Here the takeover must only happen within the wait's 30 s.
            #expect(try await Scenario.waitForState(c, id, [.completed, .failed]).state == .completed)
            var epoch: Int64?
            _ = await eventually(timeout: 10) {
                epoch = await HA.view(leader)?.epoch
                return epoch != nil
            }
            #expect(epoch == 2, "one takeover, one new epoch")
            // The remaining follower points at the new leader, and the ledger balances.
            let other = leader.url == m1.url ? m2 : m1
            _ = await eventually(timeout: 10) { await HA.view(other)?.leader == leader.url }
            #expect(await HA.view(other)?.leader == leader.url)
            let admin = GridClient(baseURL: leader.url, token: adminToken)
            #expect(try await admin.ledgerCheck()["ok"] == .bool(true))
        }

        @Test(arguments: IntegrationStore.allCases)
        func aStoppedLeaderWokenAfterATakeoverCommitsNothingAndStepsDown(store: IntegrationStore) async throws {
            let env = try await store.managerEnvironment()
            let grid = try TestGrid(label: "ha-deposed")
            defer { grid.shutdown() }
            let m0 = try await HA.first(grid, env: env)
            let m1 = try await HA.start(grid, 1, env: env)
            let owner = try await grid.user("owner")
            let alice = try await grid.user("alice")
            var admin = try await grid.admin()
            _ = try await HA.worker(grid, "w1", owner: owner, managers: [m0, m1])
            // A job that is still running while the leader is stopped and another takes over.
            let job = try await alice.submit(
                API.SubmitRequest(spec: HA.spec("long"), script: HA.script("import time\nprint('go', flush=True)\ntime.sleep(6)\nprint('done')\n"), inputs: []))
            _ = try await Scenario.waitForState(alice, job.job.id, [.running])

            m0.process.signal(SIGSTOP)
            var m1Leads = false
            _ = await eventually(timeout: 20, interval: 0.1) {
                let v = await HA.view(m1)
                m1Leads = v?.role == "leader" && (v?.epoch ?? 0) >= 2
                return m1Leads
            }
            #expect(m1Leads, "the follower took over while the leader was stopped")
            m0.process.signal(SIGCONT)

            // The woken manager steps down: it calls itself a follower of m1 and answers HELLO with NOT_LEADER.
            // One answer says both (a single view, so a slow answer under load is retried rather than read as nil).
            // It names the leader once it has read the leader's row: at once when the store answers, else at its next
            // look (a fresh clone beside a CPU hog on PostgreSQL once saw a follower that had not read it yet).
            var seen: LeaderView?
            let steppedDown = await eventually(timeout: 15, interval: 0.1) {
                seen = await HA.view(m0)
                return seen?.role == "follower" && seen?.leader == m1.url
            }
            // Once seen failing under a CPU hog on PostgreSQL (the woken manager still led 15 s later); its log says why.
            #expect(steppedDown, "the woken manager did not step down naming m1; its view: \(String(describing: seen))\n\(grid.logs())")
            let answer = try await HA.hello(m0, token: "whatever")
            #expect(answer?["type"] as? String == "NOT_LEADER")
            #expect(answer?["leader"] as? String == m1.address)

            // The job ends once, paid once, under the new leader; the ledger balances.
            let c = GridClient(baseURL: m1.url, token: alice.token)
            // Once seen pending for the whole minute on PostgreSQL beside a CPU hog: the logs say why.
            let done: API.JobStatus
            do {
                done = try await Scenario.waitForState(c, job.job.id, [.completed, .failed], timeout: 60)
            } catch {
                Issue.record("\(error)\n\(grid.logs(matching: ["job", "worker", "lead", "epoch", "lease", "register", "step"]))")
                return
            }
            #expect(done.state == .completed)
            let paid = try #require(done.paid)
            #expect(try await c.me().balance == 100 - paid, "charged once")
            let settled = (done.events ?? []).filter { $0.state == .completed }.count
            #expect(settled == 1, "settled once: \(done.events ?? [])")
            admin = GridClient(baseURL: m1.url, token: admin.token)
            #expect(try await admin.ledgerCheck()["ok"] == .bool(true))
            // m0's log says it stepped down (or that its fenced writes were refused), never that it led epoch 2.
            #expect(m0.process.errorLog.contains("stepped down"))
        }

        /// A leader frozen with its connections open (SIGSTOP) closes nothing and answers nothing: its worker hears
        /// nothing from it for the silence bound (`ManagerSilence`), leaves it, and registers with the manager that took
        /// over, where a new job then runs, all while the frozen one stays frozen.
        @Test(arguments: IntegrationStore.allCases)
        func aWorkerLeavesAFrozenLeaderForTheOneThatTookOver(store: IntegrationStore) async throws {
            let env = try await store.managerEnvironment()
            let grid = try TestGrid(label: "ha-frozen")
            defer { grid.shutdown() }
            let m0 = try await HA.first(grid, env: env)
            let m1 = try await HA.start(grid, 1, env: env)
            let owner = try await grid.user("owner")
            let alice = try await grid.user("alice")
            let worker = try await HA.worker(grid, "w1", owner: owner, managers: [m0, m1])
            let adminToken = try await grid.admin().token
            m0.process.signal(SIGSTOP)
            defer { m0.process.signal(SIGCONT) }
            var m1Leads = false
            _ = await eventually(timeout: 30, interval: 0.2) {
                m1Leads = await HA.view(m1)?.role == "leader"
                return m1Leads
            }
            #expect(m1Leads, "the follower took over from the frozen leader")
            let c = GridClient(baseURL: m1.url, token: alice.token)
            let request = API.SubmitRequest(spec: HA.spec("after-freeze"), script: HA.script("print('ran under the new leader')\n"), inputs: [])
            let job = try await c.submit(request, key: "after-freeze").job
            let done = try await Scenario.waitForState(c, job.id, [.completed, .failed], timeout: 120)
            #expect(done.state == .completed, "\(worker.errorLog.suffix(3000))")
            #expect(worker.errorLog.contains("leaving it for whichever manager leads"), "\(worker.errorLog.suffix(3000))")
            #expect(try await GridClient(baseURL: m1.url, token: adminToken).ledgerCheck()["ok"] == .bool(true))
        }

        @Test func followersAnswerReadsDuringALeaderChangeAndTheCLIRetriesWritesOnTheLeader() async throws {
            let grid = try TestGrid(label: "ha-cli")
            defer { grid.shutdown() }
            let m0 = try await HA.first(grid)
            let m1 = try await HA.start(grid, 1)
            let owner = try await grid.user("owner")
            _ = try await grid.user("alice")
            _ = try await HA.worker(grid, "w1", owner: owner, managers: [m1, m0])
            // The user lists the follower first: `login` (a write: it makes a token) is refused there and retried on
            // the leader; the token is kept under the list's first URL and used for the whole list.
            let list = "\(m1.url),\(m0.url)"
            let login = try await grid.cli(["login", "--manager", list, "--username", "alice", "--password-stdin"], stdin: "correct horse battery\n")
            #expect(login.status == 0, "\(login.stderr)")
            let script = try Scenario.script(grid, "hello.py", "print('hello from the leader')\n")
            let submitted = try await grid.cli(["submit", "--manager", list, "--json", script])
            #expect(submitted.status == 0, "\(submitted.stderr)")
            let id = try GridJSONTest.decode(API.SubmitResponse.self, submitted.stdout).job.id
            // A write straight to the follower, without the list, gets the not-leader answer naming the leader.
            let refused = try await grid.cli(["cancel", "--manager", m1.url, "\(id)"])
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("not the leader: write to \(m0.url)"), "\(refused.stderr)")

            // A follower's dashboard says so (looked at before the leader dies: after, the follower may lead before the
            // reads below are done).
            let followerPage = try await URLSession.shared.data(from: URL(string: m1.url + "/")!)
            #expect(String(decoding: followerPage.0, as: UTF8.self).contains("Served by a follower manager"), "the dashboard says it is served by a follower")

            // The leader dies; while the follower takes over, it keeps answering reads: `jobs`, `status`, the dashboard.
            m0.process.signal(SIGKILL)
            let jobs = try await grid.cli(["jobs", "--manager", list, "--json"])
            #expect(jobs.status == 0, "\(jobs.stderr)")
            let status = try await grid.cli(["status", "--manager", list, "\(id)"])
            #expect(status.status == 0, "\(status.stderr)")
            let page = try await URLSession.shared.data(from: URL(string: m1.url + "/")!)
            #expect((page.1 as? HTTPURLResponse)?.statusCode == 200)

            // Once the follower leads, the same list (dead manager included) takes writes again.
            _ = try await HA.leader(among: [m1], timeout: 20)
            let again = try await grid.cli(["submit", "--manager", "\(m0.url),\(m1.url)", "--json", script])
            #expect(again.status == 0, "\(again.stderr)")
            let page2 = try await URLSession.shared.data(from: URL(string: m1.url + "/")!)
            #expect(!String(decoding: page2.0, as: UTF8.self).contains("Served by a follower manager"), "the new leader's dashboard has no notice")
        }

        @Test func upWithTwoManagersRunsTheHAShapeAndPostgresWithoutItsScriptSaysSo() async throws {
            let grid = try TestGrid(label: "ha-up")
            defer { grid.shutdown() }
            let up = try grid.spawn("up", ["up", "--json", "--workers", "1", "--managers", "2", "--data-dir", grid.root + "/local"])
            let first = try #require(await up.nextLine(timeout: 120), "up printed nothing:\n\(up.errorLog.suffix(3000))")
            let info = try JSONDecoder().decode([String: String].self, from: Data(first.utf8))
            let dashboards = (info["dashboards"] ?? "").split(separator: ",").map(String.init)
            #expect(dashboards.count == 2)
            #expect((info["managers"] ?? "").split(separator: ",").count == 2)
            #expect(dashboards.first == info["dashboard"], "the leader first")
            var roles: [String] = []
            for d in dashboards {
                let (data, _) = try await URLSession.shared.data(from: URL(string: d + "/api/v1/leader")!)
                roles.append(try JSONDecoder().decode(LeaderView.self, from: data).role)
            }
            #expect(roles.sorted() == ["follower", "leader"])
            // A client listing both, the follower first, gets its job run.
            var alice = GridClient(managers: dashboards.reversed().joined(separator: ","))
            alice.token = try await alice.register("alice", password: "long enough").token
            let job = try await alice.submit(API.SubmitRequest(spec: HA.spec("up-ha"), script: HA.script("print('ha')\n"), inputs: []))
            #expect(try await Scenario.waitForState(alice, job.job.id, [.completed, .failed]).state == .completed)
            up.signal(SIGTERM)
            await #expect(up.waitForExit(timeout: 30) == 0)

            // Without the PostgreSQL store's script, --postgres says what is missing (with it, the coordinator's
            // PostgreSQL tests cover `up --postgres`).
            if !FileManager.default.isExecutableFile(atPath: FileManager.default.currentDirectoryPath + "/scripts/postgres") {
                let pg = try await grid.cli(["up", "--managers", "2", "--postgres", "--data-dir", grid.root + "/pg"], timeout: 60)
                #expect(pg.status != 0)
                #expect(pg.stderr.contains("scripts/postgres"), "\(pg.stderr)")
            }
        }
    }
}
