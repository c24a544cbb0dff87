/// What a submitter asks for: resources, time limit, priority, outputs.
public struct JobSpec: Hashable, Sendable, Codable {
    public var name: String
    public var cpus: Int
    public var ramGb: Int
    public var gpus: Int
    /// Wall-clock limit in minutes; also the number of minutes held at submission.
    public var minutes: Int
    /// Higher runs first; -10...10.
    public var priority: Int
    /// Output file globs, relative to the job's scratch directory; empty means every new file.
    public var outputs: [String]
    /// The weakest sandbox tier the job accepts: `bwrap` unless the submitter lowers it for their own job (a
    /// restricted worker runs only its owner's jobs anyway, unless started with `--allow-unsandboxed`).
    public var minTier: SandboxTier
    /// Files of the grid's distributed file store (peer services) that the worker fetches into the scratch folder,
    /// under the same name, before the job starts (`submit --input grid:NAME`); they never pass through the manager.
    public var gridInputs: [String]?
    /// When set, the job's output files are also stored in the grid's file store as this prefix + their name
    /// (`submit --save-outputs PREFIX`).
    public var saveOutputsAs: String?
    /// The submitter asks for every result to be checked by a second run on another owner's worker (`submit --verify`);
    /// they pay for that run, so the hold is doubled (`CreditRules.hold`).
    public var verify: Bool?
    /// The job's output is not expected to repeat (`submit --nondeterministic`): it is never spot-checked.
    public var nondeterministic: Bool?
    /// The seed every run of the job gets as `CAMPUSGRID_SEED`, so honest reruns of seeded code match. Set by the
    /// manager at submission (whatever the submitter sent), copied to the job's check runs. (String hashing is the
    /// same in every job: the worker gives every run `PYTHONHASHSEED=0`, see `JobEnvironment.startup`.)
    public var seed: UInt32?
    /// Python packages the job needs (PEP 508 lines, normalised: `PythonRequirements.lines`), installed by the worker
    /// into a cached environment put first on the job's `sys.path`; nil or empty: the worker's own Python as it is.
    public var requirements: [String]?
    /// The Python versions the job runs on (PEP 440 specifiers, `>=3.11`); nil: any.
    public var requiresPython: String?
    /// The scratch disk the job may fill, in GB (what its folder holds; `submit --disk`); nil: `defaultDiskGb`. Every
    /// run of the job, its check runs too, is stopped at this limit and at no other, so two honest runs of one job end
    /// alike whatever the workers they ran on allow (a run stopped at one worker's own smaller limit was contradicted
    /// by a check on a worker that allowed more). A job goes only to workers that allow at least this much
    /// (`REGISTER`'s `job_disk_bytes`).
    public var diskGb: Int?

    public init(
        name: String, cpus: Int = 1, ramGb: Int = 1, gpus: Int = 0, minutes: Int = 5, priority: Int = 0, outputs: [String] = [],
        minTier: SandboxTier = .bwrap, gridInputs: [String]? = nil, saveOutputsAs: String? = nil, verify: Bool? = nil,
        nondeterministic: Bool? = nil, requirements: [String]? = nil, requiresPython: String? = nil, diskGb: Int? = nil
    ) {
        self.diskGb = diskGb
        self.verify = verify
        self.nondeterministic = nondeterministic
        self.requirements = requirements
        self.requiresPython = requiresPython
        self.gridInputs = gridInputs
        self.saveOutputsAs = saveOutputsAs
        self.name = name
        self.cpus = cpus
        self.ramGb = ramGb
        self.gpus = gpus
        self.minutes = minutes
        self.priority = priority
        self.outputs = outputs
        self.minTier = minTier
    }

    public var resources: Resources { Resources(cpus: cpus, ramGb: ramGb, gpus: gpus) }

    /// What other users see of the spec in the queue: its name and what it asks of a worker, not the names of its
    /// owner's files (outputs, grid inputs, where outputs are saved), its packages or its seed.
    public var forOthers: JobSpec {
        var view = self
        view.outputs = []
        view.gridInputs = nil
        view.saveOutputsAs = nil
        view.seed = nil
        view.requirements = nil
        view.requiresPython = nil
        return view
    }

    /// What a check run's worker is sent (`JOB_ASSIGN`): the spec without `saveOutputsAs`, and so without a write ticket.
    /// Only the job's own run saves its outputs in the grid; a check run that did too would replace them with its own
    /// before anything was compared, and a hostile checker's forged outputs would stand there whatever the verdict.
    public var forCheckRun: JobSpec {
        var run = self
        run.saveOutputsAs = nil
        return run
    }

    /// Whether the submitter asked for a checked result.
    public var wantsVerification: Bool { verify == true }

    /// Whether the job says its runs may legitimately differ.
    public var isNondeterministic: Bool { nondeterministic == true }

    /// The environment every run of the job gets: its fixed seed (nothing when the manager set none).
    public var seedEnvironment: [String: String] {
        guard let seed else { return [:] }
        return ["CAMPUSGRID_SEED": String(seed)]
    }

    /// The job's Python needs, parsed; empty when it declares none (or when they do not parse: `validate` says why).
    public var pythonRequirements: PythonRequirements {
        (try? PythonRequirements(lines: requirements ?? [], requiresPython: requiresPython)) ?? PythonRequirements()
    }

    public static let limits = (cpus: 1...256, ramGb: 0...4096, gpus: 0...64, minutes: 1...10_080, priority: -10...10, diskGb: 1...65_536)

    /// The scratch disk a job that says nothing may fill, in GB (a worker's `--max-job-disk-gb` defaults to it too).
    public static let defaultDiskGb = 10

    /// The scratch disk the job may fill, in GB: what it asked for, else `defaultDiskGb`.
    public var diskLimitGb: Int { diskGb ?? Self.defaultDiskGb }

    /// The same in bytes (at most 64 TiB: no arithmetic on it traps). A value out of `limits` (a spec that was never
    /// validated) is taken to its nearest bound.
    public var diskLimitBytes: Int64 {
        Int64(min(max(diskLimitGb, Self.limits.diskGb.lowerBound), Self.limits.diskGb.upperBound)) << 30
    }

    /// The RAM a sandbox holds the job to, in GB: what it asked for, and at least 1. (`--ram 0`, "under a gigabyte",
    /// left a job with no memory limit at all, free to push the contributor's machine into swap.)
    public var memoryLimitGb: Int { max(1, ramGb) }

    /// The first figure a worker computes limits from (CPUs, RAM, GPUs, minutes, disk, priority) that is out of
    /// `limits`, in words; nil when all are in. A worker asks it of every job it is sent: the manager validated the
    /// spec at submission, but a worker does its arithmetic (cgroup quotas, rlimits, a container's limits) on what
    /// arrives, and a figure out of range there traps.
    public var resourceProblem: String? {
        let l = Self.limits
        if !l.cpus.contains(cpus) { return "cpus \(cpus) is out of \(l.cpus)" }
        if !l.ramGb.contains(ramGb) { return "ram \(ramGb) GB is out of \(l.ramGb)" }
        if !l.gpus.contains(gpus) { return "gpus \(gpus) is out of \(l.gpus)" }
        if !l.minutes.contains(minutes) { return "minutes \(minutes) is out of \(l.minutes)" }
        if !l.priority.contains(priority) { return "priority \(priority) is out of \(l.priority)" }
        if let diskGb, !l.diskGb.contains(diskGb) { return "disk \(diskGb) GB is out of \(l.diskGb)" }
        return nil
    }

    /// Checks every field and says, in words, what is wrong.
    public func validate() throws(GridError) {
        let l = Self.limits
        var problems: [String] = []
        if !l.cpus.contains(cpus) { problems.append("cpus must be \(l.cpus.lowerBound)–\(l.cpus.upperBound) (got \(cpus))") }
        if !l.ramGb.contains(ramGb) { problems.append("ram must be \(l.ramGb.lowerBound)–\(l.ramGb.upperBound) GB (got \(ramGb))") }
        if !l.gpus.contains(gpus) { problems.append("gpus must be \(l.gpus.lowerBound)–\(l.gpus.upperBound) (got \(gpus))") }
        if !l.minutes.contains(minutes) {
            problems.append("minutes must be \(l.minutes.lowerBound)–\(l.minutes.upperBound) (got \(minutes))")
        }
        if !l.priority.contains(priority) {
            problems.append("priority must be \(l.priority.lowerBound)–\(l.priority.upperBound) (got \(priority))")
        }
        if let diskGb, !l.diskGb.contains(diskGb) {
            problems.append("disk must be \(l.diskGb.lowerBound)–\(l.diskGb.upperBound) GB (got \(diskGb))")
        }
        // Counted in bytes: 200 characters can be 80 MB (a character may hold any number of combining marks), and the
        // name is shown to every user.
        if name.count > 200 || name.utf8.count > 400 { problems.append("name must be at most 200 characters and 400 bytes") }
        // Every user's `campusgrid jobs` shows it: a terminal's controls in it would act on theirs.
        if name.unicodeScalars.contains(where: TerminalText.isUnsafe) {
            problems.append("name must not hold control characters (got \(String(reflecting: TerminalText.shown(name).prefix(80))))")
        }
        if outputs.count > 64
            || outputs.contains(where: { $0.isEmpty || $0.utf8.count > 256 || $0.utf8.first == UInt8(ascii: "/") || $0.utf8.contains(0) || Self.hasDotDot($0) })
        {
            problems.append("outputs must be at most 64 relative globs without '..'")
        }
        if let names = gridInputs {
            if names.count > 64 { problems.append("at most 64 grid inputs") }
            for n in names where (try? FileName.validate(n)) == nil { problems.append("grid input \(String(reflecting: n)) is not a valid file name") }
        }
        // Not empty: the manager's write ticket covers the prefix's files only, and an empty one would cover them all.
        if let prefix = saveOutputsAs, prefix.isEmpty || prefix.utf8.count > 400 || (try? FileName.validate(prefix + "x")) == nil {
            problems.append("--save-outputs must be a relative name prefix without '..' (got \(String(reflecting: prefix)))")
        }
        if verify == true, nondeterministic == true {
            problems.append("a --nondeterministic job cannot be verified by a second run (--verify): its runs are not expected to agree")
        }
        if !problems.isEmpty { throw GridError(.invalidResources, problems.joined(separator: "; ")) }
        if requirements != nil || requiresPython != nil {
            _ = try PythonRequirements(lines: requirements ?? [], requiresPython: requiresPython)
        }
    }
}

extension JobSpec {
    /// Whether `glob` holds "..", looked for in its bytes (a check on characters misses "..\u{301}").
    static func hasDotDot(_ glob: String) -> Bool {
        let b = Array(glob.utf8)
        return b.count >= 2 && (1..<b.count).contains { b[$0] == UInt8(ascii: ".") && b[$0 - 1] == UInt8(ascii: ".") }
    }
}
