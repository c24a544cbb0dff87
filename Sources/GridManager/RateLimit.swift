import Foundation
import GridProtocol

/// A token bucket per key, with time passed in: `burst` requests at once, then `burst` more per `window` seconds,
/// spread evenly. Pure, so the tests drive the clock by hand; `RateLimiter` is its shell.
struct RateLimit: Sendable {
    /// What the limit says about one request.
    enum Decision: Sendable, Equatable {
        case allowed
        /// Refused; the next request from this key is allowed after `retryAfter` seconds.
        case limited(retryAfter: Double)

        /// `retryAfter` as an HTTP `Retry-After` value: whole seconds, rounded up, at least 1 (nil when allowed).
        var retryAfterHeader: Int? {
            guard case .limited(let seconds) = self else { return nil }
            return max(1, Int(seconds.rounded(.up)))
        }
    }

    /// One key's bucket: tokens left (fractions count toward the next one) as of `updated`.
    struct Bucket: Sendable, Equatable {
        var tokens: Double
        var updated: Double
    }

    /// The most requests allowed at once (the bucket's size), at least 1.
    let burst: Int
    /// Tokens added back per second.
    let refillPerSecond: Double
    /// Buckets are forgotten once full again; beyond this many keys the full ones are dropped.
    let maxKeys: Int
    private(set) var buckets: [String: Bucket] = [:]

    /// `burst` requests per `window` seconds (at least one per window; a window under a millisecond counts as one).
    init(burst: Int, window: Double, maxKeys: Int = 10_000) {
        self.burst = max(1, burst)
        self.refillPerSecond = Double(max(1, burst)) / max(window, 0.001)
        self.maxKeys = maxKeys
    }

    /// Counts one request from `key` at `now` (seconds on any steady scale) and says whether it may go ahead.
    mutating func admit(_ key: String, now: Double) -> Decision {
        if buckets.count > maxKeys { prune(now: now) }
        var bucket = current(key, now: now)
        defer { buckets[key] = bucket }
        if bucket.tokens >= 1 {
            bucket.tokens -= 1
            return .allowed
        }
        return .limited(retryAfter: (1 - bucket.tokens) / refillPerSecond)
    }

    /// Whether a request from `key` would be allowed at `now`, without counting it.
    func check(_ key: String, now: Double) -> Decision {
        let bucket = current(key, now: now)
        return bucket.tokens >= 1 ? .allowed : .limited(retryAfter: (1 - bucket.tokens) / refillPerSecond)
    }

    /// The key a client address is limited under: an IPv4 address as it is (also one mapped into IPv6), an IPv6
    /// address by its /64 (one host is given a whole /64, so per address it had as many tries as it liked).
    /// (`ClientAddress.key`, shared with the listeners' count of strangers.)
    static func addressKey(_ address: String) -> String { ClientAddress.key(address) }

    /// Whether `address` is the manager's own machine (127.0.0.0/8, ::1, or IPv4 loopback mapped into IPv6).
    static func isLoopback(_ address: String) -> Bool { ClientAddress.isLoopback(address) }

    /// Forgets `key` (a login that succeeded starts afresh).
    mutating func reset(_ key: String) { buckets[key] = nil }

    /// `key`'s bucket refilled up to `now`.
    private func current(_ key: String, now: Double) -> Bucket {
        guard let old = buckets[key] else { return Bucket(tokens: Double(burst), updated: now) }
        let refilled = old.tokens + max(0, now - old.updated) * refillPerSecond
        return Bucket(tokens: min(Double(burst), refilled), updated: max(now, old.updated))
    }

    /// Drops the buckets that are full again: they say nothing a fresh one would not. A flood of distinct keys, each
    /// spending a token, leaves none full: then the least spent go too, down to half the bound, so pruning comes once
    /// per many requests, not on each (it held the limiter's lock over every key), and memory stays bounded. The
    /// most limited keys are the ones kept.
    private mutating func prune(now: Double) {
        buckets = buckets.filter { key, _ in current(key, now: now).tokens < Double(burst) }
        guard buckets.count > maxKeys * 3 / 4 else { return }
        let kept = buckets.map { ($0.key, current($0.key, now: now)) }.sorted { $0.1.tokens < $1.1.tokens }.prefix(max(1, maxKeys / 2))
        buckets = Dictionary(uniqueKeysWithValues: kept.map { ($0.0, $0.1) })
    }
}
