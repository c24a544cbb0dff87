import ArgumentParser
import Foundation
import GridCore
import Logging

@main
struct CampusGrid: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "campusgrid",
        abstract: "Share idle campus machines: run Python jobs on other students' hardware and earn credits for yours.",
        subcommands: [
            Up.self, ManagerCommand.self, WorkerCommand.self,
            Register.self, Login.self, Logout.self, WhoAmI.self, Credits.self, TokenCommand.self,
            Submit.self, Jobs.self, Status.self, Logs.self, Cancel.self, Download.self,
            Workers.self, Leaderboard.self, Admin.self, SandboxBench.self, BenchCommand.self,
            CPUCommand.self, SetMemCommand.self, GetMemCommand.self, DelMemCommand.self, ListMemCommand.self,
            PutFileCommand.self, GetFileCommand.self, ListFilesCommand.self, DeleteFileCommand.self,
        ]
    )
}

extension CampusGrid {
    /// Accepts the seed's order too: `campusgrid --port 9000 cpu …` (seed 003's `client.py --port 9000 cpu …`).
    static func main() async {
        await main(SeedArguments.reorder(Array(CommandLine.arguments.dropFirst())))
    }
}

/// Seed 003 puts the peer's `--host`/`--port` before the command; argument-parser wants them after it.
enum SeedArguments {
    static let movable: Set<String> = ["--host", "--port", "--token"]

    static func reorder(_ args: [String]) -> [String] {
        var leading: [String] = []
        var i = 0
        while i + 1 < args.count, movable.contains(args[i]) {
            leading += [args[i], args[i + 1]]
            i += 2
        }
        guard !leading.isEmpty, i < args.count else { return args }
        return [args[i]] + leading + args[(i + 1)...]
    }
}

/// Logging to standard error; level from `CAMPUSGRID_LOG_LEVEL` (trace…critical, default info).
enum GridLogging {
    static let bootstrap: Void = {
        let level = ProcessInfo.processInfo.environment["CAMPUSGRID_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }()

    static func logger(_ label: String) -> Logger {
        _ = bootstrap
        return Logger(label: label)
    }
}

/// Environment lookups with the documented names.
enum Env {
    static func string(_ names: String...) -> String? {
        for n in names {
            if let v = ProcessInfo.processInfo.environment[n], !v.isEmpty { return v }
        }
        return nil
    }

    static func int(_ names: String...) -> Int? {
        for n in names {
            if let v = ProcessInfo.processInfo.environment[n], let i = Int(v) { return i }
        }
        return nil
    }

    static func bool(_ name: String) -> Bool? {
        guard let v = ProcessInfo.processInfo.environment[name]?.lowercased() else { return nil }
        if ["1", "true", "yes", "on"].contains(v) { return true }
        if ["0", "false", "no", "off"].contains(v) { return false }
        return nil
    }

    static var home: String { ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory() }
}

/// Writes one line to standard output, flushed (scripts and `up` read these as they come). What it says may hold
/// strangers' text (job and worker names, reasons, a manager's or a peer's messages): their controls are shown, not
/// obeyed (`TerminalText`).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((TerminalText.shown(line) + "\n").utf8))
}

/// Writes one line to standard output, on one line whatever it holds (a stranger's newline would forge the next).
func sayLine(_ line: String) {
    say(TerminalText.shown(line, keeping: .none))
}

/// Writes data a program may read back (a key, a value, a file list) to standard output: as it is to a file or a pipe,
/// with its controls shown to a terminal.
func sayData(_ line: String) {
    writeOutput(line + "\n")
}

/// Writes one line of JSON to standard output as encoded (the encoder escapes every C0 control; a program reads it).
func sayJSON(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// Writes one line to standard error, its controls shown as `say`'s are.
func complain(_ line: String) {
    FileHandle.standardError.write(Data((TerminalText.shown(line) + "\n").utf8))
}

/// Writes a program's output as it comes (a job's log, a task's printed output): byte for byte when `raw` or when it
/// goes to a file or a pipe; to a terminal, with the controls a stranger's program could use against it shown instead
/// (newlines, tabs and carriage returns stay).
func writeOutput(_ text: String, to handle: FileHandle = .standardOutput, raw: Bool = false) {
    let exact = raw || isatty(handle.fileDescriptor) == 0
    handle.write(Data((exact ? text : TerminalText.shown(text, keeping: .output)).utf8))
}
