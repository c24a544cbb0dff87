/// An amount of compute: what a job asks for, or what a worker has.
public struct Resources: Hashable, Sendable, Codable {
    public var cpus: Int
    public var ramGb: Int
    public var gpus: Int
    /// Memory of the smallest GPU counted, in GB (0 when none or unknown).
    public var gpuMemoryGb: Int

    public init(cpus: Int, ramGb: Int, gpus: Int = 0, gpuMemoryGb: Int = 0) {
        self.cpus = cpus
        self.ramGb = ramGb
        self.gpus = gpus
        self.gpuMemoryGb = gpuMemoryGb
    }

    public static let zero = Resources(cpus: 0, ramGb: 0)

    /// Whether `request` fits inside these (free) resources.
    public func covers(_ request: Resources) -> Bool {
        cpus >= request.cpus && ramGb >= request.ramGb && gpus >= request.gpus
            && (request.gpus == 0 || request.gpuMemoryGb == 0 || gpuMemoryGb >= request.gpuMemoryGb)
    }

    /// The requirements of `request` that these resources do not meet, in words ("4 CPUs", "8 GB RAM").
    public func unmet(_ request: Resources) -> [String] {
        var out: [String] = []
        if cpus < request.cpus { out.append("\(request.cpus) CPU\(request.cpus == 1 ? "" : "s")") }
        if ramGb < request.ramGb { out.append("\(request.ramGb) GB RAM") }
        if gpus < request.gpus { out.append("\(request.gpus) GPU\(request.gpus == 1 ? "" : "s")") }
        if request.gpus > 0 && request.gpuMemoryGb > 0 && gpuMemoryGb < request.gpuMemoryGb {
            out.append("\(request.gpuMemoryGb) GB of GPU memory")
        }
        return out
    }

    public static func - (lhs: Resources, rhs: Resources) -> Resources {
        Resources(cpus: lhs.cpus - rhs.cpus, ramGb: lhs.ramGb - rhs.ramGb, gpus: lhs.gpus - rhs.gpus, gpuMemoryGb: lhs.gpuMemoryGb)
    }

    public static func + (lhs: Resources, rhs: Resources) -> Resources {
        Resources(cpus: lhs.cpus + rhs.cpus, ramGb: lhs.ramGb + rhs.ramGb, gpus: lhs.gpus + rhs.gpus, gpuMemoryGb: lhs.gpuMemoryGb)
    }
}
