/// The Python side of a warm interpreter ("executor"), run with `python -I -c`.
///
/// It says `ready` once its imports are done, then reads one JSON request a line on standard input and answers one
/// JSON line on a private copy of standard output. Each task runs in this process, in a fresh namespace (its own
/// globals; `print` captured), so a small task costs microseconds, not a process start. An executor only ever serves
/// one user (`FunctionPool` binds it), so what a task leaves behind in imported modules is seen only by later tasks of
/// the same user, as in Ray's and Dask's workers. Time limits and crashes are handled from outside: the pool kills
/// the whole process group of an executor that overruns, and replaces one that died.
enum FunctionExecutor {
    static let script = #"""
import sys, os, json, io, ast, traceback, builtins, contextlib
try:
    os.setpgrp()  # lead a process group of its own (already done when the pool started it in a new session)
except OSError:
    pass
proto_in = sys.stdin.buffer
proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
os.dup2(2, 1)
MAX_RESULT = int(os.environ.get("GRID_MAX_RESULT", "1048576"))
HOME = os.getcwd()
# A task may replace anything it can reach (json.dumps, io.StringIO…): the executor answers with these saved ones.
_dumps, _loads, _format_exc, _StringIO, _redirect = json.dumps, json.loads, traceback.format_exc, io.StringIO, contextlib.redirect_stdout
_compile, _exec, _literal_eval, _getcwd, _chdir, _isinstance, _callable = compile, exec, ast.literal_eval, os.getcwd, os.chdir, isinstance, callable
_builtins = builtins
codes = {}

def execute(req):
    program = req.get("program", "")
    code = codes.get(program)
    if code is None:
        try:
            code = _compile(program, "<task>", "exec")
        except SyntaxError as e:
            return {"ok": False, "error": "syntax_error", "message": "line %s: %s" % (e.lineno, e.msg),
                    "traceback": "".join(traceback.format_exception_only(type(e), e))}
        if len(codes) >= 256:
            codes.clear()
        codes[program] = code
    if "args_literal" in req:
        try:
            args = _literal_eval(req["args_literal"])
        except Exception as e:
            return {"ok": False, "error": "bad_args", "message": "--args is neither JSON nor a Python literal: %s" % e}
    else:
        args = req.get("args", [])
    out = _StringIO()
    ns = {"__name__": "__grid_task__", "__builtins__": _builtins}
    with _redirect(out):
        try:
            _exec(code, ns)
            name = req.get("function") or "main"
            fn = ns.get(name)
            if not _callable(fn):
                return {"ok": False, "error": "no_function", "message": "the program defines no function %r" % name}
            if _isinstance(args, dict):
                result = fn(**args)
            elif _isinstance(args, (list, tuple)):
                result = fn(*args)
            elif args is None:
                result = fn()
            else:
                result = fn(args)
        except BaseException as e:
            tb = _format_exc()
            return {"ok": False, "error": "exception", "message": "%s: %s" % (type(e).__name__, e), "traceback": tb[-16384:],
                    "output": out.getvalue()[-65536:]}
    return {"ok": True, "result": result, "output": out.getvalue()[-65536:]}

def answer(req):
    res = execute(req)
    try:
        data = _dumps(res, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as e:
        return _dumps({"ok": False, "error": "not_json",
                       "message": "the result (%s) is not JSON-serialisable: %s" % (type(res.get("result")).__name__, e)})
    if len(data) > MAX_RESULT and len(_dumps(res.get("result"))) > MAX_RESULT:
        return _dumps({"ok": False, "error": "result_too_large",
                       "message": "the result is %d bytes; the limit is %d" % (len(_dumps(res.get("result"))), MAX_RESULT)})
    return data

proto_out.write(b"ready\n")
while True:
    line = proto_in.readline()
    if not line:
        break
    try:
        data = answer(_loads(line))
    except BaseException as e:
        data = _dumps({"ok": False, "error": "crashed", "message": "the task could not report: %s" % e})
    try:
        if _getcwd() != HOME:
            _chdir(HOME)
    except OSError:
        pass
    view = memoryview((data + "\n").encode())
    while view:
        view = view[proto_out.write(view):]
"""#
}
