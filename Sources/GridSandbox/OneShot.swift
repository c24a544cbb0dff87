import Synchronization

/// A value set once and awaited by any number of tasks.
final class OneShot<Value: Sendable>: Sendable {
    private let state = Mutex<(value: Value?, waiters: [CheckedContinuation<Value, Never>])>((nil, []))

    /// Sets the value (the first call wins) and wakes every waiter.
    func fulfil(_ value: Value) {
        let waiters = state.withLock { s -> [CheckedContinuation<Value, Never>] in
            guard s.value == nil else { return [] }
            s.value = value
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume(returning: value) }
    }

    var value: Value? { state.withLock { $0.value } }

    func wait() async -> Value {
        await withCheckedContinuation { c in
            let ready = state.withLock { s -> Value? in
                if let v = s.value { return v }
                s.waiters.append(c)
                return nil
            }
            if let ready { c.resume(returning: ready) }
        }
    }
}
