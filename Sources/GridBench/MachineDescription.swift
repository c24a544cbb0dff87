import Foundation

/// The machine a bench ran on, so figures from different machines are never compared by mistake.
public struct MachineDescription: Sendable, Codable {
    public var cpuModel: String
    public var cores: Int
    public var memoryGb: Double
    public var os: String
    public var kernel: String
    public var swiftVersion: String
    public var gitCommit: String
    /// Whether the working tree had changes not in `gitCommit`.
    public var gitDirty: Bool
    /// The load average (1 min) when the run started: these machines are shared, so say how busy it was.
    public var loadAverageAtStart: Double

    /// Reads /proc, /etc/os-release, `uname`, `swift --version` and `git` (each best effort: "unknown" when missing).
    public static func current(repository: String?) -> MachineDescription {
        let cpuinfo = String(decoding: FileHandle(forReadingAtPath: "/proc/cpuinfo")?.readDataToEndOfFile() ?? Data(), as: UTF8.self)
        let model =
            cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .flatMap { $0.split(separator: ":", maxSplits: 1).last }
            .map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
        let meminfo = String(decoding: FileHandle(forReadingAtPath: "/proc/meminfo")?.readDataToEndOfFile() ?? Data(), as: UTF8.self)
        let kb = meminfo.split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
            .flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { Double($0) } ?? 0
        let release = (try? String(contentsOfFile: "/etc/os-release", encoding: .utf8)) ?? ""
        let pretty =
            release.split(separator: "\n").first { $0.hasPrefix("PRETTY_NAME=") }
            .map { String($0.dropFirst("PRETTY_NAME=".count)).trimmingCharacters(in: CharacterSet(charactersIn: "\"")) } ?? "unknown"
        let load = ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "").split(separator: " ").first.flatMap { Double($0) } ?? -1
        let swift = Shell.output("swift", ["--version"], timeout: 20)?.split(separator: "\n").first.map(String.init) ?? "unknown"
        var commit = "unknown"
        var dirty = false
        if let repository {
            commit = Shell.output("git", ["-C", repository, "rev-parse", "HEAD"], timeout: 10)?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "unknown"
            let status = Shell.output("git", ["-C", repository, "status", "--porcelain", "--untracked-files=no"], timeout: 10) ?? ""
            dirty = !status.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        }
        return MachineDescription(
            cpuModel: model, cores: ProcessInfo.processInfo.activeProcessorCount, memoryGb: (kb / 1_048_576 * 10).rounded() / 10, os: pretty,
            kernel: Shell.output("uname", ["-sr"], timeout: 5)?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "unknown",
            swiftVersion: swift, gitCommit: commit, gitDirty: dirty, loadAverageAtStart: load)
    }
}
