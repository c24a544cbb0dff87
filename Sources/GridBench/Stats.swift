import Foundation

/// Order statistics over raw samples (nearest-rank), and a monotonic clock.
public enum Stats {
    /// The median (mean of the middle two for an even count); `nil` for no samples.
    public static func median(_ samples: [Double]) -> Double? {
        guard !samples.isEmpty else { return nil }
        let s = samples.sorted()
        let mid = s.count / 2
        return s.count % 2 == 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
    }

    /// The `p`th percentile by nearest rank (p in 0...100); `nil` for no samples.
    public static func percentile(_ samples: [Double], _ p: Double) -> Double? {
        guard !samples.isEmpty else { return nil }
        let s = samples.sorted()
        let rank = Int((p / 100 * Double(s.count)).rounded(.up))
        return s[min(max(rank - 1, 0), s.count - 1)]
    }

    /// Seconds on a monotonic clock (for durations only).
    /// Writes every dirty page back (`sync`) before a timed disk run, so that no run pays for the write-back of what ran
    /// before it (a put's gigabytes, the last run's saved file). Ours and the references' runs both call it.
    static func settleDisk() {
        sync()
    }

    /// Seconds on the monotonic clock (CLOCK_MONOTONIC on Linux).
    public static func now() -> Double {
        Double(DispatchTime.now().uptimeNanoseconds) / 1e9
    }

    /// Runs `body` and returns its result and how long it took, in seconds.
    public static func timed<T>(_ body: () throws -> T) rethrows -> (T, Double) {
        let start = now()
        let result = try body()
        return (result, now() - start)
    }

    /// As `timed`, for async work.
    public static func timed<T>(_ body: () async throws -> T) async rethrows -> (T, Double) {
        let start = now()
        let result = try await body()
        return (result, now() - start)
    }
}
