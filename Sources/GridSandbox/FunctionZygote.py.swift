/// The Python side of a warm interpreter ("zygote"), run with `python -I -c`.
///
/// It reads one JSON request a line on standard input and answers one JSON line on a private copy of standard
/// output. Each task runs in its own child, forked ahead of time (a spare waits for the next request, so the fork is
/// off the task's path): the child builds a fresh namespace, runs the program and the function, and writes its answer
/// into a pipe; the zygote waits (up to the task's timeout, then SIGKILLs the child) and relays it. So no task sees
/// another's state, a crashing task only loses its own child, and the zygote only ever runs trusted code.
enum FunctionZygote {
    static let script = #"""
import sys, os, json, time, select, signal, io, ast, traceback, builtins, contextlib
os.setpgrp()
proto_in = sys.stdin.buffer
proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
os.dup2(2, 1)
MAX_RESULT = int(os.environ.get("GRID_MAX_RESULT", "1048576"))
# The task may replace anything it can reach (json.dumps, os.write…): the child reports with these saved ones.
_dumps, _write, _exit, _format_exc = json.dumps, os.write, os._exit, traceback.format_exc

def execute(req):
    out = io.StringIO()
    ns = {"__name__": "__grid_task__", "__builtins__": builtins}
    with contextlib.redirect_stdout(out):
        try:
            code = compile(req.get("program", ""), "<task>", "exec")
        except SyntaxError as e:
            return {"ok": False, "error": "syntax_error", "message": "line %s: %s" % (e.lineno, e.msg),
                    "traceback": "".join(traceback.format_exception_only(type(e), e))}
        try:
            if "args_literal" in req:
                try:
                    args = ast.literal_eval(req["args_literal"])
                except Exception as e:
                    return {"ok": False, "error": "bad_args", "message": "--args is neither JSON nor a Python literal: %s" % e}
            else:
                args = req.get("args", [])
            exec(code, ns)
            name = req.get("function") or "main"
            fn = ns.get(name)
            if not callable(fn):
                return {"ok": False, "error": "no_function", "message": "the program defines no function %r" % name}
            if isinstance(args, dict):
                result = fn(**args)
            elif isinstance(args, (list, tuple)):
                result = fn(*args)
            elif args is None:
                result = fn()
            else:
                result = fn(args)
        except BaseException as e:
            tb = _format_exc()
            return {"ok": False, "error": "exception", "message": "%s: %s" % (type(e).__name__, e), "traceback": tb[-16384:],
                    "output": out.getvalue()[-65536:]}
    try:
        text = _dumps(result)
    except (TypeError, ValueError) as e:
        return {"ok": False, "error": "not_json", "message": "the result (%s) is not JSON-serialisable: %s" % (type(result).__name__, e)}
    if len(text) > MAX_RESULT:
        return {"ok": False, "error": "result_too_large", "message": "the result is %d bytes; the limit is %d" % (len(text), MAX_RESULT)}
    return {"ok": True, "result": result, "output": out.getvalue()[-65536:]}

def child(req, w):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        res = execute(req)
        data = _dumps(res).encode()
    except BaseException as e:
        data = _dumps({"ok": False, "error": "crashed", "message": "the task could not report: %s" % e}).encode()
    view = memoryview(data)
    while view:
        n = _write(w, view)
        view = view[n:]
    _exit(0)

def read_all(fd):
    parts = []
    while True:
        b = os.read(fd, 1 << 16)
        if not b:
            return b"".join(parts)
        parts.append(b)

def spawn_spare():
    # A child forked ahead of time, waiting for its request: the fork is off the task's critical path.
    rq, wq = os.pipe()
    rr, wr = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(wq)
        os.close(rr)
        try:
            req = json.loads(read_all(rq))
        except BaseException:
            _exit(0)
        os.close(rq)
        child(req, wr)
    os.close(rq)
    os.close(wr)
    return pid, wq, rr

spare = spawn_spare()
while True:
    line = proto_in.readline()
    if not line:
        break
    try:
        req = json.loads(line)
    except ValueError:
        proto_out.write(b'{"ok": false, "error": "crashed", "message": "bad request"}\n')
        continue
    timeout = float(req.get("timeout") or 30)
    pid, wq, r = spare
    deadline = time.monotonic() + timeout
    view = memoryview(line)
    try:
        while view:
            n = os.write(wq, view)
            view = view[n:]
    except OSError:
        pass
    os.close(wq)
    spare = spawn_spare()
    chunks = []
    timed_out = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([r], [], [], left)
        if not ready:
            continue
        b = os.read(r, 1 << 16)
        if not b:
            break
        chunks.append(b)
    if timed_out:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, status = os.waitpid(pid, 0)
    os.close(r)
    if timed_out:
        res = {"ok": False, "error": "timeout", "message": "the task ran longer than %g s and was stopped" % timeout}
    elif chunks:
        try:
            res = json.loads(b"".join(chunks))
        except ValueError:
            res = {"ok": False, "error": "crashed", "message": "the task's answer was cut off"}
    elif os.WIFSIGNALED(status):
        res = {"ok": False, "error": "crashed", "message": "the task's process was killed by signal %d" % os.WTERMSIG(status)}
    else:
        res = {"ok": False, "error": "crashed", "message": "the task's process exited with status %d without an answer" % os.WEXITSTATUS(status)}
    proto_out.write(json.dumps(res).encode() + b"\n")
os.killpg(0, signal.SIGKILL)
"""#
}
