import Foundation
import GridClient
import GridCore
import GridPeer
import GridProtocol
import GridSandbox
import GridTestSupport
import Synchronization
import Testing

@testable import GridWorker

/// Function tasks routed between peers, in process (issue 14): workers with their peer services, their tasks run by
/// `ScriptedFunctions` (no interpreter), the manager on the in-memory transport; the peers' own ports on loopback.
@Suite struct InProcessPeerRoutingTests {
    static func task(_ id: String, _ program: String = "# grid: print hi", confidential: Bool = false) -> GridMessage {
        .cpuTask(Msg.CPUTask(taskId: id, program: program, args: .array([.number(7)]), confidential: confidential, timeout: 30))
    }

    static func result(_ link: PeerLink, _ message: GridMessage) async throws -> Msg.CPUResult {
        let reply = try await link.request(message, timeout: 60)
        guard case .cpuResult(let r) = reply.message else { throw TestGridError("a CPU_TASK was answered with \(reply.message.type)") }
        return r
    }

    /// A peer whose only slot is taken by a grid job asks the manager, and the task runs on the least-loaded peer,
    /// for the user who sent it; a confidential task stays on the busy peer; a peer with a free slot runs it itself.
    @Test func aTaskGivenToABusyPeerRunsOnTheLeastLoadedPeerAndAConfidentialOneStaysPut() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            let busy = try await grid.startWorker("busy", owner: owner, cpus: 1, peer: true)
            let alice = try await grid.user("alice")
            // The job goes to the only worker there is: its slot is taken for the whole test.
            let job = try await alice.submit(InProcessScenarioTests.job("hold", "# grid: sleep 60\n", cpus: 1, ramGb: 1))
            let running = try await InProcessScenarioTests.wait(alice, job.job.id, for: [.running])
            #expect(running.workerId == busy.workerId)
            let idle = try await grid.startWorker("idle", owner: owner, cpus: 1, peer: true)

            let link = try await PeerLink.connect(host: "127.0.0.1", port: try #require(busy.peerPort), grant: alice.grantSource)
            defer { link.close() }
            let routed = try await Self.result(link, Self.task("t-routed"))
            #expect(routed.outcome.ok, "\(routed)")
            #expect(routed.peer == idle.workerId, "ran on \(routed.peer), not on the idle peer \(idle.workerId)")
            #expect(routed.outcome.result == .object(["ran_on": .string("idle"), "user": .string("alice"), "function": .string("main"), "args": .array([.number(7)])]))

            let kept = try await Self.result(link, Self.task("t-confidential", confidential: true))
            #expect(kept.outcome.ok && kept.peer == busy.workerId, "a confidential task left its peer: \(kept)")

            let direct = try await PeerLink.connect(host: "127.0.0.1", port: try #require(idle.peerPort), grant: alice.grantSource)
            defer { direct.close() }
            let local = try await Self.result(direct, Self.task("t-local"))
            #expect(local.peer == idle.workerId, "a peer with a free slot sent its task away: \(local)")
            _ = try await alice.cancel(job.job.id)
        }
    }

    /// Under a container engine (or no sandbox) a worker's function-task interpreters are plain children of the worker,
    /// with its user's rights: any user's task read the contributor's files there. Such a peer runs only its owner's
    /// tasks: another user's confidential task is refused, an ordinary one goes to a sandboxed peer, and the manager
    /// never chooses it for anyone's.
    @Test func aPeerWithoutATaskSandboxRunsOnlyItsOwnersTasks() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            let bare = try await grid.startWorker("bare", owner: owner, cpus: 1, peer: true, unsandboxedTasks: true)
            let alice = try await grid.user("alice")
            let link = try await PeerLink.connect(host: "127.0.0.1", port: try #require(bare.peerPort), grant: alice.grantSource)
            defer { link.close() }
            for confidential in [true, false] {
                do {
                    let r = try await Self.result(link, Self.task("t-alone-\(confidential)", confidential: confidential))
                    Issue.record("alice's task ran on a peer without a task sandbox: \(r)")
                } catch let e as GridError {
                    #expect(e.code == .forbidden && e.message.contains("without a sandbox"), "\(e)")
                }
            }
            let boxed = try await grid.startWorker("boxed", owner: owner, cpus: 1, peer: true)
            let handed = try await eventually(timeout: 30, interval: 0.1) {
                (try? await Self.result(link, Self.task("t-handed")))?.peer == boxed.workerId
            }
            #expect(handed, "alice's task was not handed to the sandboxed peer")
            let mine = try await PeerLink.connect(host: "127.0.0.1", port: try #require(bare.peerPort), grant: owner.grantSource)
            defer { mine.close() }
            let own = try await Self.result(mine, Self.task("t-own", confidential: true))
            #expect(own.outcome.ok && own.peer == bare.workerId, "the owner's own task did not run on its worker: \(own)")
        }
    }

    /// A grid's first peer (`name`, one slot) with that slot held by a job of alice's for the whole test (the only
    /// worker there is takes it): the owner, the peer, alice and her job.
    static func peerWithItsSlotHeld(_ grid: InProcessGrid, _ name: String) async throws -> (
        owner: GridClient, peer: InProcessWorker, alice: GridClient, job: JobID
    ) {
        let owner = try await grid.user("owner")
        let peer = try await grid.startWorker(name, owner: owner, cpus: 1, peer: true)
        let alice = try await grid.user("alice")
        let job = try await alice.submit(InProcessScenarioTests.job("hold", "# grid: sleep 600\n", cpus: 1, ramGb: 1, minutes: 15))
        _ = try await InProcessScenarioTests.wait(alice, job.job.id, for: [.running])
        return (owner, peer, alice, job.job.id)
    }

    /// A peer that may not run another user's task (no task sandbox) hands it on even to a peer busier than itself:
    /// it counts as full. (A first version checked the manager's answer against the asker's own load, and this idle
    /// peer refused alice's task while a sandboxed peer could take it.)
    @Test func aPeerWithoutATaskSandboxHandsATaskToABusierSandboxedPeer() async throws {
        try await withTestGrid(workers: 0) { grid in
            let (owner, boxed, alice, job) = try await Self.peerWithItsSlotHeld(grid, "boxed")
            let bare = try await grid.startWorker("bare", owner: owner, cpus: 1, peer: true, unsandboxedTasks: true)
            let link = try await PeerLink.connect(host: "127.0.0.1", port: try #require(bare.peerPort), grant: alice.grantSource)
            defer { link.close() }
            var last = ""
            let handed = try await eventually(timeout: 30, interval: 0.1) {
                do {
                    let r = try await Self.result(link, Self.task("t-\(UUID().uuidString.prefix(8))"))
                    last = "\(r)"
                    return r.outcome.ok && r.peer == boxed.workerId
                } catch {
                    last = "\(error)"
                    return false
                }
            }
            #expect(handed, "alice's task was not handed to the busy sandboxed peer: \(last)")
            _ = try await alice.cancel(job)
        }
    }

    /// The manager counts a task it sends a peer's way on that peer until it reports: the next busy peer asking within
    /// that time is not sent to the same idle-looking peer. Only a peer's asks for its own tasks count: one sent in
    /// another peer's name (a forged `prefer`) counts nothing.
    @Test func aTaskSentAPeersWayCountsOnItAndAForgedAskerCountsNothing() async throws {
        try await withTestGrid(workers: 0) { grid in
            let (owner, busy, alice, job) = try await Self.peerWithItsSlotHeld(grid, "busy")
            let idle = try await grid.startWorker("idle", owner: owner, cpus: 1, peer: true)
            // `task` nil: a question that counts nothing (as a user's relayed one), to look without touching.
            func best(_ task: String?, prefer: String, from asker: InProcessWorker? = nil) async throws -> String? {
                let message = GridMessage.getBestPeer(Msg.GetBestPeer(taskId: task, prefer: prefer))
                guard case .bestPeer(let b) = try await (asker ?? busy).agent.ask(message) else { return nil }
                return b.peer.workerId
            }
            // The idle peer's own reports (each resets what was counted on it) may fall between two asks: tried again.
            var seen: [String?] = []
            let counted = try await eventually(timeout: 30, interval: 0.3) {
                seen = [try await best("t-1", prefer: busy.workerId), try await best(nil, prefer: busy.workerId)]
                return seen == [idle.workerId, busy.workerId]
            }
            #expect(counted, "the second busy ask was sent to the same idle peer: \(seen)")
            // Past the window, the idle peer is idle again. Asks the busy peer sends in the idle one's name (a forged
            // `prefer`: the answer names the idle peer, not the sender) count nothing on it: a look right after them
            // still names it.
            let quiet = try await eventually(timeout: 30, interval: 0.1) { try await best(nil, prefer: busy.workerId) == idle.workerId }
            #expect(quiet, "the idle peer never looked idle again")
            for i in 0..<5 { _ = try await best("f-\(i)", prefer: idle.workerId) }
            let after = try await best(nil, prefer: busy.workerId)
            let forged = after == idle.workerId
            #expect(forged, "asks in another peer's name made the idle peer look busy: \(String(describing: after))")
            _ = try await alice.cancel(job)
        }
    }

    /// A user could send tasks to a busy peer, close the connection and send more: each stayed queued with its program
    /// and arguments until it ran, without bound, and the worker ran out of memory. A user's waiting tasks are bounded
    /// (the next is refused as rate limited, saying why), and those of a connection that closed are dropped.
    @Test func aUsersWaitingTasksAreBoundedAndAClosedConnectionsAreDropped() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            let peer = try await grid.startWorker("one-slot", owner: owner, cpus: 1, peer: true, maxQueuedTasksPerUser: 3)
            let service = try #require(peer.peerService)
            let mallory = try await grid.user("mallory")
            let first = try await PeerLink.connect(host: "127.0.0.1", port: try #require(peer.peerPort), grant: mallory.grantSource)
            // Confidential: they stay on this peer. The first holds the only slot; the rest wait. Each outcome is kept
            // as it comes: the connection closes only once three wait and four were refused (under load they arrive
            // over a while).
            let outcomes = Outcomes()
            let sent = Task {
                await withTaskGroup(of: Void.self) { group in
                    for i in 0..<8 {
                        group.addTask {
                            let outcome: String
                            do {
                                _ = try await Self.result(first, Self.task("t-\(i)", "# grid: sleep 10", confidential: true))
                                outcome = "ran"
                            } catch let e as GridError {
                                outcome = e.code == .rateLimited && e.message.contains("most it queues") ? "limited" : "\(e)"
                            } catch {
                                outcome = "closed"
                            }
                            outcomes.add(outcome)
                        }
                    }
                }
            }
            let bounded = await eventually(timeout: 60, interval: 0.05) {
                let limited = outcomes.all.filter { $0 == "limited" }.count
                let waiting = await service.queue.count(of: "mallory")
                return limited >= 4 && waiting == 3
            }
            let waiting = await service.queue.count(of: "mallory")
            #expect(bounded, "not three waiting and four refused: \(outcomes.all), \(waiting) waiting")
            first.close()
            await sent.value
            let dropped = await eventually(timeout: 30, interval: 0.05) { await service.queue.count(of: "mallory") == 0 }
            #expect(dropped, "the closed connection's tasks stayed queued")
        }
    }

    /// Neither a confidential task nor its existence leaves its machine: the load the manager is told, and the status
    /// other callers read, leave confidential tasks out (running, waiting, or done), and their coming and going says
    /// nothing early to the manager. An ordinary task is counted as before.
    @Test func confidentialTasksAreLeftOutOfTheLoadAndTheStatusOthersRead() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            let peer = try await grid.startWorker("private", owner: owner, cpus: 1, peer: true)
            let service = try #require(peer.peerService)
            let alice = try await grid.user("alice")
            let mine = try await PeerLink.connect(host: "127.0.0.1", port: try #require(peer.peerPort), grant: alice.grantSource)
            defer { mine.close() }
            let sent = Task {
                await withTaskGroup(of: Void.self) { group in
                    for i in 0..<3 { group.addTask { _ = try? await Self.result(mine, Self.task("c-\(i)", "# grid: sleep 3", confidential: true)) } }
                }
            }
            let here = await eventually(timeout: 30, interval: 0.05) { await service.running + service.queue.count == 3 }
            #expect(here, "the three confidential tasks never all came")
            let hidden = await service.taskLoad()
            #expect(hidden == 0)
            let bob = try await grid.user("bob")
            let theirs = try await PeerLink.connect(host: "127.0.0.1", port: try #require(peer.peerPort), grant: bob.grantSource)
            defer { theirs.close() }
            func status() async throws -> Msg.PeerStatus {
                guard case .peerStatus(let s) = try await theirs.request(.getPeerStatus).message else { throw TestGridError("no PEER_STATUS") }
                return s
            }
            let seen = try await status()
            #expect(seen.running == 0 && seen.queued.isEmpty, "\(seen)")
            // Bob's ordinary task waits behind them, and is counted.
            let ordinary = Task { try? await Self.result(theirs, Self.task("o-1", "# grid: sleep 1")) }
            let counted = await eventually(timeout: 30, interval: 0.05) { await service.taskLoad() == 1 }
            #expect(counted, "the ordinary task was not counted")
            // Alice sees her own.
            guard case .peerStatus(let hers) = try await mine.request(.getPeerStatus).message else { throw TestGridError("no PEER_STATUS") }
            #expect(hers.running == 1, "\(hers)")
            await sent.value
            _ = await ordinary.value
            let after = try await status()
            #expect(after.tasksDone == 1 && after.running == 0 && after.queued.isEmpty, "\(after)")
            let load = await service.taskLoad()
            #expect(load == 0)
        }
    }

    /// A listing of more keys than a listing gives came back empty: one user who published that many public keys
    /// emptied every user's listing of the public names. It gives the first ones, in name order.
    @Test func aListingOfMoreKeysThanItGivesGivesTheFirstOnes() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            let peer = try await grid.startWorker("lister", owner: owner, cpus: 1, peer: true, maxListed: 5)
            let mallory = try await grid.user("mallory")
            let link = try await PeerLink.connect(host: "127.0.0.1", port: try #require(peer.peerPort), grant: mallory.grantSource)
            defer { link.close() }
            for i in 0..<7 { _ = try await link.request(.setMem(Msg.SetMem(key: "pub-\(i)", value: .number(Double(i)), isPublic: true))) }
            let alice = try await grid.user("alice")
            let reader = try await PeerLink.connect(host: "127.0.0.1", port: try #require(peer.peerPort), grant: alice.grantSource)
            defer { reader.close() }
            guard case .memKeys(let listed) = try await reader.request(.listMem(Msg.ListMem(prefix: "pub-"))).message else {
                Issue.record("no MEM_KEYS")
                return
            }
            #expect(listed.keys == (0..<5).map { "pub-\($0)" }, "\(listed.keys)")
            // And says so: some were left out (it said nothing, and a listing looked whole).
            #expect(listed.truncated == true)
            guard case .memKeys(let one) = try await reader.request(.listMem(Msg.ListMem(prefix: "pub-6"))).message else {
                Issue.record("no MEM_KEYS")
                return
            }
            #expect(one.keys == ["pub-6"] && one.truncated == nil)
        }
    }

    /// A peer that said it is stopping is not chosen for a task, though it is the least busy: the manager picks among
    /// the others (`PeerChoice` skips it; here end to end, through the asking peer and the manager).
    @Test func aStoppingPeerIsNotChosenForATaskThoughItIsTheLeastBusy() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            let alice = try await grid.user("alice")
            var holds: [JobID] = []
            func hold(_ name: String, cpus: Int, on worker: InProcessWorker) async throws {
                let job = try await alice.submit(InProcessScenarioTests.job(name, "# grid: sleep 60\n", cpus: cpus, ramGb: 1))
                holds.append(job.job.id)
                let running = try await InProcessScenarioTests.wait(alice, job.job.id, for: [.running])
                #expect(running.workerId == worker.workerId, "\(name) went to \(running.workerId ?? "-")")
            }
            // Each job fits only the worker started for it. Work per slot: busy 1/1, other 1/2, leaving 1/4.
            let busy = try await grid.startWorker("busy", owner: owner, cpus: 1, peer: true)
            try await hold("hold-busy", cpus: 1, on: busy)
            let other = try await grid.startWorker("other", owner: owner, cpus: 2, peer: true)
            try await hold("hold-other", cpus: 1, on: other)
            let gate = GatedRunner()
            let leaving = try await grid.startWorker("leaving", owner: owner, cpus: 4, runner: gate, peer: true)
            let slow = try await alice.submit(InProcessScenarioTests.job("hold-leaving", "# grid: slow start\n# grid: sleep 60\n", cpus: 2, ramGb: 1))
            #expect(try await eventually(timeout: 20, interval: 0.02) { gate.blocked.withLock { $0 } == 1 }, "its start began")
            #expect(try await alice.job(slow.job.id).workerId == leaving.workerId)

            // It stops, and waits for the run it cannot report yet (its start is blocked): it stays online, stopping.
            let stopping = Task { await leaving.stop() }
            #expect(await grid.managerHeardStopping(leaving.workerId), "the manager never heard that the worker stops; log: \(grid.root)/grid.log")
            #expect(try await owner.workers().workers.contains { $0.id == leaving.workerId && $0.online })

            let link = try await PeerLink.connect(host: "127.0.0.1", port: try #require(busy.peerPort), grant: alice.grantSource)
            defer { link.close() }
            let routed = try await Self.result(link, Self.task("t-not-to-the-leaving"))
            #expect(routed.outcome.ok, "\(routed)")
            #expect(routed.peer == other.workerId, "ran on \(routed.peer), not on \(other.workerId) (the leaving peer is \(leaving.workerId))")
            gate.open()
            await stopping.value
            for id in holds { _ = try await alice.cancel(id) }
        }
    }

    /// A peer that ends (here: its worker cancelled, as when its process is told to stop at once) answers the tasks
    /// still waiting for a slot, and starts none of them: none is left unanswered.
    @Test func aStoppingPeerEndsItsWaitingTasksWithAnAnswer() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            let peer = try await grid.startWorker("p", owner: owner, cpus: 1, peer: true)
            let alice = try await grid.user("alice")
            let link = try await PeerLink.connect(host: "127.0.0.1", port: try #require(peer.peerPort), grant: alice.grantSource)
            defer { link.close() }
            // The only slot is taken; the second task waits for it.
            func status() async throws -> Msg.PeerStatus? {
                guard case .peerStatus(let s) = try await link.request(.getPeerStatus).message else { return nil }
                return s
            }
            async let holding = link.request(Self.task("t-hold", "# grid: sleep 30", confidential: true), timeout: 60)
            #expect(try await eventually(timeout: 20, interval: 0.02) { try await status()?.running == 1 })
            async let waiting = Self.result(link, Self.task("t-waiting", confidential: true))
            #expect(try await eventually(timeout: 20, interval: 0.02) { try await status()?.queued["alice"] == 1 })
            let stopping = Task { await peer.vanish() }
            // Answered either way: run (the holding task's end, cancelled, may give it the slot first) or refused.
            let r = try await waiting
            #expect(r.outcome.ok || r.outcome.message == "the peer stopped before the task started", "\(r)")
            _ = try? await holding
            await stopping.value
        }
    }

    /// `GET_PEER_STATUS`, which any user may send in a loop, listed the whole chunk folder on the peer's actor each
    /// time (thousands of files), holding up every memory and file request. The count is the last repair pass's, made
    /// off the actor.
    @Test func aLoopOfStatusRequestsListsTheChunkFolderAtMostOnce() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            let peer = try await grid.startWorker("p", owner: owner, cpus: 1, peer: true)
            let service = try #require(peer.peerService)
            let mallory = try await grid.user("mallory")
            let link = try await PeerLink.connect(host: "127.0.0.1", port: try #require(peer.peerPort), grant: mallory.grantSource)
            defer { link.close() }
            let store = await service.chunks
            let before = store.listings
            for _ in 0..<50 {
                guard case .peerStatus = try await link.request(.getPeerStatus).message else {
                    Issue.record("no PEER_STATUS")
                    return
                }
            }
            // The peer's own passes (repair, reclaim) list it too, each once a pass: a few at most, never one a request.
            #expect(store.listings - before < 5, "\(store.listings - before) listings for 50 status requests")
        }
    }

    /// A public name is first come, first served: Mallory may publish `data.csv` before Alice stores hers. A job of
    /// Alice's naming `grid:data.csv`, and her reads, then get Mallory's: never silently. The job's history says whose
    /// file stood in, a read answers who published it; her own file, once stored, is read with no such word.
    @Test func aPublicFileStandingInForAMissingOwnOneIsSaidWithItsPublisher() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            let peer = try await grid.startWorker("p", owner: owner, cpus: 1, peer: true)
            let alice = try await grid.user("alice")
            let mallory = try await grid.user("mallory")
            let port = try #require(peer.peerPort)
            let aliceLink = try await PeerLink.connect(host: "127.0.0.1", port: port, grant: alice.grantSource)
            defer { aliceLink.close() }
            let malloryLink = try await PeerLink.connect(host: "127.0.0.1", port: port, grant: mallory.grantSource)
            defer { malloryLink.close() }
            let dir = grid.root + "/users"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try Data("planted\n".utf8).write(to: URL(fileURLWithPath: dir + "/mallory.csv"))
            try Data("alice's own\n".utf8).write(to: URL(fileURLWithPath: dir + "/alice.csv"))
            _ = try await malloryLink.upload(path: dir + "/mallory.csv", as: "data.csv", isPublic: true)
            _ = try await malloryLink.request(.setMem(Msg.SetMem(key: "config", value: .string("planted"), isPublic: true)))

            // Reads say who published what answered them.
            guard case .memResult(let planted) = try await aliceLink.request(.getMem(Msg.MemKey(key: "config"))).message else {
                Issue.record("no MEM_RESULT")
                return
            }
            #expect(planted.value == .string("planted") && planted.publishedBy == "mallory", "\(planted)")
            guard case .fileInfo(let info) = try await aliceLink.request(.getFile(Msg.FileRef(filename: "data.csv"))).message else {
                Issue.record("no FILE_INFO")
                return
            }
            #expect(info.publishedBy == "mallory", "\(info)")

            // The job's history says so, not its log: verification compares two runs' logs, and a run on a worker
            // before this note, or after Alice stored her own copy, would differ by it.
            func run() async throws -> (log: String, history: [String]) {
                var request = InProcessScenarioTests.job("reads-data", "# grid: print ran\n")
                request.spec.gridInputs = ["data.csv"]
                let id = try await alice.submit(request).job.id
                let done = try await InProcessScenarioTests.wait(alice, id, for: [.failed, .completed], timeout: 60)
                #expect(done.state == .completed, "\(done.state): \((done.events ?? []).compactMap(\.detail))")
                return (try await alice.logs(id, from: 0).text, (done.events ?? []).compactMap(\.detail))
            }
            let standIn = try await run()
            #expect(standIn.log == "ran\n")
            #expect(
                standIn.history.contains("input grid:data.csv was the public file published by mallory (you store no file of that name)"),
                "\(standIn.history)")
            // Mallory is told nothing of her own public file.
            guard case .fileInfo(let hers) = try await malloryLink.request(.getFile(Msg.FileRef(filename: "data.csv"))).message else {
                Issue.record("no FILE_INFO")
                return
            }
            #expect(hers.publishedBy == nil, "\(hers)")

            // Her own file and value, once stored, come first, with no word of anyone else's.
            _ = try await aliceLink.upload(path: dir + "/alice.csv", as: "data.csv")
            _ = try await aliceLink.request(.setMem(Msg.SetMem(key: "config", value: .string("mine"))))
            guard case .memResult(let mine) = try await aliceLink.request(.getMem(Msg.MemKey(key: "config"))).message,
                case .fileInfo(let own) = try await aliceLink.request(.getFile(Msg.FileRef(filename: "data.csv"))).message
            else {
                Issue.record("no answer")
                return
            }
            #expect(mine.value == .string("mine") && mine.publishedBy == nil, "\(mine)")
            #expect(own.publishedBy == nil && own.size == 12, "\(own)")
            let ownRun = try await run()
            #expect(ownRun.log == "ran\n" && !ownRun.history.contains { $0.contains("public file") }, "\(ownRun.history)")
        }
    }

    /// A stored file of zeros costs its owner one chunk whatever its size, and a job's grid inputs are written to the
    /// worker's disk outside the sandbox: they may take `maxGridInputBytes` in all, and a job asking for more fails
    /// saying why (the submitter's mistake: it is not moved to the next worker). One that fits runs.
    @Test func aJobsGridInputsOverTheWorkersBoundFailTheJobAndWriteNothing() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            let peer = try await grid.startWorker("p", owner: owner, cpus: 1, peer: true, maxGridInputBytes: 1 << 20)
            let alice = try await grid.user("alice")
            let link = try await PeerLink.connect(host: "127.0.0.1", port: try #require(peer.peerPort), grant: alice.grantSource)
            defer { link.close() }
            let dir = grid.root + "/alice"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try Data(count: 3 << 20).write(to: URL(fileURLWithPath: dir + "/big.bin"))
            try Data(count: 1000).write(to: URL(fileURLWithPath: dir + "/small.bin"))
            _ = try await link.upload(path: dir + "/big.bin", as: "big.bin")
            _ = try await link.upload(path: dir + "/small.bin", as: "small.bin")
            func submit(_ input: String) async throws -> JobID {
                var request = InProcessScenarioTests.job("uses-\(input)", "# grid: print ok\n")
                request.spec.gridInputs = [input]
                return try await alice.submit(request).job.id
            }
            let big = try await submit("big.bin")
            let failed = try await InProcessScenarioTests.wait(alice, big, for: [.failed, .completed], timeout: 60)
            let said = (failed.events ?? []).compactMap(\.detail).joined(separator: "\n")
            #expect(failed.state == .failed && said.contains("grid:big.bin") && said.contains("may take"), "\(failed.state): \(said)")
            let written = (try? FileManager.default.subpathsOfDirectory(atPath: grid.root + "/workers/p/jobs")) ?? []
            #expect(!written.contains { $0.hasSuffix("big.bin") }, "the over-large input was written: \(written)")
            let small = try await submit("small.bin")
            let done = try await InProcessScenarioTests.wait(alice, small, for: [.failed, .completed], timeout: 60)
            #expect(done.state == .completed, "\(done.state): \((done.events ?? []).compactMap(\.detail))")
        }
    }

    /// A job's grid inputs are written to the worker's disk: a worker whose disk would keep less than its reserve free
    /// fetches nothing and hands the job back (another worker may have the room), saying why; the job is not failed,
    /// and runs on a worker with room.
    @Test func aWorkerWithoutDiskRoomForAJobsGridInputsHandsItOn() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            // A reserve no disk has: no input fits.
            let tight = try await grid.startWorker("tight", owner: owner, cpus: 1, peer: true, diskReserveBytes: .max)
            let alice = try await grid.user("alice")
            let link = try await PeerLink.connect(host: "127.0.0.1", port: try #require(tight.peerPort), grant: alice.grantSource)
            defer { link.close() }
            let dir = grid.root + "/alice"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try Data(count: 1000).write(to: URL(fileURLWithPath: dir + "/data.bin"))
            _ = try await link.upload(path: dir + "/data.bin", as: "data.bin")
            var request = InProcessScenarioTests.job("uses-data", "# grid: print ok\n")
            request.spec.gridInputs = ["data.bin"]
            let id = try await alice.submit(request).job.id
            var said = ""
            var state: JobState?
            let handedBack = try await eventually(timeout: 60, interval: 0.05) {
                let status = try await alice.job(id)
                said = (status.events ?? []).compactMap(\.detail).joined(separator: "\n")
                state = status.state
                return said.contains("room for")
            }
            #expect(handedBack && state != .failed, "\(String(describing: state)): \(said)")
            let written = (try? FileManager.default.subpathsOfDirectory(atPath: grid.root + "/workers/tight/jobs")) ?? []
            #expect(!written.contains { $0.hasSuffix("data.bin") }, "the input was written: \(written)")
            _ = try await grid.startWorker("roomy", owner: owner, cpus: 1, peer: true)
            let done = try await InProcessScenarioTests.wait(alice, id, for: [.failed, .completed], timeout: 60)
            #expect(done.state == .completed, "\(done.state): \((done.events ?? []).compactMap(\.detail))")
        }
    }

    /// The worker measures each running job's folder: a job past its disk limit (here, too many files) is stopped and
    /// ends `failed`, saying why.
    @Test func aWorkerStopsAJobPastItsDiskLimit() async throws {
        // The folder itself and the script are 2 entries; the job makes 4 more.
        let script = "# grid: write a 1\n# grid: write b 2\n# grid: write c 3\n# grid: write d 4\n# grid: sleep 30\n# grid: print DONE\n"
        try await expectStopped(
            by: DiskLimits(maxBytes: 10 << 30, maxEntries: 4, floorBytes: 0), InProcessScenarioTests.job("fills", script), saying: "files and folders")
    }

    /// Starts a worker held to `limits`, runs another user's job (`request`) on it, and checks that it failed saying
    /// `says`.
    func expectStopped(by limits: DiskLimits, _ request: API.SubmitRequest, saying says: String) async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            _ = try await grid.startWorker("w", owner: owner, cpus: 1, jobDisk: limits)
            let alice = try await grid.user("alice")
            let id = try await alice.submit(request).job.id
            let done = try await InProcessScenarioTests.wait(alice, id, for: [.failed, .completed, .timedOut], timeout: 90)
            #expect(done.state == .failed, "\(done.state)")
            let said = (done.events ?? []).compactMap(\.detail).joined(separator: "\n")
            #expect(said.contains(says), "\(said)")
        }
    }

    /// A job's scratch-disk limit is the job's, not the worker's: on a worker that allows 20 GB, a job that asked for
    /// 1 GB is stopped once it holds more (a check run on any other worker stops where it did, so an honest worker is
    /// never contradicted by one that allowed more).
    @Test func aJobIsStoppedAtItsOwnDiskLimitNotTheWorkers() async throws {
        let script = "# grid: allocate big.bin \((1 << 30) + (256 << 20))\n# grid: sleep 60\n# grid: print DONE\n"
        try await expectStopped(
            by: DiskLimits(maxBytes: 20 << 30, maxEntries: 1_000, floorBytes: 0), Self.job("one-gb", script, diskGb: 1), saying: "disk limit")
    }

    /// A worker that lets a job fill less than it asks for is given none of it: the job waits, saying why, and runs
    /// on a worker that allows enough; a job that asks for less runs on the small worker meanwhile.
    @Test func aWorkerThatAllowsLessDiskThanAJobAsksGetsNoneOfIt() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            _ = try await grid.startWorker("small", owner: owner, cpus: 1, jobDisk: DiskLimits(maxBytes: 2 << 30, maxEntries: 1_000, floorBytes: 0))
            let alice = try await grid.user("alice")
            let asksDefault = try await alice.submit(InProcessScenarioTests.job("default-disk", "# grid: print ok\n")).job.id
            let asksOne = try await alice.submit(Self.job("one-gb", "# grid: print ok\n", diskGb: 1)).job.id
            let small = try await InProcessScenarioTests.wait(alice, asksOne, for: [.failed, .completed], timeout: 60)
            #expect(small.state == .completed && small.worker == "small", "\(small.state) on \(small.worker ?? "-")")
            let waiting = try await alice.job(asksDefault)
            #expect(waiting.state == .pending, "\(waiting.state)")
            #expect(waiting.pendingReason?.contains("10 GB of scratch disk") == true, "\(waiting.pendingReason ?? "-")")
            _ = try await grid.startWorker("large", owner: owner, cpus: 1)
            let done = try await InProcessScenarioTests.wait(alice, asksDefault, for: [.failed, .completed], timeout: 60)
            #expect(done.state == .completed && done.worker == "large", "\(done.state) on \(done.worker ?? "-")")
            #expect((done.interruptions ?? []).isEmpty, "the small worker was given it: \(done.interruptions ?? [])")
        }
    }

    /// A worker killed mid-run leaves its run's folder; the next worker started on that data folder removes it before
    /// it takes work, and names its own runs' folders with its PID.
    @Test func aWorkerRemovesTheRunFoldersAKilledWorkerLeft() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            let jobs = grid.root + "/workers/again/jobs"
            let left = JobFiles.folder(for: JobRef(jobId: 41, attempt: 1), in: jobs, pid: try JobFilesTests.deadPid())
            try FileManager.default.createDirectory(at: left, withIntermediateDirectories: true)
            try Data(count: 1 << 20).write(to: left.appendingPathComponent("half-written.bin"))
            _ = try await grid.startWorker("again", owner: owner, cpus: 1)
            #expect(!FileManager.default.fileExists(atPath: left.path), "the killed worker's run folder is still there")
            let alice = try await grid.user("alice")
            let id = try await alice.submit(InProcessScenarioTests.job("waits", "# grid: sleep 30\n")).job.id
            let named = try await eventually(timeout: 30, interval: 0.05) {
                ((try? FileManager.default.contentsOfDirectory(atPath: jobs)) ?? []).contains("run-\(getpid())-\(id)-1")
            }
            #expect(named, "\((try? FileManager.default.contentsOfDirectory(atPath: jobs)) ?? [])")
            _ = try await alice.cancel(id)
        }
    }

    static func job(_ name: String, _ script: String, diskGb: Int) -> API.SubmitRequest {
        API.SubmitRequest(
            spec: JobSpec(name: name, diskGb: diskGb),
            script: API.FileUpload(name: "\(name).py", contentBase64: Data(script.utf8).base64EncodedString()), inputs: [])
    }

    /// A worker whose disk is under what it keeps free says so at `REGISTER` and in each heartbeat, and gets no job
    /// (each would be handed back at once, again and again, using up the job's tries). The jobs wait, and run on a
    /// worker with room.
    @Test func aWorkerWithANearlyFullDiskGetsNoJobs() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            // A floor no disk meets.
            _ = try await grid.startWorker("full", owner: owner, cpus: 1, jobDisk: DiskLimits(maxBytes: 10 << 30, maxEntries: 1_000, floorBytes: .max))
            let alice = try await grid.user("alice")
            var ids: [JobID] = []
            for i in 0..<3 { ids.append(try await alice.submit(InProcessScenarioTests.job("needs-disk-\(i)", "# grid: print ok\n")).job.id) }
            // The full worker's heartbeats keep the jobs waiting (at most a hand-back each before its first one).
            let waiting = try await eventually(timeout: 60, interval: 0.05) {
                var all = true
                for id in ids {
                    let s = try await alice.job(id)
                    all = all && s.state == .pending && (s.pendingReason?.contains("waiting for") ?? false)
                }
                return all
            }
            #expect(waiting, "the jobs did not wait while the only worker's disk was full")
            _ = try await grid.startWorker("roomy", owner: owner, cpus: 1)
            for id in ids {
                let done = try await InProcessScenarioTests.wait(alice, id, for: [.failed, .completed], timeout: 60)
                #expect(done.state == .completed, "\(done.state): \((done.events ?? []).compactMap(\.detail))")
                #expect(done.worker == "roomy")
                #expect((done.interruptions ?? []).isEmpty, "the full worker was given the job: \(done.interruptions ?? [])")
            }
        }
    }

    /// A root worker's sandbox writes as root: a setuid file a job made in its folder, or an environment it built, must
    /// be no way in for another local user, who must not reach a running job's folder either. The worker keeps them in
    /// folders only its own user can enter.
    @Test func aWorkersJobFoldersAreItsUsersAlone() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            _ = try await grid.startWorker("own", owner: owner, cpus: 1, peer: true)
            for folder in ["jobs", "envs", "peer"] {
                let path = grid.root + "/workers/own/" + folder
                let mode = try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
                #expect(mode & 0o077 == 0, "\(path) is \(String(mode, radix: 8))")
            }
        }
    }

    /// A worker's join token is not a person: a peer refuses it, so a worker (or whoever stole its token) cannot send
    /// tasks as a user.
    @Test func aPeerRefusesAWorkersJoinTokenInPlaceOfAPersons() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            let peer = try await grid.startWorker("p", owner: owner, cpus: 1, peer: true)
            let joinToken = try await owner.createToken(kind: "worker").token
            // Presented to the manager for session tickets.
            var asWorker = owner
            asWorker.token = joinToken
            await #expect(throws: GridError.self) {
                let link = try await PeerLink.connect(host: "127.0.0.1", port: try #require(peer.peerPort), grant: asWorker.grantSource)
                link.close()
            }
        }
    }

    /// `POST /api/v1/peer-tickets`, as a stranger would try it: only a person's API token gets a certificate, only for
    /// a well-formed key, always naming the caller; a forwarding ticket only for an online worker that listens for peers.
    @Test func theManagerCertifiesOnlyAPersonsWellFormedKeyAndForwardsOnlyForAnOnlinePeer() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            let peer = try await grid.startWorker("p", owner: owner, cpus: 1, peer: true)
            let portless = try await grid.startWorker("jobs-only", owner: owner, cpus: 1)
            let alice = try await grid.user("alice")
            let key = PeerTrust.Signer().publicKey
            let grant = try await alice.peerGrant(key: key, worker: peer.workerId)
            #expect(grant.certificate.user == "alice" && grant.certificate.key == key)
            #expect(grant.forward?.user == "alice" && grant.forward?.holder == peer.workerId)
            let bobs = try await (try await grid.user("bob")).peerGrant(key: key, worker: peer.workerId)
            #expect(bobs.certificate.user == "bob", "a grant names its caller, whoever asks, whatever key")
            for worker in ["w-nobody", "", portless.workerId, String(repeating: "w", count: 100_000)] {
                let g = try await alice.peerGrant(key: key, worker: worker)
                #expect(g.forward == nil && g.certificate.user == "alice", "worker \(worker.prefix(20)) got a forwarding ticket")
            }
            #expect(try await alice.peerGrant(key: key).forward == nil)

            func status(_ client: GridClient, key: String) async -> Int? {
                do {
                    _ = try await client.peerGrant(key: key, worker: peer.workerId)
                    return nil
                } catch let f as GridClient.Failure {
                    return f.status
                } catch {
                    return -1
                }
            }
            var anonymous = alice
            anonymous.token = nil
            #expect(await status(anonymous, key: key) == 401)
            var joining = alice
            joining.token = try await owner.createToken(kind: "worker").token
            #expect(await status(joining, key: key) == 401, "a worker's join token is no person")
            for bad in ["", "AAAA", key + "\nforged", String(repeating: "A", count: 44), String(repeating: "A", count: 100_000), "é"] {
                #expect(await status(alice, key: bad) == 400, "key \(bad.prefix(50).debugDescription)")
            }
        }
    }

    /// A person's certificate is checked offline and lasts 12 h, so before this, a copy of a person's key and
    /// certificate (a lab machine's `peer-keys.json`) still opened sessions at peers after that person logged out. Now
    /// the certificate names the token it was granted under, and a peer that reaches the manager asks whether that
    /// token still stands: after the logout, the copy opens nothing, and the person's other tokens are not affected.
    @Test func aCertificateGrantedUnderALoggedOutTokenOpensNoSessionAtAPeer() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            // No answer kept: each session asks (the default keeps a standing answer for a minute, as tokens are).
            let peer = try await grid.startWorker("p", owner: owner, cpus: 1, peer: true, peerAuthCacheSeconds: 0)
            let port = try #require(peer.peerPort)
            let alice = try await grid.user("alice")
            var laptop = alice
            laptop.token = try await alice.login("alice", password: "correct horse battery").token
            func pass(_ client: GridClient) async throws -> PeerTrust.Pass {
                let signer = PeerTrust.Signer()
                return PeerTrust.Pass(grant: try await client.peerGrant(key: signer.publicKey, worker: peer.workerId), signer: signer)
            }
            func session(_ pass: PeerTrust.Pass) async throws -> PeerLink {
                try await PeerLink.connect(host: "127.0.0.1", port: port, grant: { _ in pass })
            }
            let copied = try await pass(alice)
            let tokenHash = SHA256Digest.hash(Array(try #require(alice.token).utf8)).map { String(format: "%02x", $0) }.joined()
            #expect(copied.grant.certificate.tokenHash == tokenHash, "the certificate names the token it was granted under")
            let before = try await session(copied)
            defer { before.close() }
            guard case .memResult = try await before.request(.setMem(Msg.SetMem(key: "k", value: .string("v")))).message else {
                Issue.record("a session of a standing token could not write")
                return
            }

            try await alice.logout()
            do {
                let after = try await session(copied)
                after.close()
                Issue.record("a certificate of a logged-out token opened a session")
            } catch let e as GridError {
                #expect(e.code == .unauthorized && e.message.contains("revoked"), "\(e)")
            }
            // The session opened before the logout does nothing after it either: no write, and no read (not even of a
            // key held right there, which the server otherwise answers without the peer's actor).
            for request in [GridMessage.setMem(Msg.SetMem(key: "k", value: .string("w"))), .getMem(Msg.MemKey(key: "k"))] {
                do {
                    let r = try await before.request(request).message
                    Issue.record("a session opened before the logout did \(request.type) after it: \(r)")
                } catch let e as GridError {
                    #expect(e.code == .unauthorized && e.message.contains("revoked"), "\(e)")
                }
            }
            // A certificate of another of alice's tokens still opens one.
            let other = try await session(try await pass(laptop))
            guard case .memResult(let r) = try await other.request(.getMem(Msg.MemKey(key: "k"))).message else {
                Issue.record("alice's other token lost her session")
                return
            }
            #expect(r.value == .string("v"))
            other.close()

            // The laptop was stolen: alice revokes its login on the dashboard's account page, where every login of
            // hers is listed, and the certificates granted under it open nothing from then on.
            let stolen = try await pass(laptop)
            let laptopHash = SHA256Digest.hash(Array(try #require(laptop.token).utf8)).map { String(format: "%02x", $0) }.joined()
            let browser = DashboardBrowser(baseURL: grid.baseURL)
            try await browser.login("alice")
            let logins = try await browser.get("/account").body.components(separatedBy: "id=\"api-tokens-heading\"")
            #expect(logins.count == 2 && logins[1].contains(laptopHash), "the account page does not list the laptop's login")
            #expect(logins.count == 2 && logins[1].components(separatedBy: "(this browser)").count == 2, "the browser's own session is not marked once")
            try await browser.post("/account/tokens/revoke", ["hash": laptopHash])
            do {
                try await session(stolen).close()
                Issue.record("a certificate of a login revoked on the dashboard opened a session")
            } catch let e as GridError {
                #expect(e.code == .unauthorized && e.message.contains("revoked"), "\(e)")
            }
            await #expect(throws: GridClient.Failure.self, "the revoked login still reaches the manager") { _ = try await laptop.me() }
        }
    }

    /// A peer a person opened a session with reads that person's keys from other peers with their mandate (the
    /// certificate and the person's delegation). Once the token the certificate was granted under is revoked, the
    /// other peers refuse it: a copied key and certificate cannot be made into a mandate that reads anything. (The
    /// entry peer here keeps its answers ten minutes, so it still takes the session: the other peers decide alone.)
    @Test func aMandateOfALoggedOutTokenReadsNothingFromAnotherPeer() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            var peers: [InProcessWorker] = []
            for name in ["p1", "p2", "p3"] {
                peers.append(try await grid.startWorker(name, owner: owner, cpus: 1, peer: true, peerAuthCacheSeconds: name == "p1" ? 600 : 0))
            }
            let alice = try await grid.user("alice")
            let entry = peers[0]
            let signer = PeerTrust.Signer()
            let pass = PeerTrust.Pass(grant: try await alice.peerGrant(key: signer.publicKey, worker: entry.workerId), signer: signer)
            let link = try await PeerLink.connect(host: "127.0.0.1", port: try #require(entry.peerPort), grant: { _ in pass })
            defer { link.close() }
            let everyone = await eventually(timeout: 20, interval: 0.02) {
                guard case .peerStatus(let s)? = try? await link.request(.getPeerStatus).message else { return false }
                return s.peers.count == 3
            }
            #expect(everyone, "the entry peer never saw the other two")
            // A key the entry peer does not hold: read through it, it comes from another peer with alice's mandate.
            var elsewhere: String?
            for i in 0..<40 where elsewhere == nil {
                guard case .memResult(let r) = try await link.request(.setMem(Msg.SetMem(key: "k\(i)", value: .number(Double(i))))).message else {
                    Issue.record("alice could not write k\(i)")
                    return
                }
                if !(r.owners ?? []).contains(entry.workerId) { elsewhere = "k\(i)" }
            }
            let key = try #require(elsewhere, "every key landed on the entry peer")
            // Read once before: the other peers keep the mandate, and later reads name it by its reference.
            guard case .memResult(let before) = try await link.request(.getMem(Msg.MemKey(key: key))).message, before.value != nil else {
                Issue.record("alice could not read \(key) from another peer while her token stood")
                return
            }
            try await alice.logout()
            // The session opened before the logout goes on; the other peers no longer take alice's mandate, by
            // reference or in full, and the entry peer says they refused rather than that there is no such key.
            do {
                let r = try await link.request(.getMem(Msg.MemKey(key: key))).message
                Issue.record("a revoked certificate's mandate read \(key) from another peer: \(r)")
            } catch let e as GridError {
                #expect(e.code == .forbidden && e.message.contains("revoked"), "\(e)")
            }
        }
    }
}

/// What a test's concurrent requests came to, gathered as they end.
private final class Outcomes: Sendable {
    private let gathered = Mutex<[String]>([])
    func add(_ outcome: String) { gathered.withLock { $0.append(outcome) } }
    var all: [String] { gathered.withLock { $0 } }
}
