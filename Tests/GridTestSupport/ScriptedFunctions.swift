public import GridCore
public import GridSandbox

/// A peer's function tasks without an interpreter (issue 14): a task's program is read as `ScriptedRunner` steps
/// (`# grid: sleep S` holds its slot, `# grid: print TEXT` is its output, `# grid: exit N` with N ≠ 0 fails it), and its
/// result names the peer that ran it, the user it ran for and its arguments, so a routing test can tell where it went.
public struct ScriptedFunctions: FunctionRunner {
    /// The peer's name, put in every result.
    public let peer: String

    public init(peer: String) { self.peer = peer }

    public func warm() {}

    public func shutdown() {}

    public func run(_ request: FunctionPool.Request, user: String, via: String?, environment: (key: String, site: String)?) async -> FunctionPool.Answer {
        var output = ""
        for step in ScriptedRunner.steps(request.program) {
            switch step {
            case .print(let text): output += text + "\n"
            case .sleep(let seconds):
                do {
                    try await Task.sleep(for: .milliseconds(Int64(min(seconds, request.timeout) * 1000)))
                } catch {
                    return FunctionPool.Answer(ok: false, error: "cancelled", message: "the task was cancelled", output: output)
                }
                if seconds > request.timeout {
                    return FunctionPool.Answer(ok: false, error: "timeout", message: "the task took longer than \(request.timeout) s", output: output)
                }
            case .write, .allocate, .sleepFirst: break
            case .exit(let code) where code != 0:
                return FunctionPool.Answer(ok: false, error: "exception", message: "SystemExit: \(code)", output: output)
            case .exit: break
            }
        }
        let result: JSONValue = .object([
            "ran_on": .string(peer), "user": .string(user), "function": .string(request.function), "args": request.args ?? .null,
        ])
        return FunctionPool.Answer(ok: true, result: result, output: output)
    }
}
