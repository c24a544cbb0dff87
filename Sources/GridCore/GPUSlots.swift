/// Which of a worker's GPUs are free: jobs get whole devices, by index, and give them back when they end.
public struct GPUSlots: Hashable, Sendable {
    public private(set) var free: [Int]

    /// `indices` are the device indices the worker offers (nvidia-smi's `index`).
    public init(indices: [Int]) {
        free = indices.sorted()
    }

    /// Takes `count` devices (lowest indices first), or returns nil when fewer are free.
    public mutating func take(_ count: Int) -> [Int]? {
        guard count >= 0, count <= free.count else { return nil }
        let taken = Array(free.prefix(count))
        free.removeFirst(count)
        return taken
    }

    /// Gives devices back.
    public mutating func give(_ indices: [Int]) {
        free = Array(Set(free).union(indices)).sorted()
    }

    /// The value of `CUDA_VISIBLE_DEVICES` for these devices.
    public static func visibleDevices(_ indices: [Int]) -> String { indices.map(String.init).joined(separator: ",") }
}
