import Synchronization

/// Wakes a waiting loop early: `wait(upTo:)` returns when `ring()` is called (or was called while nobody waited),
/// after `seconds`, or when the waiting task is cancelled; it says which.
///
/// For a loop that works on a period and also on demand (the worker's load reports): it sleeps the whole period
/// instead of waking every few milliseconds to look at a flag, so an idle worker on a contributor's laptop stays idle.
/// A ring wakes every wait in progress; one that nobody waited for is kept for the next wait (rings do not add up).
/// Each wait has a timer of its own, which can end that wait only: a wait that outlives another (a loop of an old
/// connection still ending while the new one's begins) is never lost.
public final class Doorbell: Sendable {
    public enum Woken: Sendable, Hashable {
        case rung
        case timedOut
        case cancelled
    }

    private struct State {
        var rung = false
        var waiters: [Int: CheckedContinuation<Woken, Never>] = [:]
        /// Waits that began and have not returned.
        var active: Set<Int> = []
        /// Waits of `active` whose timer fired (or was cancelled) before they began to wait.
        var early: [Int: Woken] = [:]
        var nextId = 0
    }
    private let state = Mutex(State())

    public init() {}

    /// Wakes every wait in progress, or the next wait if none is in progress.
    public func ring() {
        let woken = state.withLock { s -> [CheckedContinuation<Woken, Never>] in
            guard !s.waiters.isEmpty else {
                s.rung = true
                return []
            }
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for w in woken { w.resume(returning: .rung) }
    }

    /// Waits for a ring, at most `seconds` (a time that is not finite and positive waits not at all).
    public func wait(upTo seconds: Double) async -> Woken {
        let id = state.withLock { s -> Int in
            s.nextId &+= 1
            s.active.insert(s.nextId)
            return s.nextId
        }
        defer {
            state.withLock { s in
                s.active.remove(id)
                s.early[id] = nil
            }
        }
        let nanoseconds: UInt64 = seconds.isFinite && seconds > 0 ? UInt64(min(seconds, 86_400) * 1e9) : 0
        return await withTaskGroup(of: Void.self) { group in
            // The timer: ends this wait (and only this one) when it fires or when the waiting task is cancelled.
            group.addTask {
                let woken: Woken
                do {
                    try await Task.sleep(nanoseconds: nanoseconds)
                    woken = .timedOut
                } catch {
                    woken = .cancelled
                }
                self.end(id, woken)
            }
            let woken = await withCheckedContinuation { (c: CheckedContinuation<Woken, Never>) in
                let now = state.withLock { s -> Woken? in
                    if let early = s.early.removeValue(forKey: id) { return early }
                    if s.rung {
                        s.rung = false
                        return .rung
                    }
                    s.waiters[id] = c
                    return nil
                }
                if let now { c.resume(returning: now) }
            }
            group.cancelAll()
            return woken
        }
    }

    /// Ends wait `id` with `woken`: now if it waits, or as soon as it begins to (its timer may fire first). A wait
    /// that was rung meanwhile keeps its answer (the end is dropped as the wait returns).
    private func end(_ id: Int, _ woken: Woken) {
        let waiter = state.withLock { s -> CheckedContinuation<Woken, Never>? in
            if let w = s.waiters.removeValue(forKey: id) { return w }
            if s.active.contains(id) { s.early[id] = woken }
            return nil
        }
        waiter?.resume(returning: woken)
    }
}
