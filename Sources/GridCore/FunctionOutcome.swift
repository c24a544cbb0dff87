/// How a function task ended, as its interpreter says it and as the peer reports it (`CPU_RESULT`): `ok` with
/// `result`, or `error` (a code: `syntax_error`, `exception`, `timeout`, `not_json`, `no_function`, `bad_args`,
/// `crashed`, `result_too_large`) with `message` and maybe `traceback`; and what the function printed. One type for
/// the interpreter's answer and the wire's report, so the two cannot drift apart.
public struct FunctionOutcome: Hashable, Sendable, Codable {
    public var ok: Bool
    public var result: JSONValue?
    public var error: String?
    public var message: String?
    public var traceback: String?
    /// What the function printed (at most 64 KiB).
    public var output: String?

    public init(
        ok: Bool, result: JSONValue? = nil, error: String? = nil, message: String? = nil, traceback: String? = nil, output: String? = nil
    ) {
        self.ok = ok
        self.result = result
        self.error = error
        self.message = message
        self.traceback = traceback
        self.output = output
    }
}
