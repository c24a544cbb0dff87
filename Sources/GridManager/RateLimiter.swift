import Foundation
import Synchronization

/// A fixed-window limiter for login attempts: at most `limit` failures per key per `window` seconds.
final class RateLimiter: Sendable {
    private let limit: Int
    private let window: Double
    private let state = Mutex<[String: (start: Double, count: Int)]>([:])

    init(limit: Int = 10, window: Double = 60) {
        self.limit = limit
        self.window = window
    }

    func allow(_ key: String, now: Double = Date().timeIntervalSince1970) -> Bool {
        state.withLock { s in
            if s.count > 10_000 { s = s.filter { now - $0.value.start < window } }
            var entry = s[key] ?? (now, 0)
            if now - entry.start >= window { entry = (now, 0) }
            entry.count += 1
            s[key] = entry
            return entry.count <= limit
        }
    }

    func reset(_ key: String) { _ = state.withLock { $0.removeValue(forKey: key) } }
}
