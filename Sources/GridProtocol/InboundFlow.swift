import Synchronization

/// What a listener knows of the frames coming in on one connection: whether one is being read now (its first bytes
/// in, not yet whole) or has been read and not yet handled. The manager counts a worker whose connection is busy so as
/// heard from (`LeaseTable.expire(now:busy:revokedHold:)`).
///
/// Before, only a `LOAD_UPDATE` renewed a worker's liveness and leases, and a worker's frames go one after another on
/// its connection: a `JOB_DONE` carrying a run's outputs (up to 64 MiB) that took longer than a lease period to arrive
/// (a laptop on a slow link) held the heartbeats behind it, the worker was dropped with the frame half read, and the
/// run it was reporting was taken away and run again; a cancelled run's report that arrived so ended the job
/// cancelled and refunded, the honest worker's whole run unpaid.
///
/// The decoder says `reading()` and `decoded()`, the shell `handled()` after each frame (an `.invalid` one too).
/// Thread-safe: the decoder runs on the channel's event loop, the shell and its reader elsewhere.
public final class InboundFlow: Sendable {
    private struct State {
        var reading = false
        var unhandled = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// A frame's first bytes are in; it is not whole yet.
    public func reading() { state.withLock { $0.reading = true } }

    /// A frame is whole and passed on to the shell (or refused: a refusal is passed on too, as `.invalid`).
    public func decoded() {
        state.withLock {
            $0.reading = false
            $0.unhandled += 1
        }
    }

    /// Nothing more is read (the decoder was removed: the connection closed).
    public func stoppedReading() { state.withLock { $0.reading = false } }

    /// The shell handled one frame it was passed (never below none).
    public func handled() { state.withLock { $0.unhandled = max(0, $0.unhandled - 1) } }

    /// Whether a frame is being read, or waits for the shell, now.
    public var busy: Bool { state.withLock { $0.reading || $0.unhandled > 0 } }
}
