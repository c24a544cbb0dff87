public import GridProtocol
public import GridCore
public import GridSandbox

/// Everything a worker can be told, with documented defaults. Parsed only by the executable.
public struct WorkerConfig: Sendable {
    public var managerHost: String
    public var managerPort: Int = 9999
    /// The grid's other managers (issue 16: `-m host1,host2,…`), after `managerHost:managerPort`. The worker talks to
    /// whichever leads; a `NOT_LEADER` answer is followed only to a manager in this list.
    public var otherManagers: [ManagerAddress] = []
    /// Every manager this worker knows, the first one first.
    public var managers: [ManagerAddress] {
        let first = ManagerAddress(host: managerHost, port: managerPort)
        return [first] + otherManagers.filter { $0 != first }
    }
    /// Join token (`campusgrid token create --worker`).
    public var token: String
    /// The manager's CA, pinned by the join string (`TOKEN@sha256:…`): the link speaks TLS and refuses, before it sends
    /// anything, a manager whose certificate chain does not carry this CA. nil: plain text (loopback, or
    /// `--insecure-plaintext`).
    public var caFingerprint: String?
    /// Name shown on the dashboard; the host name by default.
    public var name: String
    /// The seed's `-u/--user`: the account to earn for; checked against the token's owner.
    public var user: String?
    /// Folder for the worker's id, job scratch directories and peer storage.
    public var dataDirectory: String
    /// The data folder's lock, when this worker holds it (`campusgrid worker` takes it first thing; kept as long as the
    /// worker's config is): no other worker uses the folder, so every run folder found there at start is a gone
    /// worker's, whatever PID it names (`JobFiles.sweep`). Nil (the in-process test grid): only folders of PIDs
    /// that are gone are.
    public var folderLock: DataFolderLock?
    /// CPUs, RAM (GB) and GPUs offered; detected when nil.
    public var cpus: Int?
    public var memoryGb: Int?
    public var gpus: Int?
    /// Indices of the GPUs offered (nvidia-smi's `index`); jobs get whole devices from these.
    public var gpuIndices: [Int] = []
    /// Jobs run at once; the CPU count by default.
    public var slots: Int?
    /// Address other peers reach this worker at, and its ports (peer services, status page).
    public var advertiseHost: String?
    public var port: Int?
    public var webPort: Int?
    /// Largest total size of one job's outputs, in bytes.
    public var maxOutputBytes: Int = 60 << 20
    /// Largest total size of one job's grid inputs (`--input grid:NAME`), in bytes: the worker writes them to its disk,
    /// outside the sandbox, and a stored file of zeros costs its owner one chunk whatever its size.
    public var maxGridInputBytes: Int64 = 4 << 30
    /// Disk space a job's grid inputs leave free on the worker's data disk, in bytes (for the job's outputs and the
    /// contributor's own use): a job whose inputs would take more goes to another worker.
    public var diskReserveBytes: Int64 = 1 << 30
    /// How much disk one job may take while it runs (its folder's bytes and files, and the free space the disk keeps):
    /// a job past them is stopped (`JobExecution.watchDisk`).
    public var jobDisk = DiskLimits()
    /// Largest log kept per job, in bytes.
    public var maxLogBytes: Int = 16 << 20
    /// The sandbox as reported to the manager and shown on the status page (label, skipped tiers, whose jobs it takes);
    /// nil = the runner's tier and label, taking everyone's jobs.
    public var sandbox: SandboxReport?

    public init(managerHost: String, token: String, name: String, dataDirectory: String) {
        self.managerHost = managerHost
        self.token = token
        self.name = name
        self.dataDirectory = dataDirectory
    }
}
