/// When a worker checks that its manager still answers, and when it gives up on one that went silent (pure).
///
/// A manager frozen with its connection open (SIGSTOP, a paused VM) sends nothing and closes nothing: without this the
/// worker stays on it for as long as it is frozen, while another manager already leads (issue 16). The worker pings
/// every `pingEvery` seconds; any frame from the manager counts as an answer; silence for `giveUpAfter` seconds closes
/// the link, and the worker connects to whichever manager leads. The bound is generous, so that a slow manager on a
/// loaded machine is not taken for a dead one.
public struct ManagerSilence: Sendable, Hashable {
    public let pingEvery: Double
    public let giveUpAfter: Double
    public private(set) var lastHeard: Double
    private var lastPing: Double

    public enum Action: Sendable, Hashable {
        case none
        case ping
        case giveUp(silentFor: Double)
    }

    /// `heartbeat`: the manager's heartbeat period (as it said in `HELLO_OK`), clamped to 0.1…30 s.
    public init(heartbeat: Double, now: Double) {
        let beat = heartbeat.isFinite ? min(max(heartbeat, 0.1), 30) : 1
        pingEvery = min(max(beat * 5, 1), 30)
        giveUpAfter = max(15, beat * 10)
        let start = now.isFinite ? now : 0
        lastHeard = start
        lastPing = start
    }

    /// A frame came from the manager.
    public mutating func heard(now: Double) {
        guard now.isFinite else { return }
        lastHeard = max(lastHeard, now)
    }

    /// The longest spell of frames on their way in, with none handled meanwhile, that counts as hearing the manager
    /// (`tick(now:busy:progress:)`): the deadline of the largest frame (`FrameLimits.frameDeadline`, about 18 minutes for
    /// 64 MiB).
    public static let busyMost = FrameLimits().frameDeadlineSeconds(bulk: FrameLimits().maxBulkBytes)
    /// Since when frames have been on their way in, at the ticks that saw it, and how many were handled then (nil: none).
    private var busyStart: Double?
    private var busyProgress: UInt64 = 0

    /// What to do at `now`. A clock that went backwards counts as fresh (never a give-up); a non-finite one decides nothing.
    ///
    /// `busy`: a frame from the manager is on its way in, its bytes still coming (`InboundFlow.busy(quiet:)`): the
    /// manager is heard, for at most `busyMost` without a frame handled (`progress`: how many were), and again when it
    /// is in. Before, a `JOB_ASSIGN` whose bundle (up to 48 MiB) took longer than the silence bound to arrive on a slow
    /// link was taken for a frozen manager: the worker left mid-frame, came back without the job, and the job was given
    /// to it again, each time an interruption. A manager that froze half way through a frame sends no more bytes: it is
    /// not busy, and is given up as before.
    public mutating func tick(now: Double, busy: Bool = false, progress: UInt64 = 0) -> Action {
        guard now.isFinite else { return .none }
        if busy {
            let start = busyProgress == progress ? busyStart ?? now : now
            busyStart = start
            busyProgress = progress
            if now - start <= Self.busyMost { heard(now: now) }
        } else if busyStart != nil {
            busyStart = nil
            heard(now: now)
        }
        if now < lastHeard || now < lastPing {
            lastHeard = now
            lastPing = now
            return .none
        }
        let silent = now - lastHeard
        if silent >= giveUpAfter { return .giveUp(silentFor: silent) }
        if now - lastPing >= pingEvery {
            lastPing = now
            return .ping
        }
        return .none
    }
}
