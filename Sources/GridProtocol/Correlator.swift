/// Requests in flight over one connection, matched to their replies by id (pure; issue 14): the one correlator of
/// every client of the protocol (a worker's requests to its manager, a peer link's requests to a peer).
///
/// A request is `begin`-ed (an id, a deadline), then its asker waits (`wait`) with a `Waiter` (a continuation). Its
/// reply, failure or timeout (`resolve`) goes to the waiter, or is kept until the asker waits: a reply may come before
/// its asker waits. Only the first outcome of a request counts; a reply to an id not in flight (finished, never sent,
/// forged) is ignored. `close` fails every request in flight and refuses new ones. The caller resumes the waiters it
/// is handed, outside whatever lock or actor keeps this.
public struct Correlator<Outcome, Waiter> {
    fileprivate enum Slot {
        case sent
        case waiting(Waiter)
        case answered(Outcome)
    }

    fileprivate struct Entry {
        var slot: Slot
        var deadline: Double
        var label: String
    }

    private var entries: [Int: Entry] = [:]
    private var nextId: Int
    /// Why the connection closed: every request in flight failed with it, and every new one does.
    public private(set) var closed: Outcome?

    /// `firstId`: the first id handed out (ids grow by one; other ids, e.g. pings', may be kept out of its way).
    public init(firstId: Int = 1) {
        nextId = max(1, firstId)
    }

    /// A new request: its id, or the closing outcome when the connection is closed. `deadline` on the caller's clock
    /// (seconds); `label` names the request in a timeout message.
    public mutating func begin(deadline: Double, label: String) -> Result<Int, ClosedError> {
        if let closed { return .failure(ClosedError(outcome: closed)) }
        let id = nextId
        nextId = nextId == .max ? 1 : nextId + 1
        entries[id] = Entry(slot: .sent, deadline: deadline.isNaN ? -.infinity : deadline, label: label)
        return .success(id)
    }

    public struct ClosedError: Error {
        public var outcome: Outcome
    }

    /// An id no request uses now or will soon (e.g. for a ping, whose answer is not waited for).
    public mutating func reserveId() -> Int {
        let id = nextId
        nextId = nextId == .max ? 1 : nextId + 1
        return id
    }

    /// The asker waits: its outcome if it came already (the request is then finished), else nil and `waiter` is kept.
    /// A request not in flight answers `missing`.
    public mutating func wait(_ id: Int, _ waiter: Waiter, missing: Outcome) -> Outcome? {
        guard let entry = entries[id] else { return closed ?? missing }
        switch entry.slot {
        case .answered(let outcome):
            entries[id] = nil
            return outcome
        case .sent:
            entries[id]?.slot = .waiting(waiter)
            return nil
        case .waiting:
            return nil
        }
    }

    /// The outcome of request `id`: the waiter to resume with it (the request is then finished), or nil (kept for the
    /// asker, or ignored: not in flight, or answered already).
    public mutating func resolve(_ id: Int, _ outcome: Outcome) -> Waiter? {
        guard let entry = entries[id] else { return nil }
        switch entry.slot {
        case .sent:
            entries[id]?.slot = .answered(outcome)
            return nil
        case .waiting(let waiter):
            entries[id] = nil
            return waiter
        case .answered:
            return nil
        }
    }

    /// The asker is done with `id` (it got its outcome, or gave up): a late reply is ignored.
    public mutating func finish(_ id: Int) {
        entries[id] = nil
    }

    /// Whether `id` is a request in flight (a reply to it is a reply, not a message of its own).
    public func isInFlight(_ id: Int) -> Bool { entries[id] != nil }

    public var inFlight: Int { entries.count }

    /// Requests whose deadline is at or before `now` and not answered yet: `(id, label)`, in id order. Each is to be
    /// resolved with a timeout.
    public func overdue(now: Double) -> [(id: Int, label: String)] {
        entries.filter { entry in
            if case .answered = entry.value.slot { return false }
            return !(now < entry.value.deadline)
        }.map { (id: $0.key, label: $0.value.label) }.sorted { $0.id < $1.id }
    }

    /// The connection closed with `outcome`: every request in flight fails with it (the waiters to resume are
    /// returned; the others get it when they wait), and new requests are refused. Only the first close counts.
    public mutating func close(_ outcome: Outcome) -> [Waiter] {
        if closed == nil { closed = outcome }
        return failAll(closed ?? outcome)
    }

    /// Fails every request in flight with `outcome` (its waiters are returned), without closing: the next connection
    /// takes new requests.
    public mutating func failAll(_ outcome: Outcome) -> [Waiter] {
        var waiters: [Waiter] = []
        for (id, entry) in entries {
            switch entry.slot {
            case .waiting(let w):
                waiters.append(w)
                entries[id] = nil
            case .sent:
                entries[id]?.slot = .answered(outcome)
            case .answered:
                break
            }
        }
        return waiters
    }
}

extension Correlator: Sendable where Outcome: Sendable, Waiter: Sendable {}
extension Correlator.Slot: Sendable where Outcome: Sendable, Waiter: Sendable {}
extension Correlator.Entry: Sendable where Outcome: Sendable, Waiter: Sendable {}
