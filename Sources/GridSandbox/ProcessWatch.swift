import CGridSpawn
import Foundation

/// Waits for another process to end, without polling: a pidfd (Linux 5.3+) becomes readable when its process ends,
/// whoever its parent is. `campusgrid up`, the bench and the test harness start managers and workers with
/// `--parent-pid`, so that a child outlives neither a SIGKILLed starter nor one that reached it through a launcher
/// (`ip netns exec`, `runuser`), whose own parent is the launcher.
public enum ProcessWatch {
    /// Calls `ended` on a thread of its own once process `pid` has ended (at once if there is no such process, and for
    /// 0 or a negative number, which name process groups, not a process). If pidfds are not available, checks every
    /// half second whether `pid` still exists.
    public static func whenEnded(_ pid: Int32, _ ended: @escaping @Sendable () -> Void) {
        // The one thread a watch needs: it blocks in poll until the watched process ends (documented exception to
        // "every task owned": a detached thread, which lives as long as the process it serves).
        Thread.detachNewThread {
            let fd = grid_pidfd_open(pid)
            if fd >= 0 {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                while poll(&p, 1, -1) < 0 && errno == EINTR {}
                close(fd)
            } else if errno != ESRCH {
                while exists(pid) { usleep(500_000) }
            }
            ended()
        }
    }

    /// Whether process `pid` exists (a process of another user counts: the kernel answers EPERM, not ESRCH).
    public static func exists(_ pid: Int32) -> Bool {
        guard pid > 0 else { return false }
        return kill(pid, 0) == 0 || errno == EPERM
    }
}
