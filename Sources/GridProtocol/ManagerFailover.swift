/// Which manager of a client's list a request goes to next (issue 16). Pure.
///
/// A request starts on the first manager. One that cannot be reached is skipped: a read (safe to repeat) goes on to
/// the next, a write only when its connection was refused (nothing was sent). A write refused by a follower is retried
/// once: on the leader the follower named if that one is in the user's list (a stranger is never followed), else on
/// the next manager. Every manager is tried at most once per request, so the loop always ends.
public struct ManagerFailover: Sendable, Hashable {
    public let count: Int
    public let safe: Bool
    private var tried: Set<Int> = [0]
    private var redirected = false

    public init(count: Int, safe: Bool) {
        self.count = max(1, count)
        self.safe = safe
    }

    /// Manager `index` was unreachable. The next to try, or nil to give up.
    public mutating func unreachable(at index: Int, nothingSent: Bool) -> Int? {
        guard safe || nothingSent else { return nil }
        return next(after: index)
    }

    /// Manager `index` is a follower and named the leader at `leader` (its index in the list, nil: not in the list).
    public mutating func notLeader(at index: Int, leader: Int?) -> Int? {
        guard !redirected else { return nil }
        redirected = true
        if let leader, leader >= 0, leader < count, !tried.contains(leader) {
            tried.insert(leader)
            return leader
        }
        return next(after: index)
    }

    private mutating func next(after index: Int) -> Int? {
        for step in 1..<max(2, count + 1) {
            let i = (index + step) % count
            if !tried.contains(i) {
                tried.insert(i)
                return i
            }
        }
        return nil
    }
}
