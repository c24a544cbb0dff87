import Foundation
import GridCore

/// Why a sandboxed job ended, in words a student understands (pure).
enum Reasons {
    static func outOfMemory(gb: Int) -> String { "out of memory (limit \(gb) GB)" }
    static func tooManyProcesses(_ limit: Int) -> String { "too many processes (limit \(limit))" }
    static func timeLimit(minutes: Int) -> String { "time limit reached (\(minutes) min)" }
    static func outputTooLarge(bytes: UInt64) -> String { "output too large (a file reached the \(bytes >> 20) MB limit)" }

    /// SIGXFSZ: a file grew past RLIMIT_FSIZE.
    static let fileTooLargeSignal: Int32 = 25

    /// What the cgroup (or engine) saw during a run.
    struct Usage: Sendable, Hashable {
        var oomKilled = false
        var pidsLimitHit = false
        /// A file in the scratch folder reached the file-size limit (Python ignores SIGXFSZ and fails with EFBIG).
        var fileLimitHit = false
        var cpuSeconds: Double?
        var peakMemoryBytes: Int64?
    }

    /// The final report of a sandboxed run: measurements from the cgroup, and the reason for a failure.
    /// A sandbox's wrapper (bwrap, the container's init) reports a child's death by signal N as exit code 128+N.
    static func explain(_ report: RunReport, usage: Usage, spec: JobSpec, limits: RunnerLimits) -> RunReport {
        var r = report
        if let cpu = usage.cpuSeconds { r.cpuSeconds = cpu }
        if let peak = usage.peakMemoryBytes, peak > 0 { r.peakMemoryKb = peak / 1024 }
        var signal = r.signal
        if signal == nil, let code = r.exitCode, code > 128, code < 160 { signal = code - 128 }
        switch r.outcome {
        case .timedOut:
            r.reason = timeLimit(minutes: spec.minutes)
        case .failed:
            r.signal = signal
            if usage.pidsLimitHit {
                r.reason = tooManyProcesses(limits.maxProcesses)
            } else if usage.oomKilled {
                r.reason = outOfMemory(gb: spec.memoryLimitGb)
            } else if signal == fileTooLargeSignal || usage.fileLimitHit {
                r.reason = outputTooLarge(bytes: limits.maxFileBytes)
            } else if let signal, r.reason == nil || r.reason?.hasPrefix("exited with code") == true {
                r.reason = "killed by signal \(signal)"
            }
        case .completed, .cancelled:
            break
        }
        return r
    }

    /// Whether a file under `scratch` reached `limit` bytes (looks at no more than 10,000 entries).
    static func fileLimitHit(in scratch: URL, limit: UInt64) -> Bool {
        guard let walker = FileManager.default.enumerator(at: scratch, includingPropertiesForKeys: [.fileSizeKey, .isRegularFileKey]) else {
            return false
        }
        var seen = 0
        for case let url as URL in walker {
            seen += 1
            if seen > 10_000 { return false }
            let v = try? url.resourceValues(forKeys: [.fileSizeKey, .isRegularFileKey])
            if v?.isRegularFile == true, let size = v?.fileSize, UInt64(size) >= limit { return true }
        }
        return false
    }
}
