import GridCore
import Testing

@Suite("JobSpec")
struct JobSpecTests {
    /// The message of the error `validate()` throws for `spec`, after checking its code.
    private func problem(_ spec: JobSpec) -> String? {
        let error = #expect(throws: GridError.self) { try spec.validate() }
        #expect(error?.code == .invalidResources)
        return error?.message
    }

    @Test func jobsAskForABwrapSandboxUnlessTheirSubmitterLowersIt() {
        #expect(JobSpec(name: "j").minTier == .bwrap)
        #expect(JobSpec(name: "j", minTier: .restricted).minTier == .restricted)
    }

    /// Lengths are counted in bytes: 200 characters may hold any number of combining marks (80 MB passed as 200), and
    /// a job's name is shown to every user. An output glob's ".." is looked for in its bytes.
    @Test func namesAndGlobsAreBoundedInBytesAndDotsAreFoundBehindMarks() throws {
        let heavy = String(repeating: "a" + String(repeating: "\u{301}", count: 100), count: 5)
        #expect(heavy.count == 5)
        #expect(try #require(problem(JobSpec(name: heavy))).contains("name"))
        try JobSpec(name: String(repeating: "é", count: 200)).validate()
        // Every user's `jobs` shows the name: a terminal's controls in it are refused, with what they were.
        for hostile in ["\u{1B}]52;c;aGk=\u{7}x", "a\nb", "\u{9B}2J", "evil\u{202E}txt.exe", "del\u{7F}"] {
            let message = try #require(problem(JobSpec(name: hostile)), "\(String(reflecting: hostile))")
            #expect(message.contains("control characters"), "\(message)")
            #expect(!message.unicodeScalars.contains(where: TerminalText.isUnsafe), "the refusal shows them, not obeys them: \(message)")
        }
        try JobSpec(name: "résumé 👨\u{200D}👩\u{200D}👧 training run").validate()
        for glob in ["..\u{301}/x", "a/..", "/abs", "a\u{0}b"] {
            #expect(problem(JobSpec(name: "j", outputs: [glob])) != nil, "\(String(reflecting: glob))")
        }
        try JobSpec(name: "j", outputs: ["*.csv", "out/.hidden", "a.b"]).validate()
    }

    @Test func defaultSpecIsValid() throws {
        try JobSpec(name: "hello").validate()
    }

    @Test func limitsThemselvesAreValid() throws {
        try JobSpec(name: "low", cpus: 1, ramGb: 0, gpus: 0, minutes: 1, priority: -10).validate()
        try JobSpec(name: "high", cpus: 256, ramGb: 4096, gpus: 64, minutes: 10_080, priority: 10).validate()
    }

    /// What a worker asks of every job it is sent: each figure it computes limits from, at its bounds and beyond.
    @Test func aWorkerFindsEveryFigureOutOfRangeAndNoneAtTheBounds() {
        #expect(JobSpec(name: "low", cpus: 1, ramGb: 0, gpus: 0, minutes: 1, priority: -10).resourceProblem == nil)
        var high = JobSpec(name: "high", cpus: 256, ramGb: 4096, gpus: 64, minutes: 10_080, priority: 10)
        high.diskGb = 65_536
        #expect(high.resourceProblem == nil)
        for n in [Int.min, -1, 0, Int.max] {
            var disk = JobSpec(name: "d")
            disk.diskGb = n
            let cases: [(JobSpec, String)] = [
                (JobSpec(name: "c", cpus: n), "cpus"), (JobSpec(name: "r", ramGb: n == 0 ? 4097 : n), "ram"),
                (JobSpec(name: "g", gpus: n == 0 ? 65 : n), "gpus"), (JobSpec(name: "m", minutes: n), "minutes"),
                (JobSpec(name: "p", priority: (-10...10).contains(n) ? 11 : n), "priority"), (disk, "disk"),
            ]
            for (spec, field) in cases {
                #expect(spec.resourceProblem?.hasPrefix(field) == true, "\(field) \(n): \(String(describing: spec.resourceProblem))")
            }
        }
    }

    @Test(arguments: [0, -1, 257, Int.max])
    func cpusOutOfRangeAreRejectedNamingCpus(cpus: Int) throws {
        let message = try #require(problem(JobSpec(name: "j", cpus: cpus)))
        #expect(message.contains("cpus"))
        #expect(message.contains("(got \(cpus))"))
    }

    @Test(arguments: [-1, 4097, 1_000_000])
    func ramOutOfRangeIsRejectedNamingRam(ramGb: Int) throws {
        let message = try #require(problem(JobSpec(name: "j", ramGb: ramGb)))
        #expect(message.contains("ram"))
        #expect(message.contains("(got \(ramGb))"))
    }

    @Test(arguments: [-1, 65])
    func gpusOutOfRangeAreRejectedNamingGpus(gpus: Int) throws {
        let message = try #require(problem(JobSpec(name: "j", gpus: gpus)))
        #expect(message.contains("gpus"))
        #expect(message.contains("(got \(gpus))"))
    }

    @Test(arguments: [0, -5, 10_081])
    func minutesOutOfRangeAreRejectedNamingMinutes(minutes: Int) throws {
        let message = try #require(problem(JobSpec(name: "j", minutes: minutes)))
        #expect(message.contains("minutes"))
        #expect(message.contains("(got \(minutes))"))
    }

    @Test(arguments: [-11, 11])
    func priorityOutOfRangeIsRejectedNamingPriority(priority: Int) throws {
        let message = try #require(problem(JobSpec(name: "j", priority: priority)))
        #expect(message.contains("priority"))
    }

    @Test(arguments: [0, -1, 65_537, Int.max, Int.min])
    func diskOutOfRangeIsRejectedNamingDisk(diskGb: Int) throws {
        let message = try #require(problem(JobSpec(name: "j", diskGb: diskGb)))
        #expect(message.contains("disk") && message.contains("(got \(diskGb))"))
        // Unvalidated, it still converts to bytes without a trap, taken to the nearest bound.
        let bytes = JobSpec(name: "j", diskGb: diskGb).diskLimitBytes
        #expect(bytes == (diskGb > 0 ? Int64(65_536) << 30 : Int64(1) << 30))
    }

    @Test func aJobThatSaysNothingMayFillTheDefaultDisk() throws {
        try JobSpec(name: "j", diskGb: 1).validate()
        try JobSpec(name: "j", diskGb: 65_536).validate()
        #expect(JobSpec(name: "j").diskLimitGb == JobSpec.defaultDiskGb)
        #expect(JobSpec(name: "j").diskLimitBytes == Int64(JobSpec.defaultDiskGb) << 30)
        #expect(JobSpec(name: "j", diskGb: 3).diskLimitBytes == 3 << 30)
        // Other users see what it asks of a worker.
        #expect(JobSpec(name: "j", diskGb: 3).forOthers.diskGb == 3)
    }

    @Test func overlongNameIsRejected() throws {
        try JobSpec(name: String(repeating: "n", count: 200)).validate()
        let message = try #require(problem(JobSpec(name: String(repeating: "n", count: 201))))
        #expect(message.contains("name"))
    }

    @Test(arguments: ["../secret", "/etc/passwd", "", "out/../../x"])
    func unsafeOutputGlobsAreRejected(glob: String) throws {
        let message = try #require(problem(JobSpec(name: "j", outputs: ["*.csv", glob])))
        #expect(message.contains("outputs"))
    }

    @Test func tooManyOutputGlobsAreRejected() throws {
        try JobSpec(name: "j", outputs: Array(repeating: "*.txt", count: 64)).validate()
        let message = try #require(problem(JobSpec(name: "j", outputs: Array(repeating: "*.txt", count: 65))))
        #expect(message.contains("outputs"))
    }

    @Test func everyProblemIsNamedInOneMessage() throws {
        let message = try #require(problem(JobSpec(name: "j", cpus: -1, ramGb: -2, gpus: -3, minutes: 0, priority: 99)))
        for field in ["cpus", "ram", "gpus", "minutes", "priority"] {
            #expect(message.contains(field), "missing \(field) in \(message)")
        }
    }

    @Test func resourcesCarryCpusRamAndGpus() {
        let spec = JobSpec(name: "j", cpus: 3, ramGb: 7, gpus: 2)
        #expect(spec.resources == Resources(cpus: 3, ramGb: 7, gpus: 2))
    }
}

/// `--save-outputs PREFIX` names what the manager's write ticket covers: an empty prefix would cover every file of the
/// owner's, so it is refused with the rest of the name rules.
@Suite struct SaveOutputsPrefixTests {
    @Test(arguments: ["", "../x", "/abs", String(repeating: "p", count: 401)])
    func aPrefixThatCoversTooMuchOrNothingIsRefused(prefix: String) {
        #expect(throws: GridError.self) { try JobSpec(name: "j", saveOutputsAs: prefix).validate() }
    }

    @Test func aPrefixOfNamesIsKept() throws {
        try JobSpec(name: "j", saveOutputsAs: "results/").validate()
        try JobSpec(name: "j", saveOutputsAs: "run1-").validate()
    }

    /// A check run is sent the spec without `saveOutputsAs` (and so gets no write ticket); nothing else changes, so it
    /// runs the same job with the same seed.
    @Test func aCheckRunSavesNothingAndIsOtherwiseTheSameJob() {
        var spec = JobSpec(name: "j", cpus: 2, ramGb: 3, minutes: 7, gridInputs: ["in.txt"], saveOutputsAs: "results/", verify: true)
        spec.seed = 42
        let check = spec.forCheckRun
        #expect(check.saveOutputsAs == nil)
        var back = check
        back.saveOutputsAs = spec.saveOutputsAs
        #expect(back == spec)
    }
}
