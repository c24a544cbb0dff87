import GridProtocol
import NIOCore
import Synchronization

/// What the manager sends one worker on its own (`JOB_ASSIGN`, `CANCEL`, `PEERS`, …), written by that connection's
/// own task (`GridServer`), so that no loop of the manager's (scheduling, lease expiry, the peers' list) ever waits on
/// one worker's socket. A worker that stopped reading froze them all: the scheduler waited on its `JOB_ASSIGN`
/// forever, and lease expiry on its `CANCEL`. Such a worker's queue fills instead, and past its limit the manager
/// closes the connection (the worker connects again, and what it missed is settled as after any reconnect).
final class WorkerSendQueue: Sendable {
    private struct State {
        var frames: [GridFrame] = []
        var head = 0
        var bytes = 0
        var closed = false
        var waiter: CheckedContinuation<GridFrame?, Never>?
    }

    private let state = Mutex(State())
    /// Bytes queued (and not yet taken by the writer) past which the connection is given up.
    let limitBytes: Int
    /// Frames queued past which it is given up.
    let limitFrames: Int

    init(limitBytes: Int = 256 << 20, limitFrames: Int = 4_096) {
        self.limitBytes = limitBytes
        self.limitFrames = limitFrames
    }

    /// What a frame counts as: its bulk bytes and a bound on its line.
    static func size(_ frame: GridFrame) -> Int { (frame.payload?.readableBytes ?? 0) + 4096 }

    /// Queues `frame` for the writer; false when the queue is closed, or was over its limits (it is closed then, and
    /// the caller closes the connection).
    func enqueue(_ frame: GridFrame) -> Bool {
        let size = Self.size(frame)
        let (queued, waiter) = state.withLock { s -> (Bool, CheckedContinuation<GridFrame?, Never>?) in
            guard !s.closed else { return (false, nil) }
            if let waiter = s.waiter {
                s.waiter = nil
                return (true, waiter)
            }
            guard s.bytes + size <= limitBytes, s.frames.count - s.head < limitFrames else {
                s = State(closed: true)
                return (false, nil)
            }
            s.frames.append(frame)
            s.bytes += size
            return (true, nil)
        }
        waiter?.resume(returning: frame)
        return queued
    }

    /// The next frame to write, waiting for one; nil once the queue is closed.
    func next() async -> GridFrame? {
        await withCheckedContinuation { (c: CheckedContinuation<GridFrame?, Never>) in
            let ready: GridFrame?? = state.withLock { s in
                if s.head < s.frames.count {
                    let frame = s.frames[s.head]
                    s.head += 1
                    s.bytes -= Self.size(frame)
                    if s.head == s.frames.count {
                        s.frames.removeAll(keepingCapacity: true)
                        s.head = 0
                    }
                    return .some(frame)
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
        let waiter = state.withLock { s -> CheckedContinuation<GridFrame?, Never>? in
            let w = s.waiter
            s = State(closed: true)
            return w
        }
        waiter?.resume(returning: nil)
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// Writes what is queued to `outbox` until the queue is closed or a write fails (the connection ended).
    func drain(into outbox: GridOutbox) async {
        while let frame = await next() {
            do { try await outbox.write(frame) } catch {
                close()
                return
            }
        }
    }
}
