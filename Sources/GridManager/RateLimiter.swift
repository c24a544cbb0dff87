import Foundation
import Synchronization

/// The shell around a `RateLimit`: one lock, the wall clock. Used for logins (failures per username and address)
/// and registrations (per address).
final class RateLimiter: Sendable {
    private let state: Mutex<RateLimit>

    /// At most `limit` requests per key at once, then `limit` more per `window` seconds.
    init(limit: Int = 10, window: Double = 60) {
        state = Mutex(RateLimit(burst: limit, window: window))
    }

    /// `burst` requests per key at once, then `perMinute` a minute.
    convenience init(burst: Int, perMinute: Double) {
        self.init(limit: burst, window: 60 * Double(max(1, burst)) / max(perMinute, 0.001))
    }

    /// Counts a request from `key` and says whether it may go ahead, and if not, when it may.
    func admit(_ key: String, now: Double = Date().timeIntervalSince1970) -> RateLimit.Decision {
        state.withLock { $0.admit(key, now: now) }
    }

    /// Counts a request from `key`; whether it may go ahead.
    func allow(_ key: String, now: Double = Date().timeIntervalSince1970) -> Bool {
        admit(key, now: now) == .allowed
    }

    /// Whether a request from `key` would be allowed now, without counting it.
    func check(_ key: String, now: Double = Date().timeIntervalSince1970) -> RateLimit.Decision {
        state.withLock { $0.check(key, now: now) }
    }

    func reset(_ key: String) { state.withLock { $0.reset(key) } }
}
