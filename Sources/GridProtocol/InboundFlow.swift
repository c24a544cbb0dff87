import Synchronization

/// What a listener knows of the frames coming in on one connection: whether one is being read now (its first bytes
/// in, not yet whole, and bytes still coming), or has been read and not yet handled; and how many it has handled. The
/// manager counts a worker whose connection is busy so as heard from (`LeaseTable.expire(now:busy:revokedHold:)`,
/// `BusySpells`); a worker its manager (`ManagerSilence`).
///
/// Before, only a `LOAD_UPDATE` renewed a worker's liveness and leases, and a worker's frames go one after another on
/// its connection: a `JOB_DONE` carrying a run's outputs (up to 64 MiB) that took longer than a lease period to arrive
/// (a laptop on a slow link) held the heartbeats behind it, the worker was dropped with the frame half read, and the
/// run it was reporting was taken away and run again; a cancelled run's report that arrived so ended the job
/// cancelled and refunded, the honest worker's whole run unpaid.
///
/// The decoder says `reading(more:)` whenever it waits for more bytes and `decoded()` for each frame it passes on; the
/// shell `handled()` after each frame (an `.invalid` one too). Thread-safe: the decoder runs on the channel's event
/// loop, the shell and its reader elsewhere.
public final class InboundFlow: Sendable {
    private struct State {
        var reading = false
        var lastBytes: ContinuousClock.Instant?
        var unhandled = 0
        var handled: UInt64 = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// The decoder waits for more bytes: `more` when part of a frame is in (bytes came just now), false when nothing is
    /// (the last frame was whole, or the bytes were only blank lines the parser skipped).
    public func reading(more: Bool) {
        let now = ContinuousClock.now
        state.withLock {
            $0.reading = more
            if more { $0.lastBytes = now }
        }
    }

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
    public func handled() {
        state.withLock {
            $0.unhandled = max(0, $0.unhandled - 1)
            $0.handled &+= 1
        }
    }

    /// Whether a frame is being read whose latest bytes came within `quiet` seconds (a sender that stopped half way,
    /// a frozen manager, a laptop asleep, is not busy), or (`waiting`) frames wait for the shell, now. The worker asks
    /// without `waiting`: frames it has not taken yet say nothing of a manager that froze since.
    public func busy(quiet: Double, waiting: Bool = true) -> Bool {
        let now = ContinuousClock.now
        return state.withLock { s in
            if waiting, s.unhandled > 0 { return true }
            guard s.reading, let last = s.lastBytes, quiet.isFinite else { return false }
            let d = now - last
            return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 <= quiet
        }
    }

    /// How many frames the shell has handled: a spell of busy frames that makes progress is no stuck one (`BusySpells`).
    public var progress: UInt64 { state.withLock { $0.handled } }
}
