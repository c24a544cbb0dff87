import GridCore
import GridScheduler
import Testing

/// How many other users' jobs an owner's workers may hold at once, event by event.
@Suite("OthersWindow")
struct OthersWindowTests {
    @Test func aNewOwnerHoldsALaptopsWorthOfOthersJobs() {
        let w = OthersWindow()
        #expect(w.size == OthersWindow.first && OthersWindow.first == 4)
        #expect(w.room(holding: 0) == 4)
        #expect(w.room(holding: 3) == 1)
        #expect(w.room(holding: 4) == 0)
        // A count from anywhere is never trusted to be sane.
        #expect(w.room(holding: .max) == 0)
        #expect(w.room(holding: -1) == 4)
        #expect(w.room(holding: .min) == 4)
    }

    @Test func completedRunsOpenItOneByOneAndAgreedChecksDoubleIt() {
        var w = OthersWindow()
        w.record(.completed)
        #expect(w.size == 5)
        w.record(.agreed)
        #expect(w.size == 10)
        for _ in 0..<30 { w.record(.agreed) }
        #expect(w.size == OthersWindow.most)
        w.record(.completed)
        #expect(w.size == OthersWindow.most)
    }

    @Test func aContradictionShutsItToOneAndCompletedRunsOpenItAgain() {
        var w = OthersWindow()
        for _ in 0..<10 { w.record(.agreed) }
        w.record(.contradicted)
        #expect(w.size == 1)
        #expect(w.room(holding: 0) == 1)
        w.record(.completed)
        #expect(w.size == 2)
    }

    /// A restarted manager starts an owner from its workers' latest check outcomes, replayed as they were recorded: a
    /// contradiction shuts the window, agreements since open it again.
    @Test func aRestartedManagerStartsAnOwnerFromItsLatestChecks() {
        #expect(OthersWindow(recent: []).size == 4)
        #expect(OthersWindow(recent: Array(repeating: .agreed, count: 5)).size == 128)
        #expect(OthersWindow(recent: Array(repeating: .agreed, count: 20)).size == OthersWindow.most)
        #expect(OthersWindow(recent: Array(repeating: .agreed, count: 19) + [.contradicted]).size == 1)
        #expect(OthersWindow(recent: [.contradicted] + Array(repeating: .agreed, count: 3)).size == 8)
        var live = OthersWindow()
        let history: [Reputation.Outcome] = [.agreed, .contradicted, .agreed, .agreed]
        for o in history { live.record(o == .agreed ? .agreed : .contradicted) }
        #expect(OthersWindow(recent: history) == live)
    }
}

/// Every owner's window, event by event, with a manual clock: what counts, what does not, and how long a failed run
/// keeps its place.
@Suite("OthersWindows")
struct OthersWindowsTests {
    static let (mallory, alice, bob): (UserID, UserID, UserID) = (66, 1, 2)

    @Test func runsOfTheOwnersOwnJobsAndOfUnknownWorkersCountForNothing() {
        var w = OthersWindows()
        w.registered("m1", owner: Self.mallory)
        w.completed(on: "m1", jobOwner: Self.mallory)
        w.completed(on: "stranger", jobOwner: Self.alice)
        w.ended(on: "m1", jobOwner: Self.mallory, ranSeconds: 0, now: 0)
        w.ended(on: "stranger", jobOwner: Self.alice, ranSeconds: 0, now: 0)
        #expect(w.window(of: Self.mallory).size == OthersWindow.first)
        let rooms = w.rooms(for: [Self.mallory], held: [("m1", Self.mallory), ("stranger", Self.alice)], now: 0)
        #expect(rooms == [Self.mallory: OthersWindow.first])
    }

    /// Many worker ids of one owner share one window: what one holds, the others cannot be given.
    @Test func workersOfOneOwnerShareOneWindow() {
        var w = OthersWindows()
        for i in 0..<256 { w.registered("m\(i)", owner: Self.mallory) }
        let held = (0..<3).map { (worker: WorkerID("m\($0)"), jobOwner: Self.alice) }
        #expect(w.rooms(for: [Self.mallory], held: held, now: 0) == [Self.mallory: 1])
        w.completed(on: "m200", jobOwner: Self.bob)
        #expect(w.rooms(for: [Self.mallory], held: held, now: 0) == [Self.mallory: 2])
    }

    /// A failed run of another user's job keeps its place for a minute from its start, then gives it back.
    @Test func aFailedRunKeepsItsPlaceForAMinuteFromItsStart() {
        var w = OthersWindows()
        w.registered("m1", owner: Self.mallory)
        let none: [(worker: WorkerID, jobOwner: UserID)] = []
        // Four runs failed at once, at t = 100: the window is full until t = 160.
        for _ in 0..<4 { w.ended(on: "m1", jobOwner: Self.alice, ranSeconds: 0, now: 100) }
        #expect(w.rooms(for: [Self.mallory], held: none, now: 100) == [Self.mallory: 0])
        #expect(w.rooms(for: [Self.mallory], held: none, now: 159.9) == [Self.mallory: 0])
        #expect(w.rooms(for: [Self.mallory], held: none, now: 160) == [Self.mallory: 4])
        // One that ran 45 s keeps its place 15 s more; one that ran past the minute keeps none.
        w.ended(on: "m1", jobOwner: Self.alice, ranSeconds: 45, now: 200)
        w.ended(on: "m1", jobOwner: Self.alice, ranSeconds: 61, now: 200)
        #expect(w.rooms(for: [Self.mallory], held: none, now: 214) == [Self.mallory: 3])
        #expect(w.rooms(for: [Self.mallory], held: none, now: 215) == [Self.mallory: 4])
        // A start time from nowhere (NaN, infinite, in the future) is a run that ran for nothing: the whole minute.
        for ran in [Double.nan, .infinity, -.infinity, -5] { w.ended(on: "m1", jobOwner: Self.alice, ranSeconds: ran, now: 300) }
        #expect(w.rooms(for: [Self.mallory], held: none, now: 359) == [Self.mallory: 0])
        #expect(w.rooms(for: [Self.mallory], held: none, now: 360) == [Self.mallory: 4])
    }

    /// Checks move the window of the owner the run's worker had when it ran; a contradiction shuts it for all its
    /// workers; an owner seen for the first time starts from its latest checks, one seen before keeps its window.
    @Test func checksMoveTheOwnersWindowAndAKnownOwnerKeepsIt() {
        var w = OthersWindows()
        w.registered("a1", owner: Self.alice, recent: [.agreed, .agreed])
        #expect(w.window(of: Self.alice).size == 16)
        w.registered("a2", owner: Self.alice, recent: [.contradicted])
        #expect(w.window(of: Self.alice).size == 16)
        w.checked(.agreed, worker: "a2")
        #expect(w.window(of: Self.alice).size == 32)
        w.checked(.contradicted, worker: "gone", owner: Self.alice)
        #expect(w.window(of: Self.alice).size == 1)
        #expect(w.rooms(for: [Self.alice, Self.bob], held: [("a1", Self.bob)], now: 0) == [Self.alice: 0, Self.bob: OthersWindow.first])
        #expect(w.knows(Self.alice) && !w.knows(Self.bob))
    }
}

/// Placement honours each owner's window for other users' jobs.
@Suite("Placement.OthersWindow")
struct PlacementOthersWindowTests {
    static func worker(_ id: String, owner: UserID, cpus: Int, othersRoom: Int = .max, load: Double = 0) -> Placement.Worker {
        let total = Resources(cpus: cpus, ramGb: cpus, gpus: 0)
        return Placement.Worker(
            id: id, total: total, free: total, load: load, tier: .bwrap, freeSlots: cpus, owner: owner, othersRoom: othersRoom)
    }

    static func job(_ id: JobID, owner: UserID) -> Placement.Job {
        Placement.Job(id: id, owner: owner, priority: 0, request: Resources(cpus: 1, ramGb: 1, gpus: 0), minTier: .bwrap, submitted: Double(id))
    }

    /// A worker that claims 4,096 CPUs (the least loaded by far) gets what its window allows of others' jobs; the rest
    /// go to an honest worker, or wait.
    @Test func aWorkerClaimingHugeResourcesGetsOnlyItsWindowOfOthersJobs() {
        let huge = Self.worker("huge", owner: 66, cpus: 4_096, othersRoom: 4)
        let honest = Self.worker("honest", owner: 20, cpus: 8, load: 0.5)
        let jobs = (1...20).map { Self.job(JobID($0), owner: 1) }
        let plan = Placement.plan(jobs: jobs, workers: [huge, honest])
        let counts = Dictionary(grouping: plan.assignments, by: \.worker).mapValues(\.count)
        #expect(counts["huge"] == 4)
        #expect(counts["honest"] == 8)
        #expect(plan.pending.count == 8)
        #expect(plan.pending.values.allSatisfy { $0 == .waitingForCapacity })
        // The same through the queue's pass (group skipping, a stop when full).
        var queue = PendingQueue()
        for job in jobs { queue.upsert(job, reason: nil) }
        let passed = queue.plan(workers: [huge, honest], usage: [:], now: 0)
        #expect(Dictionary(grouping: passed.assignments, by: \.worker).mapValues(\.count) == counts)
    }

    /// Its owner's own jobs are not limited by its window, even when others' jobs of the same shape could not be
    /// placed before them in the same pass.
    @Test func itsOwnersJobsAreNotLimitedByItsWindow() {
        let w = Self.worker("w", owner: 66, cpus: 16, othersRoom: 2)
        let jobs = (1...6).map { Self.job(JobID($0), owner: 1) } + (7...12).map { Self.job(JobID($0), owner: 66) }
        for plan in [Placement.plan(jobs: jobs, workers: [w]), { var q = PendingQueue(); for j in jobs { q.upsert(j, reason: nil) }; return q.plan(workers: [w], usage: [:], now: 0) }()] {
            let placed = Set(plan.assignments.map(\.job))
            #expect(placed.filter { $0 <= 6 }.count == 2)
            #expect(placed.filter { $0 >= 7 } == Set(7...12))
        }
    }

    /// The window is the owner's: many worker ids of one owner share it (each claiming 4,096 CPUs, they get 4 of
    /// others' jobs between them, not 4 each).
    @Test func anOwnersWorkersShareOneWindow() {
        let workers = (0..<10).map { Self.worker("m\($0)", owner: 66, cpus: 4_096, othersRoom: 4) }
        let jobs = (1...100).map { Self.job(JobID($0), owner: 1) }
        #expect(Placement.plan(jobs: jobs, workers: workers).assignments.count == 4)
        var queue = PendingQueue()
        for job in jobs { queue.upsert(job, reason: nil) }
        #expect(queue.plan(workers: workers, usage: [:], now: 0).assignments.count == 4)
        // The least room any of them carries counts.
        var mixed = workers
        mixed[3].othersRoom = 1
        #expect(Placement.plan(jobs: jobs, workers: mixed).assignments.count == 1)
    }

    /// A shut window (no room) still takes its owner's jobs; a worker with no owner known counts every job as others'.
    @Test func aShutWindowTakesOnlyItsOwnersJobs() {
        let shut = Self.worker("w", owner: 66, cpus: 4, othersRoom: 0)
        let plan = Placement.plan(jobs: [Self.job(1, owner: 1), Self.job(2, owner: 66)], workers: [shut])
        #expect(plan.assignments.map(\.job) == [2])
        let total = Resources(cpus: 4, ramGb: 4, gpus: 0)
        let ownerless = Placement.Worker(id: "x", total: total, free: total, load: 0, tier: .bwrap, freeSlots: 4, othersRoom: 1)
        let two = Placement.plan(jobs: [Self.job(1, owner: 1), Self.job(2, owner: 2)], workers: [ownerless])
        #expect(two.assignments.count == 1)
    }
}
