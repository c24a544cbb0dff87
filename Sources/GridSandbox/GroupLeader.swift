import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A child that leads its own process group (it was started with `setsid`), whose group may be signalled for as long
/// as the child is not reaped, and never after.
///
/// A process group's id is its leader's pid. Once the leader is reaped and the group's last member is gone, the kernel
/// may give that number to any new process, which may lead a group of its own: a `kill(-pgid)` sent "to be sure" after
/// the reaping can kill an unrelated program of the contributor's (on a busy test machine it killed other tests'
/// workers). So the waiter first waits for the exit without reaping (`waitid(…, WNOWAIT)`: the zombie keeps the id
/// reserved), kills what is left of the group, and only then reaps; every other group signal goes through
/// `signalGroup`, under the same lock, and is dropped once the leader is reaped.
final class GroupLeader: Sendable {
    let pid: pid_t
    private let reaped = Mutex(false)

    init(pid: pid_t) { self.pid = pid }

    /// Sends `signal` to the leader's group if the leader is not reaped yet; false (and nothing sent) if it is.
    @discardableResult
    func signalGroup(_ signal: Int32) -> Bool {
        reaped.withLock { done in
            guard !done else { return false }
            kill(-pid, signal)
            return true
        }
    }

    /// Blocks until the leader exits; SIGKILLs what is left of its group while the id is still reserved; reaps it.
    /// Returns the wait status and the resource usage of the leader and its reaped descendants. Call once.
    func waitKillGroupAndReap() -> (status: Int32, usage: rusage) {
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR {}
        return reaped.withLock { done in
            kill(-pid, SIGKILL)
            done = true
            var status: Int32 = 0
            var usage = rusage()
            while wait4(pid, &status, 0, &usage) < 0 {
                guard errno == EINTR else {
                    status = 0x7f00  // reaped elsewhere: the exit status is unknown
                    break
                }
            }
            return (status, usage)
        }
    }
}
