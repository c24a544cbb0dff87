/// Reconnect delays: doubling from `initial` up to `maximum`, back to `initial` after a success. Pure; the shell sleeps.
public struct Backoff: Sendable, Hashable {
    public let initial: Double
    public let maximum: Double
    private var current: Double

    public init(initial: Double = 0.2, maximum: Double = 2.0) {
        self.initial = initial
        self.maximum = maximum
        self.current = initial
    }

    /// The delay before the next attempt, in seconds.
    public mutating func next() -> Double {
        defer { current = min(current * 2, maximum) }
        return current
    }

    public mutating func reset() { current = initial }
}
