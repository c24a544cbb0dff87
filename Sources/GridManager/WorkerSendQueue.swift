import Dispatch
import GridCore
import GridProtocol
import NIOCore
import Synchronization

/// What the manager sends one worker on its own (`JOB_ASSIGN`, `CANCEL`, `PEERS`, …), written by that connection's
/// own task (`GridServer`), so that no loop of the manager's (scheduling, lease expiry, the peers' list) ever waits on
/// one worker's socket. A worker that stopped reading froze them all: the scheduler waited on its `JOB_ASSIGN`
/// forever, and lease expiry on its `CANCEL`. Such a worker's queue fills instead, and past its limits the manager
/// closes the connection (the worker connects again, and what it missed is settled as after any reconnect).
///
/// A job's files are not held here: an assignment waits as its message alone, and the writer reads the files from the
/// store just before it sends them. (A worker with 16 slots given 16 jobs of 40 MB each at once would otherwise have
/// passed the byte limit, been cut off, and had its jobs counted lost.)
final class WorkerSendQueue: Sendable {
    /// One thing to send.
    enum Entry: Sendable {
        case frame(GridFrame)
        /// A `JOB_ASSIGN` whose bulk bytes (the job's files) are read when it is written.
        case assign(Msg.JobAssign)
    }

    private struct State {
        var entries: [Entry?] = []
        var head = 0
        var bytes = 0
        var closed = false
        var waiter: CheckedContinuation<Entry?, Never>?
        /// When the writer began the write it is still in (nil: none under way).
        var writingSince: Double?
    }

    private let state = Mutex(State())
    /// Bytes queued (and not yet taken by the writer) past which the connection is given up.
    let limitBytes: Int
    /// Entries queued past which it is given up.
    let limitEntries: Int

    /// How long one write may take before the next thing queued gives the connection up: a worker that stopped
    /// reading stops the write it is in (its socket is full), however little is queued behind it.
    let stallSeconds: Double

    init(limitBytes: Int = 256 << 20, limitEntries: Int = 4_096, stallSeconds: Double = 120) {
        self.limitBytes = limitBytes
        self.limitEntries = limitEntries
        self.stallSeconds = stallSeconds
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    /// What an entry counts as while it waits: its bulk bytes and a bound on its line.
    static func size(_ entry: Entry) -> Int {
        switch entry {
        case .frame(let frame): (frame.payload?.readableBytes ?? 0) + 4096
        case .assign(let assign): assign.files.reduce(4096) { $0 + $1.name.utf8.count + 64 }
        }
    }

    /// Queues `entry` for the writer; false when the queue is closed, or was over its limits (it is closed then, and
    /// the caller closes the connection).
    func enqueue(_ entry: Entry) -> Bool {
        let size = Self.size(entry)
        let (queued, waiter) = state.withLock { s -> (Bool, CheckedContinuation<Entry?, Never>?) in
            guard !s.closed else { return (false, nil) }
            if let waiter = s.waiter {
                s.waiter = nil
                return (true, waiter)
            }
            let stalled = s.writingSince.map { Self.now() - $0 > stallSeconds } ?? false
            guard s.bytes + size <= limitBytes, s.entries.count - s.head < limitEntries, !stalled else {
                s = State(closed: true)
                return (false, nil)
            }
            s.entries.append(entry)
            s.bytes += size
            return (true, nil)
        }
        waiter?.resume(returning: entry)
        return queued
    }

    func enqueue(_ frame: GridFrame) -> Bool { enqueue(.frame(frame)) }

    /// The next entry to write, waiting for one; nil once the queue is closed.
    func next() async -> Entry? {
        await withCheckedContinuation { (c: CheckedContinuation<Entry?, Never>) in
            let ready: Entry?? = state.withLock { s in
                if s.head < s.entries.count, let entry = s.entries[s.head] {
                    // Let go of it here (a sent job's bytes must not stay behind in the array).
                    s.entries[s.head] = nil
                    s.head += 1
                    s.bytes -= Self.size(entry)
                    if s.head == s.entries.count {
                        s.entries.removeAll(keepingCapacity: true)
                        s.head = 0
                    } else if s.head >= 1_024, s.head * 2 >= s.entries.count {
                        s.entries.removeFirst(s.head)
                        s.head = 0
                    }
                    return .some(entry)
                }
                if s.closed { return .some(nil) }
                s.waiter = c
                return nil
            }
            if let ready { c.resume(returning: ready) }
        }
    }

    /// Drops what is queued and ends the writer (`next()` gives nil).
    func close() {
        let waiter = state.withLock { s -> CheckedContinuation<Entry?, Never>? in
            let w = s.waiter
            s = State(closed: true)
            return w
        }
        waiter?.resume(returning: nil)
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// Entries waiting (not yet taken by the writer).
    var waiting: Int { state.withLock { $0.entries.count - $0.head } }

    /// Writes what is queued to `outbox` until the queue is closed or a write fails (the connection ended); a job's
    /// files come from `files` as its assignment is written (nil: the job is gone, nothing is sent).
    func drain(into outbox: GridOutbox, files: @Sendable (JobID) async -> ByteBuffer?) async {
        while let entry = await next() {
            let frame: GridFrame
            switch entry {
            case .frame(let f): frame = f
            case .assign(let assign):
                guard let payload = await files(assign.job.jobId) else { continue }
                frame = GridFrame(.jobAssign(assign), payload: payload)
            }
            state.withLock { $0.writingSince = Self.now() }
            do { try await outbox.write(frame) } catch {
                close()
                return
            }
            state.withLock { $0.writingSince = nil }
        }
    }
}
