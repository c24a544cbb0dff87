import ArgumentParser
import Foundation
import GridClient
import GridCore
import GridProtocol

struct Submit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Submit a Python job; prints its id and the credits held.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The entry script (FILE.py).") var script: String
    @Option(help: "An input file to send along, or grid:NAME for a file stored in the grid (put-file), fetched by the worker (repeatable).")
    var input: [String] = []
    @Option(help: "Also store the job's outputs in the grid's files, named PREFIX + file name (get-file them from any peer).")
    var saveOutputs: String?
    @Option(help: "Output files to keep, as a glob (repeatable; default: every new file).") var output: [String] = []
    @Option(help: "A requirements file (one package a line, as pip reads it) of Python packages the job needs.") var requirements: String?
    @Option(help: "A Python package the job needs, as pip names it: \"polars==1.*\" (repeatable). PEP 723 metadata in the script counts too.")
    var pip: [String] = []
    @Option(parsing: .unconditional, help: "CPUs.") var cpus = 1
    @Option(parsing: .unconditional, help: "RAM in GB.") var ram = 1
    @Option(parsing: .unconditional, help: "GPUs.") var gpu = 0
    @Option(parsing: .unconditional, help: "Wall-clock limit in minutes (also what is held).") var minutes = 5
    @Option(parsing: .unconditional, help: "Scratch disk the job may fill, in GB (default 10); it runs only on workers that allow that much.")
    var disk: Int?
    @Option(parsing: .unconditional, help: "Priority, -10 (low) to 10 (high).") var priority = 0
    @Option(help: "A name for the job.") var name: String?
    @Option(help: "The weakest sandbox tier accepted: restricted, bwrap or oci (env CAMPUSGRID_ISOLATION; default bwrap).") var isolation: String =
        Env.string("CAMPUSGRID_ISOLATION") ?? "bwrap"
    @Flag(help: "Have the result checked by a second run on another owner's worker; you pay for both runs (the hold is doubled).")
    var verify = false
    @Flag(help: "The job's output is not expected to repeat between runs: it is never spot-checked.") var nondeterministic = false
    @Flag(help: "Wait until the job ends; exit non-zero unless it completed.") var wait = false
    @Flag(help: "Stream the job's log until it ends (implies --wait).") var follow = false
    @Option(
        help: ArgumentHelp(
            "A name for this submission (1-128 of A-Z a-z 0-9 - _ . :): submitting again with the same key and the same job returns the first job instead of making and charging another. Default: a new key each run.",
            valueName: "KEY")) var key: String?

    func run() async throws {
        try await CampusGrid.run {
            if let key { _ = try SubmitKey.validate(key, field: "--key") }
            guard let tier = SandboxTier(rawValue: isolation) else {
                throw ValidationError("--isolation is one of restricted, bwrap, oci (got \(isolation))")
            }
            let scriptURL = URL(fileURLWithPath: script)
            guard let scriptData = FileManager.default.contents(atPath: scriptURL.path) else {
                throw ValidationError("cannot read the script \(script): no such file")
            }
            // The job's Python packages: --requirements, --pip and the script's own `# /// script` block, checked here
            // (the manager checks them again) so that a mistake is reported before anything is held.
            let packages = try declaredPackages(file: requirements, pip: pip, script: String(decoding: scriptData, as: UTF8.self))
            let spec = JobSpec(
                name: name ?? scriptURL.lastPathComponent, cpus: cpus, ramGb: ram, gpus: gpu, minutes: minutes, priority: priority,
                outputs: output, minTier: tier,
                gridInputs: input.contains { $0.hasPrefix("grid:") } ? input.filter { $0.hasPrefix("grid:") }.map { String($0.dropFirst(5)) } : nil,
                saveOutputsAs: saveOutputs, verify: verify ? true : nil, nondeterministic: nondeterministic ? true : nil,
                requirements: packages.lines.isEmpty ? nil : packages.lines, requiresPython: packages.requiresPython, diskGb: disk)
            try spec.validate()
            var inputs: [API.FileUpload] = []
            for path in input where !path.hasPrefix("grid:") {
                guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read the input \(path)") }
                inputs.append(API.FileUpload(name: URL(fileURLWithPath: path).lastPathComponent, contentBase64: data.base64EncodedString()))
            }
            let client = try options.client()
            let answer = try await client.submit(
                API.SubmitRequest(
                    spec: spec, script: API.FileUpload(name: scriptURL.lastPathComponent, contentBase64: scriptData.base64EncodedString()),
                    inputs: inputs), key: key)
            if !(wait || follow) {
                try options.output(answer) {
                    if answer.replayed == true {
                        say("Job \(answer.job.id) (\(answer.job.name)) was already submitted with this key; nothing more was held. State: \(answer.job.state.rawValue).")
                        return
                    }
                    say("Submitted job \(answer.job.id) (\(answer.job.name)); held \(answer.hold) credits\(verify ? " (two runs: --verify)" : ""), balance now \(answer.balance).")
                }
                return
            }
            if !options.json { complain("Submitted job \(answer.job.id); held \(answer.hold) credits, balance now \(answer.balance).") }
            let final = try await waitFor(answer.job.id, client: client, stream: follow && !options.json)
            try options.output(final) { printStatus(final) }
            if final.state != .completed { throw ExitCode(1) }
        }
    }
}

/// A manager's answer to a log read that does not follow from the read: printing it would print the same text for ever.
func logAnswerStalled(_ offset: Int64) -> GridError {
    GridError(.malformedMessage, "the manager's answer to a read of the log from byte \(offset) does not follow from it; stopped")
}

/// Waits for a job to end, optionally streaming its log to standard output.
func waitFor(_ id: JobID, client: GridClient, stream: Bool) async throws -> API.JobStatus {
    var offset: Int64 = 0
    while true {
        let chunk = try await client.logs(id, from: offset, wait: 10)
        guard chunk.follows(from: offset) else { throw logAnswerStalled(offset) }
        if stream, !chunk.text.isEmpty { writeOutput(chunk.text) }
        offset = chunk.next
        if chunk.done { return try await client.job(id) }
    }
}

func printStatus(_ j: API.JobStatus) {
    var lines = [
        "Job \(j.id): \(j.name)",
        "  state:      \(j.state.rawValue)\(j.reason.map { " (\($0))" } ?? "")",
        "  owner:      \(j.owner)",
        "  resources:  \(j.spec.cpus) CPU, \(j.spec.ramGb) GB RAM, \(j.spec.gpus) GPU, \(j.spec.minutes) min, priority \(j.spec.priority)",
        "  worker:     \(j.worker ?? "-")\(j.attempt > 1 ? " (attempt \(j.attempt))" : "")",
        "  sandbox:    \(j.tierLabel ?? "-")",
        "  credits:    held \(j.hold)\(j.paid.map { ", paid \($0)" } ?? "")",
        "  exit code:  \(j.exitCode.map(String.init) ?? "-")",
        "  result:     \(j.verification?.label ?? (j.spec.isNondeterministic ? "nondeterministic (never spot-checked)" : "not checked"))",
        "  runtime:    \(When.duration(ms: j.runtimeMs))",
        "  peak mem:   \(j.peakMemoryKb.map { "\($0 / 1024) MB" } ?? "-")",
    ]
    if j.state == .pending, let why = j.pendingReason { lines.append("  waiting:    \(why)") }
    if j.state == .running, let preparing = j.preparing { lines.append("  preparing:  \(preparing.replacingOccurrences(of: "preparing environment ", with: "environment "))") }
    if let events = j.events {
        lines.append("  timeline:")
        for e in events { lines.append("    \(When.format(e.at))  \(e.state.rawValue)\(e.detail.map { "  \($0)" } ?? "")") }
    }
    if let stops = j.interruptions, !stops.isEmpty {
        lines.append("  interrupted: \(stops.count) time\(stops.count == 1 ? "" : "s")")
        for s in stops {
            lines.append("    \(When.format(s.at))  attempt \(s.attempt): \(s.reason)\(s.blamed ? " (counts against the job)" : "")")
        }
    }
    if let outputs = j.outputs, !outputs.isEmpty {
        lines.append("  outputs:    " + outputs.map { "\($0.name) (\($0.size) B)" }.joined(separator: ", "))
    }
    // Each line one line: a name or a reason with a newline in it would forge the next ("result: verified by …").
    say(lines.map { TerminalText.shown($0, keeping: .none) }.joined(separator: "\n"))
}

struct Jobs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List jobs.")
    @OptionGroup var options: ClientOptions
    @Flag(help: "Only your jobs.") var mine = false
    @Option(help: "Only jobs in this state.") var state: String?

    func run() async throws {
        try await CampusGrid.run {
            let list = try await options.client().jobs(mine: mine, state: state)
            try options.output(list) {
                let rows = list.jobs.map { j in
                    [
                        String(j.id), j.name, j.owner, j.state.rawValue, "\(j.spec.cpus)/\(j.spec.ramGb)/\(j.spec.gpus)", j.worker ?? "-",
                        When.format(j.submittedAt),
                    ]
                }
                say(Table.render(["ID", "NAME", "OWNER", "STATE", "CPU/RAM/GPU", "WORKER", "SUBMITTED"], rows))
            }
        }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "A job's state, timeline, result and, if pending, why.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The job id.") var id: JobID

    func run() async throws {
        try await CampusGrid.run {
            let j = try await options.client().job(id)
            try options.output(j) { printStatus(j) }
        }
    }
}

struct Logs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "A job's output; -f follows it live until the job ends.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The job id.") var id: JobID
    @Flag(name: .shortAndLong, help: "Follow the log until the job ends.") var follow = false
    @Flag(help: "Write the log byte for byte even to a terminal (there, its control characters are otherwise shown, not obeyed).")
    var raw = false

    func run() async throws {
        try await CampusGrid.run {
            let client = try options.client()
            var offset: Int64 = 0
            while true {
                let chunk = try await client.logs(id, from: offset, wait: follow ? 10 : 0)
                guard chunk.follows(from: offset) else { throw logAnswerStalled(offset) }
                if !chunk.text.isEmpty { writeOutput(chunk.text, raw: raw) }
                offset = chunk.next
                if chunk.done || (!follow && chunk.text.isEmpty) { break }
            }
        }
    }
}

struct Cancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel a job (refunded in full if it had not started).")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The job id.") var id: JobID

    func run() async throws {
        try await CampusGrid.run {
            let j = try await options.client().cancel(id)
            try options.output(j) {
                say(j.state == .cancelled ? "Job \(id) cancelled." : "Job \(id) is being stopped on its worker.")
            }
        }
    }
}

struct Download: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Download a job's output files.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The job id.") var id: JobID
    @Argument(help: "Folder to save into (default: job-ID).") var directory: String?

    func run() async throws {
        try await CampusGrid.run {
            let client = try options.client()
            let job = try await client.job(id)
            // The names and sizes are the worker's claims, passed on by the manager: checked before anything is written.
            let outputs = job.outputs ?? []
            guard outputs.count <= WorkerClaims.files.upperBound, Set(outputs.map(\.name)).count == outputs.count else {
                throw GridError(.malformedMessage, "the manager listed \(outputs.count) outputs, or one name twice; nothing saved")
            }
            for file in outputs { try FileName.validate(file.name) }
            // No folder for a job with no outputs (yet): a download made while it ran must not stand in the way of the
            // one after it ends.
            var saved: [String] = []
            let target = directory ?? "job-\(id)"
            if !outputs.isEmpty {
                let folder = try OutputFolder(target, fresh: directory == nil)
                for file in outputs {
                    let data = try await client.output(id, name: file.name)
                    guard data.count == file.size else {
                        throw GridError(.malformedMessage, "\(file.name): the manager sent \(data.count) bytes of the \(file.size) it listed; not saved")
                    }
                    saved.append(try folder.write(data, name: file.name))
                }
                try folder.finish()
            }
            try options.output(["files": saved]) {
                say(saved.isEmpty ? "Job \(id) has no output files." : "Saved \(saved.count) file(s) to \(target):\n" + saved.joined(separator: "\n"))
            }
        }
    }
}

struct Workers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Workers: resources, load, sandbox tier, earnings.")
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await CampusGrid.run {
            let list = try await options.client().workers()
            try options.output(list) {
                let rows = list.workers.map { w in
                    [
                        w.name, w.owner, w.online ? "online" : "offline", "\(w.resources.cpus)", "\(w.resources.ramGb) GB",
                        w.gpuNames.isEmpty ? "\(w.resources.gpus)" : w.gpuNames.joined(separator: ","),
                        w.tierLabel + (w.unsandboxed ? " UNSANDBOXED" : "") + (w.sandbox?.acceptsOthers == false ? " (owner's jobs only)" : ""),
                        String(format: "%.2f", w.load), "\(w.running)/\(w.slots)", String(format: "%.3f", w.cpuHoursGiven),
                        w.reputation.map {
                            "\($0.verified) ok / \($0.contradicted) bad" + ($0.quarantined ? " QUARANTINED" : $0.probation ? " (probation)" : "")
                        } ?? "-",
                    ]
                }
                say(
                    Table.render(
                        ["NAME", "OWNER", "STATUS", "CPUS", "RAM", "GPUS", "SANDBOX", "LOAD", "JOBS", "CPU-HOURS", "VERIFIED"], rows))
                for w in list.workers {
                    if let r = w.reputation, r.quarantined { sayLine("  \(w.name): quarantined — \(r.quarantineReason ?? "contradicted by verification")") }
                }
                for w in list.workers where w.online {
                    for reason in w.sandbox?.skipped ?? [] { sayLine("  \(w.name): skipped \(reason)") }
                    if w.unsandboxed { sayLine("  \(w.name): no real sandbox — a job there can read \(w.owner)'s files and reach the network") }
                }
            }
        }
    }
}

struct Leaderboard: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Contributors by credits earned and CPU-hours given.")
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await CampusGrid.run {
            let board = try await options.client(needsToken: false).leaderboard()
            try options.output(board) {
                let rows = board.contributors.map {
                    [
                        "\($0.rank)", $0.username, "\($0.creditsEarned)", String(format: "%.3f", $0.cpuHours), "\($0.jobsRun)", "\($0.verified ?? 0)",
                        "\($0.contradicted ?? 0)",
                    ]
                }
                say(Table.render(["#", "USER", "CREDITS EARNED", "CPU-HOURS", "JOBS", "VERIFIED", "CONTRADICTED"], rows))
            }
        }
    }
}

/// The Python packages a job or a function task declares: `--requirements FILE`, `--pip SPEC`s and the script's own
/// PEP 723 block (`# /// script`, with its `requires-python`), checked here so that a mistake is reported before
/// anything is sent or held.
func declaredPackages(file: String?, pip: [String], script: String) throws -> PythonRequirements {
    var packages = PythonRequirements()
    do {
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read the requirements file \(file)") }
            try packages.add(try PythonRequirements.parseFile(String(decoding: data, as: UTF8.self), name: URL(fileURLWithPath: file).lastPathComponent))
        }
        try packages.add(pip)
        if let meta = try InlineScriptMetadata.parse(script) {
            try packages.add(meta.dependencies)
            if let python = meta.requiresPython { try packages.require(python: python) }
        }
    } catch let e as GridError {
        throw ValidationError(e.message)
    }
    return packages
}
