public import GridPeer

/// Settings of a worker's peer services (seed 003), with their defaults.
public struct PeerConfig: Sendable {
    /// Folder of the peer's own storage (chunks); nothing is written outside it.
    public var dataDirectory: String
    /// The worker's join token. Kept for the worker's own manager link only: it never crosses a peer link (peers prove
    /// themselves with manager-signed credentials, see `PeerTrust`).
    public var token: String
    /// Copies of each memory key and file chunk (default 2).
    public var replicas = 2
    /// Function tasks at once; the CPU count by default.
    public var slots: Int
    /// Seconds between repair passes (re-replication of keys and chunks); membership changes trigger one at once.
    public var repairSeconds: Double = 30
    /// How long a connection's replies may stay unread (it not writable) before the connection is closed: what it holds
    /// meanwhile (up to 32 replies in flight and the write buffer, chunks of 4 MiB among them) is freed.
    public var replyStallSeconds: Double = 120
    /// Default and largest time limit of a function task, in seconds.
    public var defaultTaskSeconds: Double = 30
    public var maxTaskSeconds: Double = 600
    /// Largest program text of a function task, in bytes.
    public var maxProgramBytes = 256 << 10
    /// Whether function tasks run here only for the worker's owner: its interpreters have no sandbox (the worker's
    /// tier is a container engine, or none) and the owner did not say `--allow-unsandboxed`. Others' tasks are refused
    /// here (a non-confidential one is handed to another peer).
    public var tasksForOwnerOnly = false
    /// Function tasks waiting here, per user and in all (each holds its program and arguments in memory until it runs).
    public var maxQueuedTasksPerUser = 256
    public var maxQueuedTasks = 4_096
    /// The most names one listing of memory keys or files gives (the first, in name order).
    public var maxListed = 10_000
    /// How long the manager's answer that a person's token still stands is kept, in seconds (`PeerTrust.Standing`).
    public var authCacheSeconds: Double = 60
    /// Bulk uploads open at once: per user, and on this peer altogether.
    public var uploadQuota = UploadQuota()
    /// How much memory the distributed-memory values this peer holds may take, in all and per person (default
    /// 512 MiB, a quarter of it per person: `--share-memory-mb`).
    public var memoryBudget = StorageBudget(totalBytes: 512 << 20, what: "memory values")
    /// How much disk the file chunks this peer holds may take (default 20 GiB: `--share-disk-mb`). A peer storing a
    /// chunk for another does not know whose file it is part of, so this one is not shared out per person. Chunks no
    /// file names any more are reclaimed (`ChunkReclaim`).
    public var diskBudget = StorageBudget.disk(totalBytes: 20 << 30)
    /// How long a chunk copy nobody renewed or stored again is kept (a week), and how long the membership must have
    /// been unchanged before chunks are reclaimed, in seconds (see `ChunkReclaim`).
    public var chunkLeaseSeconds = ChunkReclaim.defaultLeaseSeconds
    public var reclaimStableSeconds = ChunkReclaim.defaultStableSeconds

    public init(dataDirectory: String, token: String, slots: Int) {
        self.dataDirectory = dataDirectory
        self.token = token
        self.slots = max(1, slots)
    }
}
