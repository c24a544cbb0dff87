/// How busy a peer is with jobs and function tasks, and whether a task is worth moving from one peer to another: one
/// rule for the manager that names the best peer (`PeerChoice`) and the peer that asked it (`TaskRouting`), which
/// checks the answer against its own load as it is now (the manager knows it only from its last report). Pure.
public enum TaskLoad {
    /// Work per slot: `jobs + tasks` over `slots` (at least 1); never traps, whatever the counts.
    public static func busy(jobs: Int, tasks: Int, slots: Int) -> Double {
        (Double(jobs) + Double(tasks)) / Double(max(1, slots))
    }

    /// Whether a task of a peer with `mine` work per slot is better off on one with `theirs`: that one has a free
    /// slot (less than one task per slot), or clearly less work: at least one task per slot less, and at most three
    /// quarters as much. A number that is not finite counts as infinitely busy.
    ///
    /// Before, one task per slot less was enough: two peers given tasks at the same pace (the task bench: 32 in flight
    /// on each) differ by a task or two at every load report, so a third of their tasks went from one queue to the
    /// other and back (a hop, a signature, its check and two encodings of the task each; Ed25519 alone was 6% of the
    /// CPU) to wait as long there. A queue a quarter shorter still draws work (Ray spills a task back only to a node
    /// with room; here a clearly shorter queue counts too).
    public static func worthForwarding(mine: Double, theirs: Double) -> Bool {
        let theirs = theirs.isFinite ? theirs : .infinity
        let mine = mine.isFinite ? mine : .infinity
        return theirs < 1 || theirs <= min(mine - 1, mine * 0.75)
    }
}
