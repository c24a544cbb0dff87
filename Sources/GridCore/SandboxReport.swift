/// What a worker says about its sandbox: the tier, a label that names which limits hold, why each stronger tier was
/// skipped, and whose jobs it takes. Sent in `REGISTER`, shown by `workers`, the dashboard and the worker's status page.
public struct SandboxReport: Hashable, Sendable, Codable {
    public var tier: SandboxTier
    /// For people, e.g. `bwrap+cgroups`, `bwrap, rootless, rlimits`, `restricted (best-effort)`.
    public var label: String
    /// Why each stronger tier was not used, strongest first (empty when the first choice worked).
    public var skipped: [String]
    /// Whether the worker runs other users' jobs; a restricted worker does only when its owner said
    /// `--allow-unsandboxed` (see `Admission`).
    public var acceptsOthers: Bool
    /// Limits this tier cannot hold, or holds only for some jobs, with the reason (e.g. no memory limit for GPU jobs).
    public var notes: [String]
    /// Whether the worker's peer services run other users' function tasks: its warm interpreters run in a sandbox
    /// (bwrap) only where its jobs do; under a container engine or none they are plain children of the worker, and
    /// take only its owner's tasks unless the owner said `--allow-unsandboxed`. nil: as `acceptsOthers` (an older
    /// worker). The manager sends no one else's task there (`GET_BEST_PEER`).
    public var tasksAcceptOthers: Bool?

    public init(tier: SandboxTier, label: String, skipped: [String] = [], acceptsOthers: Bool = true, notes: [String] = []) {
        self.tier = tier
        self.label = label
        self.skipped = skipped
        self.acceptsOthers = acceptsOthers
        self.notes = notes
    }

    /// A job here runs with the worker owner's own rights: it can read their files and reach their network.
    public var unsandboxed: Bool { tier == .restricted }
}

/// Who a worker takes jobs from (pure): the rule that keeps the restricted tier from being a surprise.
public enum Admission {
    /// Whether a worker in `tier` runs other users' jobs: always in a real sandbox; in the restricted tier only when
    /// its owner started it with `--allow-unsandboxed`.
    public static func acceptsOthers(tier: SandboxTier, allowUnsandboxed: Bool) -> Bool {
        tier > .restricted || allowUnsandboxed
    }

    /// Whether a worker owned by `workerOwner` may run a job of `jobOwner`.
    public static func accepts<Owner: Equatable>(jobOwner: Owner, workerOwner: Owner, acceptsOthers: Bool) -> Bool {
        acceptsOthers || jobOwner == workerOwner
    }

    /// The paragraph a worker in the restricted tier prints at start: what a job could reach, and how to get a real
    /// sandbox. `skipped` are the reasons the stronger tiers were not used.
    public static func restrictedWarning(owner: String?, home: String?, acceptsOthers: Bool, skipped: [String]) -> String {
        let whose = owner.map { "\($0)'s" } ?? "your"
        var text =
            "WARNING: this worker has no real sandbox (tier: restricted, best-effort). A job here runs as your own user: "
            + "it can read \(whose) files\(home.map { " (everything under \($0) that you can read: SSH keys, browser profiles, the join token)" } ?? ""), "
            + "write wherever you can, and reach your network and the internet. Only rlimits and a process-group kill hold it. "
        text +=
            acceptsOthers
            ? "You started it with --allow-unsandboxed, so it also runs OTHER users' jobs. "
            : "So it runs only your own jobs; other users' jobs go to sandboxed workers (start it with --allow-unsandboxed to take them anyway). "
        text +=
            "For a real sandbox: on Linux install bubblewrap (apt-get install bubblewrap) and allow unprivileged user namespaces "
            + "(sysctl kernel.unprivileged_userns_clone=1, or on Ubuntu 24.04+ an AppArmor profile for bwrap), or run rootless Podman "
            + "(apt-get install podman uidmap slirp4netns; systemctl --user enable --now podman.socket); on macOS or Windows run the worker "
            + "inside a Linux VM (e.g. podman machine, WSL2)."
        if !skipped.isEmpty { text += " Stronger tiers were skipped: " + skipped.joined(separator: "; ") + "." }
        return text
    }
}
