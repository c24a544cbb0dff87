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

/// The client addresses (`RateLimit.addressKey`) each account logged in from lately: at most 8 an account (the newest
/// kept), and at most `maxAccounts` accounts (the oldest entries dropped first). An account's failed logins from
/// elsewhere do not hold up a login from these, so guessing cannot lock its owner out of the machines they use.
final class LoginPlaces: Sendable {
    private struct State {
        var places: [String: [String]] = [:]
        var order: [String] = []
    }

    private let state = Mutex(State())
    let maxAccounts: Int
    static let perAccount = 8

    init(maxAccounts: Int = 10_000) { self.maxAccounts = maxAccounts }

    func knows(_ account: String, _ address: String) -> Bool {
        state.withLock { $0.places[account]?.contains(address) == true }
    }

    func remember(_ account: String, _ address: String) {
        state.withLock { s in
            var list = s.places[account] ?? []
            if s.places[account] == nil { s.order.append(account) }
            list.removeAll { $0 == address }
            list.append(address)
            s.places[account] = Array(list.suffix(Self.perAccount))
            if s.places.count > maxAccounts {
                let drop = s.order.prefix(s.places.count - maxAccounts / 2)
                for a in drop { s.places[a] = nil }
                s.order.removeFirst(drop.count)
            }
        }
    }
}
