import GridCore

/// Choosing a worker's runner from `--sandbox`, `--no-docker`/`USE_DOCKER` and what the machine has.
/// `steps` is pure (what to try, strongest first); `makeRunner` tries them and says why each one it skipped failed.
public enum SandboxSelection {
    /// What the worker's owner asked for.
    public enum Choice: String, Sendable, CaseIterable {
        case auto, docker, podman, bwrap, none
        /// bwrap's namespaces with the limits a worker without root can have (a delegated cgroup v2 subtree, else rlimits).
        case bwrapRootless = "bwrap-rootless"

        /// Parses `--sandbox`; `restricted` is accepted as a synonym of `none`.
        public init(parsing text: String) throws {
            let t = text.lowercased()
            if t == "restricted" {
                self = .none
                return
            }
            guard let c = Choice(rawValue: t) else {
                throw SandboxUnavailable("--sandbox is one of auto, docker, podman, bwrap, bwrap-rootless, none (got \(text))")
            }
            self = c
        }
    }

    /// One runner to try.
    public enum Step: Sendable, Hashable {
        /// An OCI engine at the first of these sockets that answers.
        case oci(sockets: [String])
        /// bwrap with per-job cgroups (root).
        case bwrap
        /// bwrap with a delegated cgroup v2 subtree, else per-job rlimits (no root, or no cgroup mount).
        case bwrapRootless
        case restricted
    }

    /// The engine sockets to try for a choice: the one given, else the engine's usual ones.
    public static func sockets(for choice: Choice, given: String?, environment: [String: String]) -> [String] {
        if let given, !given.isEmpty { return [given.hasPrefix("unix://") ? String(given.dropFirst(7)) : given] }
        let dockerHost = environment["DOCKER_HOST"].flatMap { $0.hasPrefix("unix://") ? String($0.dropFirst(7)) : nil }
        let containerHost = environment["CONTAINER_HOST"].flatMap { $0.hasPrefix("unix://") ? String($0.dropFirst(7)) : nil }
        // Rootless Podman's socket (systemctl --user enable --now podman.socket).
        let userPodman = environment["XDG_RUNTIME_DIR"].flatMap { $0.isEmpty ? nil : $0 + "/podman/podman.sock" }
        switch choice {
        case .docker: return [dockerHost, "/var/run/docker.sock"].compactMap { $0 }
        case .podman: return [containerHost, dockerHost, "/run/podman/podman.sock", userPodman].compactMap { $0 }
        default: return [dockerHost, containerHost, "/var/run/docker.sock", "/run/podman/podman.sock", userPodman].compactMap { $0 }
        }
    }

    /// What to try, strongest first (pure). `auto` ends with restricted, which always works; an explicit choice
    /// never falls below the tier asked for, so a missing sandbox fails the worker's start instead of silently running
    /// weaker (`bwrap` may use the rootless limits: the same namespaces, labelled with the limits that hold).
    public static func steps(choice: Choice, useDocker: Bool, engineSocket: String?, environment: [String: String]) throws -> [Step] {
        switch choice {
        case .auto:
            let oci: [Step] = useDocker ? [.oci(sockets: sockets(for: .auto, given: engineSocket, environment: environment))] : []
            return oci + [.bwrap, .bwrapRootless, .restricted]
        case .docker, .podman:
            guard useDocker else {
                throw SandboxUnavailable("--sandbox \(choice.rawValue) asks for a container engine, but --no-docker (or USE_DOCKER=false) forbids it")
            }
            return [.oci(sockets: sockets(for: choice, given: engineSocket, environment: environment))]
        case .bwrap: return [.bwrap, .bwrapRootless]
        case .bwrapRootless: return [.bwrapRootless]
        case .none: return [.restricted]
        }
    }

    /// Whether `USE_DOCKER` allows an OCI engine (anything but false/0/no/off).
    public static func useDocker(noDockerFlag: Bool, environment: [String: String]) -> Bool {
        if noDockerFlag { return false }
        guard let v = environment["USE_DOCKER"]?.lowercased() else { return true }
        return !["false", "0", "no", "off"].contains(v)
    }

    /// The settings each runner is built from.
    public struct Settings: Sendable {
        public var python: String
        public var limits: RunnerLimits = RunnerLimits()
        /// The worker's jobs folder: the bwrap tier with cgroups starts each next job's interpreter ahead there
        /// (`BwrapRunner.Configuration.warmDirectory`). Nil: it does not.
        public var jobsDirectory: String?
        /// The worker's slots: the bwrap tier keeps one standby ready per slot and one more (at most 8, about 80 MB of
        /// idle interpreters), so that back-to-back jobs on a slot find one whose interpreter had a whole job's time to start.
        public var slots: Int = 1
        public var bwrapPath: String = "/usr/bin/bwrap"
        public var image: String = OCIRunner.defaultImage
        /// The cgroup mount (empty inside `ip netns exec`).
        public var cgroupRoot: String = "/sys/fs/cgroup"
        /// Whether an engine whose resource limits do not hold (rootless on cgroup v1) may be used: yes when the
        /// owner asked for it (`--sandbox docker|podman`); `auto` prefers bwrap with rlimits, which holds more.
        public var ociWithoutLimits = false
        public init(python: String) { self.python = python }
    }

    /// Builds the first runner of `steps` that works here; the second value lists why stronger ones were skipped.
    public static func makeRunner(_ steps: [Step], settings: Settings) throws -> (runner: any JobRunner, skipped: [String]) {
        var skipped: [String] = []
        for step in steps {
            do {
                switch step {
                case .oci(let sockets):
                    var lastError: (any Error)?
                    for socket in sockets {
                        var c = OCIRunner.Configuration(socket: socket)
                        c.image = settings.image
                        c.limits = settings.limits
                        do {
                            let runner = try OCIRunner(configuration: c)
                            if !settings.ociWithoutLimits && !OCIRunner.describe(runner.host).limitsHold {
                                throw SandboxUnavailable(
                                    "the engine at \(socket) is rootless on cgroup v1, where it ignores memory, process and CPU limits "
                                        + "(bwrap with rlimits holds more; --sandbox podman uses it anyway)")
                            }
                            return (runner, skipped)
                        } catch { lastError = error }
                    }
                    throw lastError ?? SandboxUnavailable("no container engine socket to try")
                case .bwrap:
                    var c = BwrapRunner.Configuration(python: settings.python)
                    c.bwrapPath = settings.bwrapPath
                    c.limits = settings.limits
                    c.cgroupRoot = settings.cgroupRoot
                    c.warmDirectory = settings.jobsDirectory
                    c.standbys = min(max(settings.slots, 1), 7) + 1
                    return (try BwrapRunner(configuration: c), skipped)
                case .bwrapRootless:
                    var c = BwrapRunner.Configuration(python: settings.python)
                    c.bwrapPath = settings.bwrapPath
                    c.limits = settings.limits
                    c.cgroupRoot = settings.cgroupRoot
                    // A delegated cgroup v2 subtree first; its reason is kept when the rlimits are used instead.
                    do {
                        c.cgroupParent = try CgroupDelegation.prepare(root: settings.cgroupRoot)
                        c.limitSource = .delegatedCgroup
                        return (try BwrapRunner(configuration: c), skipped)
                    } catch {
                        skipped.append("bwrap with a delegated cgroup: \(error)")
                    }
                    c.cgroupParent = nil
                    c.limitSource = .rlimits
                    return (try BwrapRunner(configuration: c), skipped)
                case .restricted:
                    return (RestrictedRunner(python: settings.python, limits: settings.limits), skipped)
                }
            } catch {
                skipped.append("\(step.name): \(error)")
            }
        }
        throw SandboxUnavailable(skipped.joined(separator: "; "))
    }
}

extension SandboxSelection.Step {
    /// How the step is named in the reasons a worker gives for skipping it.
    public var name: String {
        switch self {
        case .oci: "oci"
        case .bwrap: "bwrap+cgroups"
        case .bwrapRootless: "bwrap-rootless"
        case .restricted: "restricted"
        }
    }
}
