import ArgumentParser
import Foundation
import GridCore
import GridManager
import GridPeer
import GridProtocol
import GridSandbox
import GridScheduler
import GridWorker
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

struct ManagerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "manager", abstract: "Run the manager: accounts, credits, job queue, scheduler, API and dashboard.", aliases: ["tracker"])

    @Option(help: "Data folder (SQLite database). Default ~/.campusgrid/manager.") var dataDir: String?
    @Option(
        help: """
            The store: postgres://USER:PASSWORD@HOST:PORT/DB (managers may share it) or a SQLite file (default: grid.sqlite in \
            the data folder). A URL with a password belongs in env CAMPUSGRID_DATABASE or --database-file, not here.
            """)
    var database: String?
    @Option(help: "A file whose first line is the --database value (keeps a password off the command line).") var databaseFile: String?
    @Option(help: "Address to bind (env MANAGER_HOST; default 0.0.0.0).") var host: String?
    @Option(help: "Grid protocol port for workers (env MANAGER_PORT; default 9999; 0 = any free port).") var port: Int?
    @Option(help: "HTTP port for the dashboard and API (env DASHBOARD_PORT; default 5000; 0 = any free port).") var dashboardPort: Int?
    @Option(help: "Seconds a silent worker keeps its jobs (env CAMPUSGRID_LEASE_SECONDS; default 10).") var leaseSeconds: Double?
    @Option(help: "Seconds a run may go on past its minutes before the manager stops it itself (default 60).")
    var timeGraceSeconds: Double?
    @Option(name: .customLong("admin"), help: "A username that may use the admin routes, besides the first account registered (repeatable).")
    var admins: [String] = []
    @Option(help: "Share of trusted workers' results checked by a second run, 0…1 (env CAMPUSGRID_SPOT_CHECK_RATE; default 0.05).")
    var spotCheckRate: Double?
    @Option(help: "Agreeing results a new worker needs before it leaves probation (every result checked) (env CAMPUSGRID_PROBATION_RESULTS; default 5).")
    var probationResults: Int?
    @Option(help: "Percent of every payment that goes to the verification fund (env CAMPUSGRID_FUND_SHARE; default 5).") var fundShare: Int?
    @Option(help: "Hours a check run may wait for a worker before the job's verification ends inconclusive (default 24).")
    var checkWaitHours: Double?
    @Option(help: "New accounts allowed per client address per minute (default 10).") var registrationsPerMinute: Double?
    @Option(help: "New accounts allowed from one client address at once (default 10).") var registrationBurst: Int?
    @Option(help: "Seconds a grid-port connection may stay open before HELLO (env CAMPUSGRID_HELLO_DEADLINE; default 10).")
    var helloDeadline: Double?
    @Option(help: "Connections from one address that have not said HELLO yet; one more is refused at once (default 256).")
    var maxPendingPerAddress: Int?
    @Flag(help: "TLS on the grid and HTTP ports even when bound to loopback (beyond loopback it is the default).") var tls = false
    @Flag(help: "Plain text beyond loopback: tokens, passwords and data cross the network unencrypted. Logged at every start.")
    var insecurePlaintext = false
    @Option(help: "The server certificate chain (PEM) to present instead of one from the manager's own CA; workers then pin its last certificate.")
    var tlsCert: String?
    @Option(help: "The private key (PEM) of --tls-cert.") var tlsKey: String?
    @Option(name: .customLong("tls-name"), help: "Another host name or address for the manager's server certificate (repeatable).")
    var tlsNames: [String] = []
    @Option(help: "Seconds the leader's lease lasts without renewal; a follower takes over this long after the leader stops (default 3).")
    var leaderLease: Double?
    @Option(help: "The host name or address other managers, workers and clients reach this manager at (default: the bind address, or the host name).")
    var advertise: String?
    @Flag(help: "Print the ready line as JSON.") var json = false

    @Option(name: .customLong("parent-pid"), help: .hidden) var parentPid: Int32?

    func run() async throws {
        if let parentPid { try ParentWatch.start(parent: parentPid) }
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("--tls-cert and --tls-key go together") }
        guard !(insecurePlaintext && (tls || tlsCert != nil)) else { throw ValidationError("--insecure-plaintext contradicts --tls/--tls-cert") }
        var config = ManagerConfig(dataDirectory: dataDir ?? Env.string("CAMPUSGRID_DATA_DIR").map { $0 + "/manager" } ?? Env.home + "/.campusgrid/manager")
        config.database = try databaseValue()
        config.host = host ?? Env.string("MANAGER_HOST") ?? config.host
        config.gridPort = port ?? Env.int("MANAGER_PORT") ?? config.gridPort
        config.httpPort = dashboardPort ?? Env.int("DASHBOARD_PORT") ?? config.httpPort
        config.startingCredits = Env.int("STARTING_CREDITS") ?? config.startingCredits
        config.leaseSeconds = leaseSeconds ?? Env.string("CAMPUSGRID_LEASE_SECONDS").flatMap(Double.init) ?? config.leaseSeconds
        config.heartbeatSeconds = min(config.heartbeatSeconds, config.leaseSeconds / 3)
        // Tests make a deaf worker's queue small enough to fill.
        if let mb = Env.string("CAMPUSGRID_WORKER_SEND_QUEUE_MB").flatMap(Int.init), (1...(1 << 16)).contains(mb) { config.workerSendQueueBytes = mb << 20 }
        if let s = Env.string("CAMPUSGRID_WORKER_SEND_STALL_SECONDS").flatMap(Double.init), s.isFinite, s >= 1 { config.workerSendStallSeconds = s }
        // Tests shorten the HTTP port's idle timeout (`HTTPConnectionCap`, 30 s).
        if let s = Env.string("CAMPUSGRID_HTTP_IDLE_SECONDS").flatMap(Double.init), s.isFinite, s >= 0.5, s <= 3600 { config.httpIdleSeconds = s }
        if let g = timeGraceSeconds {
            guard g.isFinite, g >= 0, g <= 86_400 else { throw ValidationError("--time-grace-seconds must be 0…86400 (got \(g))") }
            config.timeLimitGraceSeconds = g
        }
        if let cost = Env.int("CAMPUSGRID_BCRYPT_COST"), (4...31).contains(cost) { config.bcryptCost = UInt8(cost) }
        let rate = spotCheckRate ?? Env.string("CAMPUSGRID_SPOT_CHECK_RATE").flatMap(Double.init) ?? config.verification.spotCheckRate
        guard rate.isFinite, (0...1).contains(rate) else { throw ValidationError("--spot-check-rate must be 0…1 (got \(rate))") }
        let probation = probationResults ?? Env.int("CAMPUSGRID_PROBATION_RESULTS") ?? config.verification.reputation.probationResults
        guard (0...1000).contains(probation) else { throw ValidationError("--probation-results must be 0…1000 (got \(probation))") }
        let share = fundShare ?? Env.int("CAMPUSGRID_FUND_SHARE") ?? config.verification.fundSharePercent
        guard (0...100).contains(share) else { throw ValidationError("--fund-share must be 0…100 percent (got \(share))") }
        config.verification = Verification.Policy(
            spotCheckRate: rate, fundSharePercent: share, reputation: .init(probationResults: probation), seed: config.verification.seed)
        if let hours = checkWaitHours {
            guard hours.isFinite, hours > 0, hours <= 8_760 else { throw ValidationError("--check-wait-hours must be above 0 and at most 8760 (got \(hours))") }
            config.checkWaitSeconds = hours * 3600
        }
        config.admins = admins
        config.tlsAsked = tls
        config.insecurePlaintext = insecurePlaintext
        config.tlsCertificateFile = tlsCert
        config.tlsKeyFile = tlsKey
        config.tlsNames = tlsNames
        config.strangers.helloDeadlineSeconds = try helloDeadlineSeconds(helloDeadline) ?? config.strangers.helloDeadlineSeconds
        config.strangers.maxPendingPerAddress = try pendingCap(maxPendingPerAddress) ?? config.strangers.maxPendingPerAddress
        if let rate = registrationsPerMinute {
            guard rate > 0, rate.isFinite else { throw ValidationError("--registrations-per-minute must be above 0") }
            config.registrationsPerMinute = rate
        }
        if let burst = registrationBurst {
            guard burst >= 1 else { throw ValidationError("--registration-burst must be at least 1") }
            config.registrationBurst = burst
        }
        guard (0...65535).contains(config.gridPort), (0...65535).contains(config.httpPort) else {
            throw ValidationError("ports are 0–65535")
        }
        if let leaderLease {
            guard leaderLease.isFinite, (0.3...600).contains(leaderLease) else { throw ValidationError("--leader-lease must be 0.3…600 seconds (got \(leaderLease))") }
            config.leaderLeaseSeconds = leaderLease
        }
        if let advertise {
            guard ManagerAddress(parsing: advertise) != nil, !advertise.contains(":") || advertise.hasPrefix("[") else {
                throw ValidationError("--advertise takes a host name or address (got \(advertise))")
            }
            config.advertiseHost = advertise
        }
        let logger = GridLogging.logger("campusgrid.manager")
        // The manager's files are its own: the store (accounts' password hashes, jobs), keys, the CA. Made 0600 and
        // 0700 whatever the caller's umask (SQLite makes its files with the process's), and a data folder that others
        // may enter is named.
        umask(0o077)
        if let mode = (try? FileManager.default.attributesOfItem(atPath: config.dataDirectory)[.posixPermissions] as? NSNumber)?.intValue,
            mode & 0o077 != 0
        {
            complain(
                "warning: the data folder \(config.dataDirectory) may be read by other users of this machine (mode \(String(mode, radix: 8))); "
                    + "`chmod 700 \(config.dataDirectory)`: it holds the accounts' password hashes, the manager's keys and every job")
        }
        let shownHost = config.host == "0.0.0.0" ? "127.0.0.1" : config.host
        let asJSON = json
        let scheme = config.transport.isTLS ? "https" : "http"
        if config.transport == .plaintextInsecure, let notice = config.transport.notice("the manager") { complain(notice) }
        do {
            try await Manager.run(config: config, logger: logger) { ports in
                if asJSON {
                    say(
                        #"{"event":"ready","grid_port":\#(ports.grid),"http_port":\#(ports.http),"dashboard":"\#(scheme)://\#(shownHost):\#(ports.http)","tls":\#(scheme == "https")}"#)
                } else {
                    say("CampusGrid manager ready: dashboard and API at \(scheme)://\(shownHost):\(ports.http), workers connect to \(shownHost):\(ports.grid)")
                }
            }
        } catch is CancellationError {
            // Stopped by a signal: a clean exit.
        }
    }
}

extension ManagerCommand {
    /// --database, else the first line of --database-file, else env CAMPUSGRID_DATABASE; nil for the default SQLite file.
    /// Never repeats the value in an error (it may carry a password).
    func databaseValue() throws -> String? {
        guard database == nil || databaseFile == nil else { throw ValidationError("--database and --database-file are one choice: give one") }
        if let database {
            guard !database.isEmpty else { throw ValidationError("--database is empty") }
            return database
        }
        if let databaseFile {
            guard let text = try? String(contentsOfFile: databaseFile, encoding: .utf8) else {
                throw ValidationError("cannot read --database-file \(databaseFile)")
            }
            let line = text.split(whereSeparator: \.isNewline).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            guard !line.isEmpty else { throw ValidationError("--database-file \(databaseFile) is empty") }
            return line
        }
        return Env.string("CAMPUSGRID_DATABASE")
    }
}

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker", abstract: "Run a worker: offer this machine's CPUs (and GPUs) to the grid and earn credits.", aliases: ["peer"])

    @Option(name: [.short, .long], help: "The manager, HOST[:PORT], or every manager of the grid, HOST[:PORT],HOST[:PORT],… (default port 9999; env MANAGER_HOST/MANAGER_PORT).")
    var manager: String?
    @Option(help: "A file holding the join string (TOKEN@sha256:…, from `token create --worker`; keep it mode 0600). Env CAMPUSGRID_TOKEN also works.")
    var tokenFile: String?
    @Option(help: "Worker join token. Avoid: anyone on this machine sees it with `ps`; use --token-file or CAMPUSGRID_TOKEN.") var token: String?
    @Option(help: "Data folder. Default ~/.campusgrid/worker.") var dataDir: String?
    @Option(name: [.short, .long], help: "Name shown on the dashboard (default: host name).") var name: String?
    @Option(name: [.short, .long], help: "The account to earn for; must own the token.") var user: String?
    @Option(help: "Peer port for function tasks, memory and files (default 0: any free port; reported to the manager).") var port: Int?
    @Option(help: "Address the peer port binds (default 127.0.0.1 when the manager is local, else 0.0.0.0).") var listen: String?
    @Option(help: "Address other peers reach this one at (default: the address the manager sees).") var advertise: String?
    @Option(help: "Copies of each memory key and file chunk (default 2).") var replicas: Int?
    @Option(help: "Status page port (reported to the manager).") var webPort: Int?
    @Option(help: "Address the status page binds (it has no login: 0.0.0.0 shows it to the whole network).") var webHost = "127.0.0.1"
    @Option(help: "Sandbox: auto, docker, podman, bwrap, bwrap-rootless or none (env CAMPUSGRID_SANDBOX).") var sandbox: String?
    @Flag(
        help:
            "Let a worker without a real sandbox (the restricted tier) run other users' jobs too; they could read your files and reach your network (env CAMPUSGRID_ALLOW_UNSANDBOXED=1)."
    )
    var allowUnsandboxed = false
    @Flag(help: "Never use an OCI engine (env USE_DOCKER=false).") var noDocker = false
    @Option(help: "Container image for the OCI tier (env CAMPUSGRID_IMAGE; default \(OCIRunner.defaultImage), built by scripts/build-sandbox-image).")
    var image: String?
    @Option(help: "Docker-API engine socket for the OCI tier (env CAMPUSGRID_ENGINE_SOCKET; default $DOCKER_HOST, Docker's, Podman's).")
    var engineSocket: String?
    @Option(help: "The bubblewrap binary for the bwrap tier (env CAMPUSGRID_BWRAP; default /usr/bin/bwrap).") var bwrap: String?
    @Option(help: "CPUs to offer (default: all).") var cpus: Int?
    @Option(help: "RAM to offer, in GB (default: all).") var memory: Int?
    @Option(help: "GPUs to offer (default: all detected).") var gpus: Int?
    @Option(help: "Jobs at once (default: the CPU count).") var slots: Int?
    @Option(help: "Python interpreter for jobs (env CAMPUSGRID_PYTHON; default python3, resolved once).") var python: String?
    @Option(name: .customLong("index-url"), help: "The package index jobs' environments are installed from, e.g. a campus mirror (env CAMPUSGRID_INDEX_URL; default PyPI).")
    var indexURL: String?
    @Option(help: "A folder (or URL) of wheels to install jobs' packages from as well (repeatable).") var findLinks: [String] = []
    @Flag(help: "Install jobs' packages only from --find-links, never from an index (the installer then has no network).") var noIndex = false
    @Flag(help: "Let jobs' environments build packages from source (sdists): this runs the packages' own build code.") var envAllowSdist = false
    @Option(help: "Size of the cache of jobs' Python environments, in GB (default 10); least recently used ones are deleted.")
    var envCacheGb: Double = 10
    @Option(help: "Largest single environment, in GB (default 5).") var envMaxGb: Double = 5
    @Option(help: "Time limit of one environment build, in minutes (default 10).") var envBuildMinutes: Double = 10
    @Option(help: "Installer for jobs' environments: auto (uv when installed, else pip), uv or pip.") var envInstaller = "auto"
    @Option(
        help: "Disk one job may take while it runs, in GB (default 10; a job past its own limit, or past 200,000 files, is stopped). Jobs that ask for more (submit --disk; 10 GB unless they say) are not given to this worker.")
    var maxJobDiskGb: Double = 10
    @Option(help: "Memory the grid's shared key-value values held here may take, in MiB (default 512; one person at most a quarter).")
    var shareMemoryMb: Int = 512
    @Option(help: "Disk the grid's shared file chunks held here may take, in MiB (default 20480).") var shareDiskMb: Int = 20480
    @Option(help: "Seconds a peer-port connection may stay open before HELLO (env CAMPUSGRID_HELLO_DEADLINE; default 10).")
    var helloDeadline: Double?
    @Option(help: "Connections from one address that have not said HELLO yet; one more is refused at once (default 256).")
    var maxPendingPerAddress: Int?
    @Flag(help: "Speak plain text to a manager beyond loopback (one started with --insecure-plaintext). Logged at every start.")
    var insecurePlaintext = false
    @Flag(help: "Print the ready line as JSON.") var json = false

    @Option(name: .customLong("parent-pid"), help: .hidden) var parentPid: Int32?

    func validate() throws {
        guard maxJobDiskGb.isFinite, maxJobDiskGb >= 0.001, maxJobDiskGb <= 1_048_576 else {
            throw ValidationError("--max-job-disk-gb must be 0.001–1048576 (got \(maxJobDiskGb))")
        }
        for (label, value) in [("--share-memory-mb", shareMemoryMb), ("--share-disk-mb", shareDiskMb)] where !(1...(1 << 24)).contains(value) {
            throw ValidationError("\(label) must be 1–16777216 MiB (got \(value))")
        }
    }

    func run() async throws {
        if let parentPid { try ParentWatch.start(parent: parentPid) }
        let target = manager ?? Env.string("MANAGER_HOST").map { h in Env.string("MANAGER_PORT").map { "\(h):\($0)" } ?? h } ?? "127.0.0.1"
        // Issue 16: `-m host1,host2:9998,…` lists every manager of the grid; the worker talks to whichever leads.
        let listed: [ManagerAddress]
        do { listed = try ManagerAddress.list(target) } catch let e as GridError { throw ValidationError(e.message) }
        let (host, managerPort) = (listed[0].host, listed[0].port)
        let join: JoinString
        do { join = try JoinString(parsing: try joinToken()) } catch let e as GridError { throw ValidationError(e.message) }
        let token = join.token
        for m in listed {
            switch TransportChoice.forWorker(managerHost: m.host, pinned: join.caFingerprint != nil, insecurePlaintext: insecurePlaintext) {
            case .failure(let e): throw ValidationError(e.message)
            case .success(let choice): if m == listed[0], let notice = choice.notice("the link to the manager") { complain(notice) }
            }
        }
        let hostName = ProcessInfo.processInfo.hostName
        var config = WorkerConfig(
            managerHost: host, token: token, name: name ?? hostName,
            dataDirectory: dataDir ?? Env.string("CAMPUSGRID_DATA_DIR").map { $0 + "/worker" } ?? Env.home + "/.campusgrid/worker")
        // One worker per data folder (`DataFolderLock`), before anything in it is read, swept or started.
        config.folderLock = try DataFolderLock.take(config.dataDirectory)
        config.managerPort = managerPort
        config.otherManagers = Array(listed.dropFirst())
        config.caFingerprint = join.caFingerprint
        config.user = user
        config.slots = slots
        config.jobDisk.maxBytes = Int64(maxJobDiskGb * Double(1 << 30))
        if maxJobDiskGb < Double(JobSpec.defaultDiskGb) {
            complain("--max-job-disk-gb \(maxJobDiskGb): this worker runs only jobs that ask for at most that much scratch disk (submit --disk); a job that says nothing asks for \(JobSpec.defaultDiskGb) GB")
        }
        config.advertiseHost = advertise
        for (label, value) in [("--cpus", cpus), ("--memory", memory), ("--gpus", gpus), ("--slots", slots)] {
            if let value, value < 0 || value > 4096 { throw ValidationError("\(label) must be 0–4096 (got \(value))") }
        }
        let inventory = MachineInfo.gpus()
        let gpuCount = min(gpus ?? inventory.gpus.count, inventory.gpus.count)
        let resources = Resources(
            cpus: max(1, cpus ?? MachineInfo.cpuCount()), ramGb: memory ?? MachineInfo.memoryGb(), gpus: gpuCount,
            gpuMemoryGb: gpuCount > 0 ? inventory.smallestMemoryGb : 0)
        config.cpus = resources.cpus
        let interpreter: String
        do {
            interpreter = try PythonLocator.resolve(python ?? Env.string("CAMPUSGRID_PYTHON") ?? "python3")
        } catch {
            throw ValidationError("\(error)")
        }
        let logger = GridLogging.logger("campusgrid.worker")
        // What the interpreters of a worker that was killed left (this one holds the data folder).
        let sweptTasks = FunctionPool.sweep(directory: config.dataDirectory + "/peer/tasks")
        if !sweptTasks.isEmpty {
            logger.notice("removed \(sweptTasks.count) interpreter folder(s) a stopped worker left: \(sweptTasks.prefix(5).joined(separator: ", "))")
        }
        let (runner, skipped, podmanService) = try chooseRunner(python: interpreter, dataDirectory: config.dataDirectory, slots: config.slots ?? resources.cpus)
        defer {
            // Removals the runner still has queued are made before the worker exits (and before a private Podman service
            // stops: one stopped mid-removal broke the host's container list).
            (runner as? OCIRunner)?.finishRemovals()
            podmanService?.stop()
        }
        let allowOthers = allowUnsandboxed || Env.string("CAMPUSGRID_ALLOW_UNSANDBOXED").map { ["1", "true", "yes", "on"].contains($0.lowercased()) } ?? false
        let report = SandboxReport(
            tier: runner.tier, label: runner.label, skipped: skipped,
            acceptsOthers: Admission.acceptsOthers(tier: runner.tier, allowUnsandboxed: allowOthers), notes: runner.notes)
        config.sandbox = report
        logger.notice(
            "sandbox: \(report.label)",
            metadata: [
                "grid.sandbox.tier": "\(report.tier.rawValue)", "grid.sandbox.skipped": "\(report.skipped.joined(separator: "; "))",
                "grid.sandbox.accepts_others": "\(report.acceptsOthers)", "grid.sandbox.notes": "\(report.notes.joined(separator: "; "))",
            ])
        if let oci = runner as? OCIRunner {
            if !oci.sweptOrphans.isEmpty {
                logger.notice("removed the job containers of workers that are gone", metadata: ["grid.sandbox.containers": "\(oci.sweptOrphans.count)"])
            }
            if let why = oci.sweepFailure { logger.warning("could not look for job containers left behind", metadata: ["grid.error": "\(why)"]) }
        }
        if report.unsandboxed {
            complain(Admission.restrictedWarning(owner: user, home: Env.string("HOME"), acceptsOthers: report.acceptsOthers, skipped: skipped))
        }
        let asJSON = json
        let name = config.name

        // Peer services (seed 003): bind the peer port first, so REGISTER and the ready line carry it.
        guard (0...65535).contains(port ?? 0) else { throw ValidationError("--port must be 0–65535") }
        if let replicas, !(1...5).contains(replicas) { throw ValidationError("--replicas must be 1–5") }
        let loopback = ["127.0.0.1", "localhost", "::1"].contains(host)
        let listenHost = listen ?? (loopback ? "127.0.0.1" : "0.0.0.0")
        var strangers = StrangerLimits()
        strangers.helloDeadlineSeconds = try helloDeadlineSeconds(helloDeadline) ?? strangers.helloDeadlineSeconds
        strangers.maxPendingPerAddress = try pendingCap(maxPendingPerAddress) ?? strangers.maxPendingPerAddress
        // On a TLS grid the peer port is TLS too, with a certificate the manager signs at REGISTER.
        let peerTLS = PeerTLSSwitch(required: join.caFingerprint != nil)
        let listener = try await PeerServer.bind(host: listenHost, port: port ?? 0, strangers: strangers, tls: peerTLS)
        let peerPort = listener.localAddress?.port ?? port ?? 0
        config.port = peerPort
        if config.advertiseHost == nil, loopback { config.advertiseHost = "127.0.0.1" }
        var peerConfig = PeerConfig(dataDirectory: config.dataDirectory + "/peer", token: token, slots: slots ?? resources.cpus)
        peerConfig.replicas = replicas ?? peerConfig.replicas
        peerConfig.memoryBudget = StorageBudget(totalBytes: Int64(shareMemoryMb) << 20, what: "memory values")
        peerConfig.diskBudget = StorageBudget.disk(totalBytes: Int64(shareDiskMb) << 20)
        if let s = Env.string("CAMPUSGRID_PEER_REPAIR_SECONDS").flatMap(Double.init), s.isFinite, s > 0, s <= 86_400 { peerConfig.repairSeconds = s }
        // Tests shorten how long a connection's replies may stay unread (120 s).
        if let s = Env.string("CAMPUSGRID_PEER_REPLY_STALL_SECONDS").flatMap(Double.init), s.isFinite, s >= 0.5, s <= 86_400 { peerConfig.replyStallSeconds = s }
        // Tests shorten a chunk's lease, and how long a new membership waits before chunks are reclaimed.
        if let s = Env.string("CAMPUSGRID_PEER_CHUNK_LEASE_SECONDS").flatMap(Double.init), s.isFinite, s >= 1 { peerConfig.chunkLeaseSeconds = s }
        if let s = Env.string("CAMPUSGRID_PEER_RECLAIM_STABLE_SECONDS").flatMap(Double.init), s.isFinite, s >= 0 { peerConfig.reclaimStableSeconds = s }
        // Function tasks run their warm interpreters under the worker's tier where it can host them (restricted, bwrap).
        // Each interpreter may use its slot's share of the memory this worker offers (at least 512 MiB).
        let taskMemory = max(UInt64(512) << 20, (UInt64(max(0, resources.ramGb)) << 30) / UInt64(max(1, peerConfig.slots)))
        var (launch, taskTier) = FunctionPool.Launch.under(
            runner, python: interpreter, directory: config.dataDirectory + "/peer/tasks", memoryBytes: taskMemory)
        // An interpreter's folder, where one user's tasks after another write, is held to what one job's may take, and to
        // the disk's floor once the disk lost more than that since it started (`FunctionPool`).
        launch.disk = config.jobDisk
        // Interpreters outside a sandbox run with the worker's user's rights: only its owner's tasks, unless it allows more.
        // So do interpreters whose process limit does not hold (a root worker without cgroups).
        peerConfig.tasksForOwnerOnly =
            !Admission.acceptsOthers(tier: taskTier, allowUnsandboxed: allowOthers) || (!launch.holdsProcessLimit && !allowOthers)
        config.sandbox?.tasksAcceptOthers = !peerConfig.tasksForOwnerOnly
        if taskTier != runner.tier {
            let whose = peerConfig.tasksForOwnerOnly ? ": only this worker's owner's tasks run here" : ""
            logger.notice("function tasks run in the \(taskTier.rawValue) tier (warm interpreters under \(runner.tier.rawValue) are not supported yet)\(whose)")
        }
        let peers = try PeerService(config: peerConfig, launch: launch, logger: logger, tls: peerTLS)
        let environments = try environmentBuilder(
            python: interpreter, runner: runner, dataDirectory: config.dataDirectory, acceptsOthers: report.acceptsOthers)
        await peers.setEnvironments(environments)
        logger.notice(
            "job environments: \(environments.configuration.uv == nil ? "pip" : "uv"), \(environments.configuration.sandbox == nil ? "unsandboxed" : "bwrap") builds",
            metadata: ["grid.env.python": "\(environments.interpreter.version)", "grid.env.platform": "\(environments.interpreter.platform)"])
        config.webPort = webPort
        let webPortShown = config.webPort.map(String.init) ?? "null"
        config.gpuIndices = inventory.gpus.prefix(gpuCount).map(\.index)
        let built = await Worker.build(
            config: config, runner: runner, resources: resources, gpuNames: Array(inventory.gpus.prefix(gpuCount).map(\.name)), logger: logger,
            peers: Worker.Peers(service: peers, listener: listener), environments: environments
        ) { id in
            if asJSON {
                // The name as a JSON string (a quote or a backslash in it made the line unreadable).
                let quoted = { (s: String) in String(decoding: (try? JSONEncoder().encode(s)) ?? Data(#""""#.utf8), as: UTF8.self) }
                sayJSON(
                    #"{"event":"registered","worker_id":"\#(id)","name":\#(quoted(name)),"tier":"\#(runner.tier.rawValue)","tier_label":\#(quoted(runner.label)),"port":\#(peerPort),"web_port":\#(webPortShown)}"#
                )
            } else {
                say("Worker \(name) (\(id)) registered with \(host):\(managerPort); peer port \(peerPort); sandbox: \(runner.label)")
            }
        }
        let agent = built.agent
        var services = built.services
        if let webPort {
            services.append(WorkerStatusPage(agent: agent, host: webHost, port: webPort, logger: logger))
        }
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch is CancellationError {
            // Stopped by a signal: a clean exit.
        }
    }

    /// The builder of jobs' Python environments, from the `--env-*`, `--index-url` and `--find-links` options (checked).
    /// `acceptsOthers`: the worker runs other users' jobs, whose packages' build scripts (`--env-allow-sdist`) must
    /// then run in a sandbox.
    func environmentBuilder(python: String, runner: any JobRunner, dataDirectory: String, acceptsOthers: Bool = true) throws -> EnvBuilder {
        for (label, value, range) in [
            ("--env-cache-gb", envCacheGb, 0.0...100_000.0), ("--env-max-gb", envMaxGb, 0.001...10_000.0),
            ("--env-build-minutes", envBuildMinutes, 0.05...1_440.0),
        ] where !value.isFinite || !range.contains(value) {
            throw ValidationError("\(label) must be \(range.lowerBound)–\(range.upperBound) (got \(value))")
        }
        var c = EnvBuilder.Configuration(root: dataDirectory + "/envs", python: python)
        c.indexURL = indexURL ?? Env.string("CAMPUSGRID_INDEX_URL")
        c.noIndex = noIndex
        c.findLinks = findLinks.map { $0.contains("://") ? $0 : URL(fileURLWithPath: $0).standardizedFileURL.path }
        c.allowSdist = envAllowSdist
        c.cacheLimitBytes = Int64(envCacheGb * Double(1 << 30))
        c.maxEnvironmentBytes = Int64(envMaxGb * Double(1 << 30))
        c.timeLimitSeconds = envBuildMinutes * 60
        c.sandbox = EnvBuilder.sandbox(of: runner, bwrapPath: bwrap ?? Env.string("CAMPUSGRID_BWRAP") ?? "/usr/bin/bwrap", python: python)
        // A build is held to the RAM the worker offers (and to 1,024 tasks: `maxBuildProcesses`).
        if let limits = (runner as? BwrapRunner)?.configuration.limits { c.maxBuildProcesses = max(c.maxBuildProcesses, limits.maxProcesses) }
        let ramGb = max(1, memory ?? MachineInfo.memoryGb())
        c.maxBuildMemoryBytes = Int64(min(ramGb, 1 << 20)) << 30
        // A password in the index URL: on the command line `ps` shows it; and a package's build script (sdists) sees
        // the installer's environment, where the URL is.
        // A user name counts too: tokens go there (https://TOKEN@pkgs.example/…).
        func hasSecret(_ url: String) -> Bool { URLComponents(string: url).map { $0.user != nil || $0.password != nil } ?? false }
        let withPassword = ([c.indexURL].compactMap { $0 } + c.findLinks).filter(hasSecret)
        if let url = indexURL, hasSecret(url) {
            complain(
                "warning: --index-url puts the index's credentials on the command line, where anyone on this machine sees it with `ps`; "
                    + "set CAMPUSGRID_INDEX_URL instead")
        }
        // Refused, not warned about: the installer takes find-links on its command line, where anyone on this machine
        // sees them with `ps` for as long as every build runs.
        if findLinks.contains(where: hasSecret) {
            throw ValidationError(
                "a --find-links URL carries credentials, which would be on the installer's command line for every build, where anyone "
                    + "on this machine sees them with `ps`: use a folder, or an index with its credentials in CAMPUSGRID_INDEX_URL")
        }
        if c.allowSdist, !withPassword.isEmpty {
            throw ValidationError(
                "--env-allow-sdist with a package index URL that carries a password: a package's build script would read it from "
                    + "the installer's environment; use an index without one, or drop --env-allow-sdist")
        }
        // A package built from source runs its own build script: another user's, as this worker's user, with its home
        // and its files in reach, were there no sandbox.
        if c.allowSdist, c.sandbox == nil, acceptsOthers {
            throw ValidationError(
                "--env-allow-sdist: package builds cannot be sandboxed here (bubblewrap is missing or does not work), and this worker "
                    + "runs other users' jobs, whose build scripts would run as you; drop --env-allow-sdist, or make bwrap work")
        }
        switch envInstaller {
        case "pip": c.uv = nil
        case "uv", "auto":
            c.uv = EnvBuilder.findUV(python: python)
            if envInstaller == "uv", c.uv == nil { throw ValidationError("--env-installer uv: no uv found next to \(python) or in /usr/local/bin, /usr/bin") }
        default: throw ValidationError("--env-installer is auto, uv or pip (got \(envInstaller))")
        }
        do {
            return EnvBuilder(configuration: c, interpreter: try EnvBuilder.probe(python: python))
        } catch {
            throw ValidationError("cannot use \(python) for jobs' environments: \(error)")
        }
    }

    /// The join token: from `--token-file`, else `--token` (with a warning: `ps` shows it), else `CAMPUSGRID_TOKEN`.
    func joinToken() throws -> String {
        if let tokenFile {
            guard token == nil else { throw ValidationError("give the join token once: --token-file or --token, not both") }
            guard let data = FileManager.default.contents(atPath: tokenFile) else {
                throw ValidationError("cannot read the join token file \(tokenFile)")
            }
            let read = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !read.isEmpty, !read.contains(where: \.isWhitespace) else {
                throw ValidationError("\(tokenFile) should hold one join token (from `campusgrid token create --worker`)")
            }
            if let mode = (try? FileManager.default.attributesOfItem(atPath: tokenFile))?[.posixPermissions] as? Int, mode & 0o077 != 0 {
                complain("warning: \(tokenFile) can be read by other users of this machine; `chmod 600 \(tokenFile)`")
            }
            return read
        }
        if let token {
            complain(
                "warning: --token puts the join token on the command line, where anyone on this machine sees it with `ps`; "
                    + "use --token-file PATH (mode 0600) or CAMPUSGRID_TOKEN instead")
            return token
        }
        guard let token = Env.string("CAMPUSGRID_TOKEN") else {
            throw ValidationError(
                "a worker needs a join token: --token-file PATH or CAMPUSGRID_TOKEN (create one with `campusgrid token create --worker`)")
        }
        return token
    }

    /// The strongest runner that works here (or the one asked for), and why each stronger one was skipped; with
    /// `--sandbox podman` and no engine answering, a `podman system service` of the worker's own (returned to stop).
    func chooseRunner(python: String, dataDirectory: String, slots: Int) throws -> (any JobRunner, [String], PodmanUserService?) {
        let env = ProcessInfo.processInfo.environment
        do {
            let choice = try SandboxSelection.Choice(parsing: sandbox ?? Env.string("CAMPUSGRID_SANDBOX") ?? "auto")
            let useDocker = SandboxSelection.useDocker(noDockerFlag: noDocker, environment: env)
            let given = engineSocket ?? Env.string("CAMPUSGRID_ENGINE_SOCKET")
            let steps = try SandboxSelection.steps(choice: choice, useDocker: useDocker, engineSocket: given, environment: env)
            var settings = SandboxSelection.Settings(python: python)
            settings.image = image ?? Env.string("CAMPUSGRID_IMAGE") ?? settings.image
            settings.bwrapPath = bwrap ?? Env.string("CAMPUSGRID_BWRAP") ?? settings.bwrapPath
            settings.ociWithoutLimits = choice == .docker || choice == .podman
            // Where the worker makes its jobs' folders (`WorkerAgent`): a warm standby's folder waits there.
            settings.jobsDirectory = URL(fileURLWithPath: dataDirectory).appendingPathComponent("jobs").path
            settings.slots = slots
            var service: PodmanUserService?
            let (runner, skipped): (any JobRunner, [String])
            do {
                (runner, skipped) = try SandboxSelection.makeRunner(steps, settings: settings)
            } catch let first as SandboxUnavailable where choice == .podman && given == nil {
                guard let podman = PodmanUserService.podman(environment: env) else { throw first }
                try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
                complain("sandbox: no Podman service answers (\(first.message)); starting `podman system service` for this worker")
                service = try PodmanUserService.start(podman: podman, socket: dataDirectory + "/podman.sock", environment: env)
                do {
                    (runner, skipped) = try SandboxSelection.makeRunner([.oci(sockets: [service!.socket])], settings: settings)
                } catch {
                    service?.stop()
                    throw error
                }
            }
            if !skipped.isEmpty { complain("sandbox: using \(runner.label); skipped: \(skipped.joined(separator: "; "))") }
            return (runner, skipped, service)
        } catch let error as SandboxUnavailable {
            throw ValidationError("sandbox unavailable: \(error.message)")
        }
    }
}

/// `--max-pending-per-address`, checked: 1…100,000.
func pendingCap(_ option: Int?) throws -> Int? {
    guard let n = option else { return nil }
    guard (1...100_000).contains(n) else { throw ValidationError("--max-pending-per-address must be 1…100000") }
    return n
}

/// `--hello-deadline`, else `CAMPUSGRID_HELLO_DEADLINE`, checked: 0.1 s to 1 h.
func helloDeadlineSeconds(_ option: Double?) throws -> Double? {
    guard let seconds = option ?? Env.string("CAMPUSGRID_HELLO_DEADLINE").flatMap(Double.init) else { return nil }
    guard seconds.isFinite, seconds >= 0.1, seconds <= 3600 else { throw ValidationError("--hello-deadline must be 0.1…3600 seconds") }
    return seconds
}

/// Splits `HOST[:PORT]`.
func parseHostPort(_ text: String, defaultPort: Int) throws -> (String, Int) {
    var s = text
    if let r = s.range(of: "://") { s = String(s[r.upperBound...]) }
    if let colon = s.lastIndex(of: ":"), !s.hasSuffix("]") {
        let host = String(s[..<colon])
        guard let port = Int(s[s.index(after: colon)...]), (1...65535).contains(port) else {
            throw ValidationError("bad port in \(text)")
        }
        return (host.isEmpty ? "127.0.0.1" : host, port)
    }
    return (s.isEmpty ? "127.0.0.1" : s, defaultPort)
}

/// Used by `up`, the bench and the test harness (`--parent-pid`): a manager or worker that outlives the process that
/// started it (even one killed by SIGKILL, or one that started it through a launcher) stops itself, through the same
/// graceful path as a SIGTERM.
enum ParentWatch {
    static func start(parent: Int32) throws {
        // 0 and negative numbers name process groups, not a process: refused rather than watched for ever.
        guard parent > 0 else { throw ValidationError("--parent-pid must be a process id above 0 (got \(parent))") }
        ProcessWatch.whenEnded(parent) { kill(getpid(), SIGTERM) }
    }
}
