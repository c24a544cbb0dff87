/// The eviction rule of a worker's cache of built Python environments (`<data>/envs/<key>`), pure: given what is
/// cached, how big each is, when each was last used and which are in use, which to delete so that the cache fits its
/// limit. Least recently used first; an environment in use is never chosen, even when the cache stays over its limit.
public enum EnvironmentCache {
    public struct Entry: Hashable, Sendable {
        public var key: String
        public var bytes: Int64
        /// When a job last used it (seconds; any monotonic scale).
        public var lastUsed: Double
        /// A job runs in it now, or is about to.
        public var inUse: Bool
        public init(key: String, bytes: Int64, lastUsed: Double, inUse: Bool) {
            self.key = key
            self.bytes = bytes
            self.lastUsed = lastUsed
            self.inUse = inUse
        }
    }

    /// The keys to delete, in order, for the total to be at most `limitBytes` (as far as entries not in use allow).
    public static func evictions(_ entries: [Entry], limitBytes: Int64) -> [String] {
        var total = entries.reduce(Int64(0)) { $0 + max(0, $1.bytes) }
        guard total > max(0, limitBytes) else { return [] }
        var out: [String] = []
        for entry in entries.filter({ !$0.inUse }).sorted(by: { ($0.lastUsed, $0.key) < ($1.lastUsed, $1.key) }) {
            if total <= limitBytes { break }
            out.append(entry.key)
            total -= max(0, entry.bytes)
        }
        return out
    }
}
