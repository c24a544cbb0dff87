/// The per-peer task queue: higher priorities first; within a priority, the users with waiting work take turns
/// (round-robin), each user's own items in arrival order. Pure: no clock, no I/O.
public struct FairQueue<Item: Sendable>: Sendable {
    private struct Level: Sendable {
        /// Users with waiting items, in turn order.
        var turn: [String] = []
        var items: [String: [Item]] = [:]
        var count: Int { items.values.reduce(0) { $0 + $1.count } }
    }

    private var levels: [Int: Level] = [:]
    public private(set) var count = 0

    public init() {}

    public var isEmpty: Bool { count == 0 }

    /// Queues `item` for `user` at `priority` (higher runs first).
    public mutating func enqueue(_ item: Item, user: String, priority: Int = 0) {
        var level = levels[priority] ?? Level()
        if level.items[user, default: []].isEmpty { level.turn.append(user) }
        level.items[user, default: []].append(item)
        levels[priority] = level
        count += 1
    }

    /// The next item to run and its user: the highest priority; within it, the user whose turn it is.
    public mutating func next() -> (item: Item, user: String)? {
        guard let priority = levels.keys.max(), var level = levels[priority], !level.turn.isEmpty else { return nil }
        let user = level.turn.removeFirst()
        var mine = level.items[user] ?? []
        let item = mine.removeFirst()
        if mine.isEmpty {
            level.items[user] = nil
        } else {
            level.items[user] = mine
            level.turn.append(user)
        }
        levels[priority] = level.turn.isEmpty ? nil : level
        count -= 1
        return (item, user)
    }

    /// Removes the queued items matching `predicate` (a client went away); returns them.
    public mutating func remove(where predicate: (Item) -> Bool) -> [Item] {
        var removed: [Item] = []
        for (priority, var level) in levels {
            for (user, items) in level.items {
                let keep = items.filter { !predicate($0) }
                removed += items.filter(predicate)
                level.items[user] = keep.isEmpty ? nil : keep
                if keep.isEmpty { level.turn.removeAll { $0 == user } }
            }
            levels[priority] = level.turn.isEmpty ? nil : level
        }
        count -= removed.count
        return removed
    }

    /// Waiting items per user, for status pages.
    public var waitingByUser: [String: Int] {
        var out: [String: Int] = [:]
        for level in levels.values {
            for (user, items) in level.items { out[user, default: 0] += items.count }
        }
        return out
    }
}
