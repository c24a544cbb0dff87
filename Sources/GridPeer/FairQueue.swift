/// The per-peer task queue: the users with waiting work take turns (round-robin); each user's own items go highest
/// priority first, then in arrival order. Priority orders a user's own tasks only: one user asking for priority 10
/// on everything kept every other user's tasks waiting for as long as they had any queued. Pure: no clock, no I/O.
public struct FairQueue<Item: Sendable>: Sendable {
    /// One user's waiting items, by priority, each level in arrival order.
    private struct Waiting: Sendable {
        var levels: [Int: [Item]] = [:]
        var count = 0
    }

    /// Users with waiting items, in turn order.
    private var turn: [String] = []
    private var users: [String: Waiting] = [:]
    public private(set) var count = 0

    public init() {}

    public var isEmpty: Bool { count == 0 }

    /// How many items `user` has waiting.
    public func count(of user: String) -> Int { users[user]?.count ?? 0 }

    /// Queues `item` for `user` at `priority` (among that user's items, higher runs first).
    public mutating func enqueue(_ item: Item, user: String, priority: Int = 0) {
        var mine = users[user] ?? Waiting()
        if mine.count == 0 { turn.append(user) }
        mine.levels[priority, default: []].append(item)
        mine.count += 1
        users[user] = mine
        count += 1
    }

    /// The next item to run and its user: the user whose turn it is, and that user's highest-priority, oldest item.
    public mutating func next() -> (item: Item, user: String)? {
        guard !turn.isEmpty else { return nil }
        let user = turn.removeFirst()
        guard var mine = users[user], let priority = mine.levels.keys.max(), var level = mine.levels[priority], !level.isEmpty else {
            users[user] = nil
            return next()
        }
        let item = level.removeFirst()
        mine.levels[priority] = level.isEmpty ? nil : level
        mine.count -= 1
        if mine.count == 0 {
            users[user] = nil
        } else {
            users[user] = mine
            turn.append(user)
        }
        count -= 1
        return (item, user)
    }

    /// Removes the queued items matching `predicate` (a client went away); returns them.
    public mutating func remove(where predicate: (Item) -> Bool) -> [Item] {
        var removed: [Item] = []
        for (user, var mine) in users {
            for (priority, items) in mine.levels {
                let gone = items.filter(predicate)
                guard !gone.isEmpty else { continue }
                removed += gone
                let keep = items.filter { !predicate($0) }
                mine.levels[priority] = keep.isEmpty ? nil : keep
                mine.count -= gone.count
            }
            if mine.count == 0 {
                users[user] = nil
                turn.removeAll { $0 == user }
            } else {
                users[user] = mine
            }
        }
        count -= removed.count
        return removed
    }

    /// Waiting items per user, for status pages.
    public var waitingByUser: [String: Int] { users.mapValues(\.count) }
}
