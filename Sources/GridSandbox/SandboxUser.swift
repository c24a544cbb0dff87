import CGridSpawn
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Who a root worker's bubblewrap sandboxes run as: uid and gid 65534 outside as well as inside, never root.
///
/// bubblewrap started by root maps the sandbox's user to root outside: a job that got out of its sandbox (a kernel
/// bug), or reached a file the sandbox shares (a GPU's device node), would be root on the contributor's machine. So
/// a root worker starts each sandbox in a user namespace of its own (`grid_sandbox_userns`) that maps uid 0 to root,
/// for bubblewrap to set the sandbox up with root's reach (the Python install and the worker's folders may be root's
/// alone), and 65534 to 65534. The job's first programs are a shell that closes that namespace's descriptor and `setpriv`, which switches to 65534 (with the only three
/// capabilities bubblewrap kept, then none) before Python starts; the job's folder is handed to 65534 first. No user
/// namespace can be made inside (bubblewrap's `--disable-userns` needs `--unshare-user`, which `--userns` excludes).
public enum SandboxUser {
    public static let uid: UInt32 = 65534
    public static let gid: UInt32 = 65534
    /// util-linux's `setpriv` (essential on Debian).
    static let setpriv = "/usr/bin/setpriv"

    /// What a root worker's sandbox runs before the job's program: a shell that closes the user namespace's descriptor
    /// `userns` (bubblewrap leaves it open), `env` taking out the one variable the shell adds (`SHLVL`), then the switch to 65534, dropping every capability and supplementary group.
    static func dropPrefix(closing userns: String) -> [String] {
        [
            "/bin/bash", "-c", #"eval "exec $1<&-" && shift && exec /usr/bin/env -u SHLVL "$@""#, "campusgrid-sandbox", userns,
            setpriv, "--reuid=\(uid)", "--regid=\(gid)", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--",
        ]
    }

    /// The capabilities bubblewrap keeps for `setpriv` (it drops the rest): to switch user and group, and to empty the
    /// bounding set.
    static let switchCapabilities = ["CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"]

    /// Whether sandboxes started by this process switch to 65534: it is root and has `setpriv`.
    static var switches: Bool { geteuid() == 0 && FileManager.default.isExecutableFile(atPath: setpriv) }

    /// A fresh user namespace for one sandbox (a close-on-exec descriptor, for `--userns`; the caller closes it once
    /// the sandbox's first process has exec'd).
    static func namespace() throws -> Int32 {
        let fd = grid_sandbox_userns(uid, gid)
        guard fd >= 0 else { throw SpawnError(errno: errno, path: "a sandbox's user namespace") }
        return fd
    }

    /// Gives `folder` and everything in it to the sandbox's user (links themselves, never what they point to), so that
    /// the job may write there as it could as root. The worker, root, still reads, measures and removes it all.
    static func handOver(_ folder: String) throws {
        guard grid_hand_over(folder, uid, gid) == 0 else { throw SpawnError(errno: errno, path: folder) }
    }
}
