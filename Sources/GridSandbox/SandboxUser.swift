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
    /// `userns` (bubblewrap leaves it open; `-p`: it reads no `BASH_ENV` and imports no function from the job's
    /// environment, since it still runs as root there), `env` taking out the one variable the shell adds (`SHLVL`), then the switch to 65534, dropping every capability and supplementary group.
    static func dropPrefix(closing userns: String) -> [String] {
        [
            "/bin/bash", "-p", "-c", #"eval "exec $1<&-" && shift && exec /usr/bin/env -u SHLVL "$@""#, "campusgrid-sandbox", userns,
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

    /// Gives `folder` and everything in it to the sandbox's user (links themselves, never what they point to; walked by
    /// descriptor, so a folder swapped for a link meanwhile is not followed; a file with other links is left as it is),
    /// so that the job may write there as it could as root. The worker, root, still reads, measures and removes it all.
    /// Only for a folder the worker just made, before anything of a job's runs in it.
    static func handOver(_ folder: String) throws {
        guard grid_hand_over(folder, uid, gid) == 0 else { throw SpawnError(errno: errno, path: folder) }
    }

    /// Runs a probe job through the very path a root worker's jobs take (a fresh user namespace, the folder handed over,
    /// `setpriv`): nil when it ran as 65534 and wrote in its folder; else why not (a root in a user namespace that
    /// cannot map 65534, a read-only `/proc/sys`, a Python that 65534 may not read). Within 30 s.
    static func probe(bwrap: String, arguments: (_ userns: String, _ folder: String) -> [String], script: String) -> String? {
        let dir = NSTemporaryDirectory() + "campusgrid-switch-probe-\(getpid())-\(UUID().uuidString.prefix(8))"
        defer { DiskRule.remove(URL(fileURLWithPath: dir)) }
        do {
            // Open to all, as a job's folder is: bubblewrap enters it as root without capabilities, before the switch.
            guard mkdir(dir, 0o755) == 0 else { throw SpawnError(errno: errno, path: dir) }
            try Data("import os\nopen('ok', 'w').write(str(os.getuid()))\n".utf8).write(to: URL(fileURLWithPath: dir + "/" + script))
            try handOver(dir)
            let userns = try namespace()
            defer { close(userns) }
            // What it says goes to a file beside its folder, for the reason when it fails.
            let said = dir + ".out"
            defer { unlink(said) }
            let out = open(said, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard out >= 0 else { throw SpawnError(errno: errno, path: said) }
            defer { close(out) }
            let process = try ForkedProcess.start([bwrap] + arguments(String(userns), dir), environment: [:]) { argv, envp in
                grid_spawn(bwrap, argv, envp, dir, out, nil, 0, 1, nil, 0, userns)
            }
            guard let status = process.waitForExit(seconds: 30) else {
                kill(process.pid, SIGKILL)
                return "the probe job did not finish within 30 s"
            }
            let wrote = (try? String(contentsOfFile: dir + "/ok", encoding: .utf8)) ?? ""
            guard status == 0, wrote == String(uid) else {
                let output = ((try? String(contentsOfFile: said, encoding: .utf8)) ?? "").split(separator: "\n").suffix(3).joined(separator: " | ")
                return "the probe job ended with status \(status) and wrote \(wrote.isEmpty ? "nothing" : wrote)" + (output.isEmpty ? "" : ": \(output.prefix(400))")
            }
            return nil
        } catch {
            return "\(error)"
        }
    }
}
