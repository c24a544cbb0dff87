import Foundation
import GridCore

#if canImport(Glibc)
import Glibc
#endif

/// A job's interpreter started ahead of its job, in the job's sandbox (issue 17): a warm standby.
///
/// A standby (`Standby`) is forked ahead into a fresh cgroup. A warm one goes on at once: it becomes bubblewrap with
/// the sandbox a plain job gets (every namespace, the read-only binds, the job's folder at `/job`), and Python starts
/// there with `-u`, as a job's does, running `launcher` instead of a script. The launcher waits on a FIFO in its `/job`
/// (`fifoName`) for the job: the script's name and the job's whole environment. It then takes that environment, makes
/// the script the `__main__` module as `python -u SCRIPT` would (its `sys.argv`, `sys.path[0]`, `__file__`; a traceback
/// without the launcher's frame), and runs it. What runs is the job's code, alone, in a process that ran nothing else:
/// the interpreter's start-up (about 35 ms here, most of a small job's run) is paid before the job arrives. The worker
/// holds the FIFO's only write end (`openFeed`): a launcher whose worker died reads its end and exits, and its sandbox
/// ends with it.
///
/// Only a job whose Python start-up is the same as the launcher's is started warm: no packages (their environment is
/// bound at start), no GPUs (their devices are bound at start), no setting of its own that Python reads as it starts
/// (`PYTHON*`, the locale, `HOME`, `PATH`, `TMPDIR`). Any other job starts cold, as before.
enum WarmStart {
    /// The FIFO in a warm standby's folder that the job's start request is written to; the launcher removes it.
    static let fifoName = ".campusgrid-start"
    /// Made by the launcher once it has the FIFO open (so the worker never waits on a launcher still starting: such a
    /// standby is left for a later job); removed with the FIFO.
    static let readyName = ".campusgrid-ready"

    /// Whether the launcher in `folder` is (about to be) waiting on its FIFO.
    static func isReady(_ folder: String) -> Bool { access(folder + "/" + readyName, F_OK) == 0 }

    /// Names of warm standby folders (in the worker's jobs folder): `.warm-PID-ID`.
    static let folderPrefix = ".warm-"

    /// The environment a warm interpreter starts with: what every job's start-up sees (`JobEnvironment.startup`).
    static func startupEnvironment() -> [String: String] { JobEnvironment.startup(home: BwrapRunner.jobDirectory) }

    /// Whether a job with this environment, packages and GPUs starts the same in a warm interpreter as in its own
    /// (pure): every variable Python reads as it starts has the launcher's value, and nothing is bound for it alone.
    static func eligible(environment: [String: String], pythonEnvironment: String?, gpus: Int, script: String, files: [String]) -> Bool {
        guard pythonEnvironment == nil, gpus == 0, !script.isEmpty, !script.utf8.contains(0), !files.contains(fifoName), !files.contains(readyName)
        else { return false }
        let startup = startupEnvironment()
        for (key, value) in environment {
            if let fixed = startup[key] {
                if fixed != value { return false }
            } else if key.hasPrefix("PYTHON") || key.hasPrefix("LC_") || key == "LANGUAGE" {
                return false
            }
        }
        return startup.allSatisfy { environment[$0.key] == $0.value }
    }

    /// The start request (pure): the script's name, then each `KEY=VALUE` of the environment, NUL-separated.
    static func request(script: String, environment: [String: String]) -> [UInt8] {
        var out = Array(script.utf8)
        for key in environment.keys.sorted() {
            out.append(0)
            out += Array("\(key)=\(environment[key]!)".utf8)
        }
        return out
    }

    /// Moves every entry of the job's folder `scratch` into the warm standby's folder `warm`, then the warm folder to
    /// `scratch`'s path, so the folder the sandbox has at `/job` is the job's, under the job's name. Renames only (the
    /// same file system). On a failure everything is put back as it was and false is returned.
    static func adopt(scratch: String, warm: String) -> Bool {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: scratch) else { return false }
        var moved: [String] = []
        func undo() {
            for name in moved.reversed() { rename(warm + "/" + name, scratch + "/" + name) }
        }
        for name in entries {
            guard rename(scratch + "/" + name, warm + "/" + name) == 0 else {
                undo()
                return false
            }
            moved.append(name)
        }
        guard rmdir(scratch) == 0 else {
            undo()
            return false
        }
        guard rename(warm, scratch) == 0 else {
            mkdir(scratch, 0o755)
            undo()
            return false
        }
        return true
    }

    /// Opens the FIFO at `path` for writing before any reader has it (through a read end of this process's own, closed
    /// at once): the feed, a warm standby's only write end, held by the worker alone (close-on-exec; a standby closes
    /// what it inherits). The launcher opens its end without waiting, and reads the job's request on it, then its end.
    /// When the worker dies or discards the standby before sending, the launcher reads only the end, and exits: so a
    /// launcher whose sandbox outlived the worker (bubblewrap arms its death signal only once the sandbox is set up) does
    /// not wait for ever. Nil, with `errno` set, if it could not be opened.
    static func openFeed(_ path: String) -> Int32? {
        let reader = open(path, O_RDWR | O_CLOEXEC)
        guard reader >= 0 else { return nil }
        defer { close(reader) }
        let fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0 else {
            let e = errno
            close(fd)
            errno = e
            return nil
        }
        return fd
    }

    /// Waits (at most `seconds`, and only while `alive()`) until the launcher in `folder` has its FIFO open for reading
    /// (it says so with `readyName`, made just after); false if it never did. A launcher that has it open runs in its
    /// sandbox, its folder bound at `/job`: only then may the folder be renamed to the job's, and its request be written
    /// (with no reader yet, the write would fail).
    static func waitUntilReading(_ folder: String, seconds: Double, alive: () -> Bool) -> Bool {
        let deadline = JobExecution.monotonic() + seconds
        while !isReady(folder) {
            guard JobExecution.monotonic() < deadline, alive() else { return false }
            usleep(500)
        }
        return true
    }

    /// Writes `request` whole to `fd` (a standby's feed) and closes it; false if the write failed.
    static func send(_ request: [UInt8], to fd: Int32) -> Bool {
        defer { close(fd) }
        // A reader that died meanwhile fails the write with EPIPE (the worker ignores SIGPIPE, as `FunctionPool` does).
        signal(SIGPIPE, SIG_IGN)
        return request.withUnsafeBytes { raw -> Bool in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return false }
                offset += n
            }
            return true
        }
    }

    /// Removes the warm folders (`.warm-PID-…`) in `jobs` whose worker PID is gone (a worker that was killed).
    static func sweep(jobs: String) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: jobs)) ?? [] where name.hasPrefix(folderPrefix) {
            guard let pid = name.dropFirst(folderPrefix.count).split(separator: "-").first.flatMap({ pid_t($0) }), pid > 0 else { continue }
            if kill(pid, 0) == 0 || errno == EPERM { continue }
            try? FileManager.default.removeItem(atPath: jobs + "/" + name)
        }
    }

    /// The launcher, run as `python -u -c launcher` in the sandbox at `/job`. It imports nothing that a plain start
    /// does not (`os`, `sys`, `builtins`), and leaves no name of its own in the job's `__main__`.
    static let launcher = #"""
import os, sys, builtins
def _campusgrid_run():
    fifo = "/job/.campusgrid-start"
    ready = "/job/.campusgrid-ready"
    # The worker holds the only write end: the request comes on it, then its end; the end alone if the worker is gone.
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    os.set_blocking(fd, True)
    os.close(os.open(ready, os.O_WRONLY | os.O_CREAT, 0o600))
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    for name in (fifo, ready):
        try:
            os.unlink(name)
        except OSError:
            pass
    fields = b"".join(chunks).split(b"\0")
    if not fields or not fields[0]:
        os._exit(70)
    script = os.fsdecode(fields[0])
    # The job's environment, and what bubblewrap adds to every command's (PWD, as it sets it for a cold start).
    added = {k: v for k, v in os.environb.items() if k == b"PWD"}
    os.environ.clear()
    for item in fields[1:]:
        key, sep, value = item.partition(b"=")
        if sep:
            os.environb[key] = value
    for key, value in added.items():
        os.environb.setdefault(key, value)
    path = os.path.join("/job", script)
    sys.argv = [script]
    sys.orig_argv = [sys.orig_argv[0] if sys.orig_argv else sys.executable, "-u", script]
    sys.path[0] = os.path.dirname(path)
    main = type(sys)("__main__")
    main.__file__ = path
    main.__cached__ = None
    main.__builtins__ = builtins
    main.__spec__ = None
    external = sys.modules.get("_frozen_importlib_external")
    main.__loader__ = external.SourceFileLoader("__main__", path) if external else None
    sys.modules["__main__"] = main
    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as e:
        sys.stderr.write("%s: can't open file %r: [Errno %d] %s\n" % (sys.executable, path, e.errno, e.strerror))
        sys.exit(2)
    try:
        code = compile(source, path, "exec", dont_inherit=True)
        exec(code, main.__dict__)
    except SystemExit:
        raise
    except BaseException as e:
        # As an uncaught exception of the script itself: its traceback without this function's frame.
        tb = e.__traceback__.tb_next if e.__traceback__ else None
        e.__traceback__ = tb
        sys.excepthook(type(e), e, tb)
        if isinstance(e, KeyboardInterrupt):
            # As CPython ends a script whose KeyboardInterrupt went uncaught: after its finalization (threads joined,
            # atexit handlers run, streams flushed), by SIGINT itself, so the job ends by the signal, not with 1.
            import _signal, atexit
            threading = sys.modules.get("threading")
            if threading is not None:
                threading._shutdown()
            atexit._run_exitfuncs()
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
            os.kill(os.getpid(), _signal.SIGINT)
        sys.exit(1)
_campusgrid_run()
"""#
}
