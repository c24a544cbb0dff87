import Foundation
public import GridCore
public import GridSandbox

/// A job runner with no sandbox and no process, for the in-process grid (issue 14). It reads the job's script as a
/// script of its own, one step a line, and ignores every other line (so a file can be valid Python as well):
///
///     # grid: print TEXT          one line of output
///     # grid: sleep SECONDS       waits (a cancel or the deadline stops it at once)
///     # grid: sleep-first SECONDS as `sleep`, on the job's first attempt only (a run to be interrupted; its rerun is quick)
///     # grid: write NAME TEXT     writes a file into the job's folder (an output)
///     # grid: allocate NAME BYTES allocates a file of that many bytes there (blocks held, nothing written: at once)
///     # grid: exit CODE           ends with that code (without one, 0)
///
/// Its runs behave as a process's for everything the worker and the manager see: output streamed, cancel, time limit,
/// exit code, outputs.
public struct ScriptedRunner: JobRunner {
    public let tier: SandboxTier
    public var label: String { "scripted, in-process (tests)" }
    public var notes: [String] { ["runs no code: a test runner"] }

    public init(tier: SandboxTier = .bwrap) { self.tier = tier }

    public enum Step: Hashable, Sendable {
        case print(String)
        case sleep(Double)
        case sleepFirst(Double)
        case write(name: String, text: String)
        case allocate(name: String, bytes: Int64)
        case exit(Int32)
    }

    /// The steps of a script; lines that are not steps are skipped.
    public static func steps(_ script: String) -> [Step] {
        script.split(separator: "\n", omittingEmptySubsequences: true).compactMap { raw in
            let line = raw.trimmingCharacters(in: .whitespaces)
            guard line.hasPrefix("# grid:") else { return nil }
            let words = line.dropFirst("# grid:".count).trimmingCharacters(in: .whitespaces)
            let (verb, rest) = words.firstIndex(of: " ").map { (String(words[..<$0]), String(words[$0...].dropFirst())) } ?? (words, "")
            switch verb {
            case "print": return .print(rest)
            case "sleep": return Double(rest).flatMap { $0.isFinite && $0 >= 0 ? .sleep(min($0, 3600)) : nil }
            case "sleep-first": return Double(rest).flatMap { $0.isFinite && $0 >= 0 ? .sleepFirst(min($0, 3600)) : nil }
            case "write":
                let parts = rest.split(separator: " ", maxSplits: 1)
                guard let name = parts.first, !name.contains("/") else { return nil }
                return .write(name: String(name), text: parts.count > 1 ? String(parts[1]) : "")
            case "allocate":
                let parts = rest.split(separator: " ")
                guard parts.count == 2, !parts[0].contains("/"), let bytes = Int64(parts[1]), bytes > 0 else { return nil }
                return .allocate(name: String(parts[0]), bytes: bytes)
            case "exit": return Int32(rest).map { .exit($0) }
            default: return nil
            }
        }
    }

    public func start(_ request: RunRequest) throws -> JobExecution {
        let script = try String(contentsOf: request.scratch.appendingPathComponent(request.script), encoding: .utf8)
        let steps = Self.steps(script).map { step in
            if case .sleepFirst(let seconds) = step { return Step.sleep(request.job.attempt == 1 ? seconds : 0) }
            return step
        }
        let folder = request.scratch
        return try JobExecution.inProcess(deadline: request.timeLimitSeconds) { emit, stopped in
            for step in steps {
                if stopped() { return 137 }
                switch step {
                case .print(let text): emit(Array((text + "\n").utf8))
                case .sleepFirst: continue
                case .sleep(let seconds):
                    let end = Date().addingTimeInterval(seconds)
                    while Date() < end {
                        if stopped() { return 137 }
                        usleep(10_000)
                    }
                case .write(let name, let text):
                    FileManager.default.createFile(atPath: folder.appendingPathComponent(name).path, contents: Data(text.utf8))
                case .allocate(let name, let bytes):
                    let fd = open(folder.appendingPathComponent(name).path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
                    guard fd >= 0 else { return 1 }
                    defer { close(fd) }
                    if posix_fallocate(fd, 0, off_t(bytes)) != 0 { return 1 }
                case .exit(let code): return code
                }
            }
            return 0
        }
    }
}
