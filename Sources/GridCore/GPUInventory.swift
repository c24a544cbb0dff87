/// NVIDIA GPUs as `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits` lists them.
public struct GPUInventory: Hashable, Sendable {
    public struct GPU: Hashable, Sendable {
        public var index: Int
        public var name: String
        public var memoryMiB: Int
    }

    public var gpus: [GPU]

    public init(gpus: [GPU]) { self.gpus = gpus }

    /// Parses nvidia-smi's CSV (with or without the header line and units); unparsable lines are skipped.
    public static func parse(csv: String) -> GPUInventory {
        var out: [GPU] = []
        for line in csv.split(whereSeparator: \.isNewline) {
            let fields = line.split(separator: ",").map { $0.trimmingCharacters(in: " \t") }
            guard fields.count >= 3, let index = Int(fields[0]) else { continue }
            let memory = String(fields[2].filter(\.isNumber))
            out.append(GPU(index: index, name: fields[1], memoryMiB: Int(memory) ?? 0))
        }
        return GPUInventory(gpus: out)
    }

    /// Memory of the smallest GPU, in whole GB.
    public var smallestMemoryGb: Int { (gpus.map(\.memoryMiB).min() ?? 0) / 1024 }
}

extension StringProtocol {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s.removeFirst() }
        while let l = s.last, set.contains(l) { s.removeLast() }
        return String(s)
    }
}
