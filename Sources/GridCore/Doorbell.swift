import Synchronization

/// Wakes one waiting loop early: `wait(upTo:)` returns when `ring()` is called (or was called since the last wait
/// returned), after `seconds`, or when the waiting task is cancelled; it says which.
///
/// For a loop that works on a period and also on demand (the worker's load reports): it sleeps the whole period
/// instead of waking every few milliseconds to look at a flag, so an idle worker on a contributor's laptop stays idle.
public final class Doorbell: Sendable {
    public enum Woken: Sendable, Hashable {
        case rung
        case timedOut
        case cancelled
    }

    private struct State {
        var rung = false
        var waiter: (id: Int, continuation: CheckedContinuation<Woken, Never>)?
        /// A wait's timer that fired (or was cancelled) before the wait began to wait.
        var early: (id: Int, woken: Woken)?
        var nextId = 0
    }
    private let state = Mutex(State())

    public init() {}

    /// Wakes the waiter, or the next wait if none waits now (rings do not add up: one wakes one wait).
    public func ring() {
        let waiter = state.withLock { s -> CheckedContinuation<Woken, Never>? in
            guard let w = s.waiter else {
                s.rung = true
                return nil
            }
            s.waiter = nil
            return w.continuation
        }
        waiter?.resume(returning: .rung)
    }

    /// Waits for a ring, at most `seconds` (a non-finite or negative time waits not at all). One waiter at a time.
    public func wait(upTo seconds: Double) async -> Woken {
        let id = state.withLock { s -> Int in
            s.nextId &+= 1
            return s.nextId
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
                    if s.rung {
                        s.rung = false
                        return .rung
                    }
                    if let early = s.early, early.id == id {
                        s.early = nil
                        return early.woken
                    }
                    s.waiter = (id, c)
                    return nil
                }
                if let now { c.resume(returning: now) }
            }
            group.cancelAll()
            return woken
        }
    }

    /// Ends wait `id` with `woken`: now if it waits, or as soon as it begins to (its timer may fire first).
    private func end(_ id: Int, _ woken: Woken) {
        let waiter = state.withLock { s -> CheckedContinuation<Woken, Never>? in
            guard let w = s.waiter else {
                s.early = (id, woken)
                return nil
            }
            guard w.id == id else { return nil }
            s.waiter = nil
            return w.continuation
        }
        waiter?.resume(returning: woken)
    }
}
