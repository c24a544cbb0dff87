/// How strongly a worker isolates the jobs it runs, weakest first.
public enum SandboxTier: String, Sendable, Codable, CaseIterable, Comparable {
    /// rlimits and a process-group kill only: best effort.
    case restricted
    /// bubblewrap namespaces plus a per-job cgroup.
    case bwrap
    /// An OCI container through a Docker-API engine.
    case oci

    private var strength: Int {
        switch self {
        case .restricted: 0
        case .bwrap: 1
        case .oci: 2
        }
    }

    public static func < (lhs: SandboxTier, rhs: SandboxTier) -> Bool { lhs.strength < rhs.strength }

    /// A label for people; the restricted tier always says it is best-effort.
    public var label: String {
        switch self {
        case .restricted: "restricted (best-effort)"
        case .bwrap: "bwrap+cgroups"
        case .oci: "oci"
        }
    }
}
