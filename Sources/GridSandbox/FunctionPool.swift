import Foundation
import GridCore

#if canImport(Glibc)
import Glibc
#endif

/// Warm Python interpreters for function tasks (`CPU_TASK`): one zygote per slot, started once and reused; each task
/// runs in a fresh child forked from a zygote (see `FunctionZygote`), so tasks are cheap and never share state.
/// A zygote that dies is replaced on its next use; one that served `recycleAfter` tasks is replaced too.
///
/// The interpreter starts under `Launch.wrapper` (empty for the restricted tier; a sandbox tier puts its own command
/// there, e.g. `bwrap … --`), in `directory`, with only `environment`.
public final class FunctionPool: Sendable {
    /// How to start an interpreter: the sandbox tier's wrapper command, then `python -I -S -c <zygote>`.
    public struct Launch: Sendable {
        public var python: String
        public var wrapper: [String]
        public var directory: String
        public var environment: [String: String]
        public init(python: String, wrapper: [String] = [], directory: String, environment: [String: String]? = nil) {
            self.python = python
            self.wrapper = wrapper
            self.directory = directory
            self.environment = environment ?? Self.environment(home: directory)
        }

        /// What an interpreter sees of the environment: nothing of the worker's.
        public static func environment(home: String) -> [String: String] {
            [
                "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
                "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
            ]
        }

        /// How to start interpreters under `runner`'s tier: inside bubblewrap for the bwrap tier; as plain children
        /// (the restricted tier) otherwise. Returns the launch and the tier the interpreters really get.
        public static func under(_ runner: any JobRunner, python: String, directory: String) -> (Launch, SandboxTier) {
            if let bwrap = runner as? BwrapRunner {
                let env = environment(home: BwrapRunner.jobDirectory)
                return (Launch(python: python, wrapper: bwrap.interpreterPrefix(directory: directory, environment: env), directory: directory), .bwrap)
            }
            return (Launch(python: python, directory: directory), .restricted)
        }
    }

    /// A task for an interpreter: the `CPU_TASK` fields the zygote reads.
    public struct Request: Sendable, Encodable {
        public var program: String
        public var function: String
        public var args: JSONValue?
        public var argsLiteral: String?
        public var timeout: Double
        public init(program: String, function: String, args: JSONValue?, argsLiteral: String?, timeout: Double) {
            self.program = program
            self.function = function
            self.args = args
            self.argsLiteral = argsLiteral
            self.timeout = timeout
        }
        enum CodingKeys: String, CodingKey {
            case program, function, args, timeout
            case argsLiteral = "args_literal"
        }
    }

    /// What the interpreter answered.
    public struct Answer: Sendable, Decodable {
        public var ok: Bool
        public var result: JSONValue?
        public var error: String?
        public var message: String?
        public var traceback: String?
        public var output: String?
    }

    private let launch: Launch
    private let recycleAfter: Int
    private let zygotes: [Zygote]
    private let free: FreeList

    public init(launch: Launch, size: Int, recycleAfter: Int = 10_000) {
        self.launch = launch
        self.recycleAfter = recycleAfter
        self.zygotes = (0..<max(1, size)).map { _ in Zygote() }
        self.free = FreeList(count: max(1, size))
    }

    /// Starts every interpreter now, so the first tasks do not pay for it.
    public func warm() {
        for z in zygotes { _ = try? z.ensureStarted(launch) }
    }

    /// Runs one task on a free interpreter (waiting for one); never throws for the task's own failures.
    public func run(_ request: Request) async -> Answer {
        let index = await free.take()
        defer { free.give(index) }
        let zygote = zygotes[index]
        let line: Data
        do {
            line = try JSONEncoder().encode(request) + Data([0x0A])
        } catch {
            return Answer(ok: false, result: nil, error: "bad_args", message: "the arguments could not be encoded: \(error)")
        }
        for attempt in 0..<2 {
            do {
                if zygote.served >= recycleAfter { zygote.stop() }
                try zygote.ensureStarted(launch)
                let reply = try await zygote.exchange(line, timeout: request.timeout + 10)
                return (try? JSONDecoder().decode(Answer.self, from: reply))
                    ?? Answer(ok: false, error: "crashed", message: "the interpreter gave an unreadable answer")
            } catch {
                // The zygote died (or hung): replace it and try once more, on a fresh one.
                zygote.stop()
                if attempt == 1 {
                    return Answer(ok: false, error: "crashed", message: "the interpreter failed: \(error)")
                }
            }
        }
        return Answer(ok: false, error: "crashed", message: "the interpreter failed")
    }

    /// Stops every interpreter.
    public func shutdown() {
        for z in zygotes { z.stop() }
    }

    /// PIDs of the running interpreters (for tests and status pages).
    public var pids: [Int32] { zygotes.compactMap(\.pid) }
}

extension FunctionPool.Answer {
    init(ok: Bool, result: JSONValue? = nil, error: String?, message: String?) {
        self.ok = ok
        self.result = result
        self.error = error
        self.message = message
        self.traceback = nil
        self.output = nil
    }
}

/// Indices of idle zygotes; `take` waits for one.
private final class FreeList: @unchecked Sendable {
    // Safe: all state behind `lock`.
    private let lock = NSLock()
    private var idle: [Int]
    private var waiters: [CheckedContinuation<Int, Never>] = []

    init(count: Int) { idle = Array(0..<count) }

    func take() async -> Int {
        await withCheckedContinuation { c in
            lock.lock()
            if let i = idle.popLast() {
                lock.unlock()
                c.resume(returning: i)
            } else {
                waiters.append(c)
                lock.unlock()
            }
        }
    }

    func give(_ i: Int) {
        lock.lock()
        if !waiters.isEmpty {
            let c = waiters.removeFirst()
            lock.unlock()
            c.resume(returning: i)
        } else {
            idle.append(i)
            lock.unlock()
        }
    }
}

/// One warm interpreter. Used by one task at a time (the free list guarantees it); `lock` guards the fields against
/// `stop()` from `shutdown()`.
private final class Zygote: @unchecked Sendable {
    // Safe: fields behind `lock`; `exchange` runs for one task at a time.
    private let lock = NSLock()
    private var process: Process?
    private var input: FileHandle?
    private var outputFd: Int32 = -1
    private var buffer = Data()
    private(set) var served = 0

    var pid: Int32? {
        lock.lock()
        defer { lock.unlock() }
        return process?.isRunning == true ? process?.processIdentifier : nil
    }

    func ensureStarted(_ launch: FunctionPool.Launch) throws {
        lock.lock()
        defer { lock.unlock() }
        if let p = process, p.isRunning { return }
        stopLocked()
        try FileManager.default.createDirectory(atPath: launch.directory, withIntermediateDirectories: true)
        let p = Process()
        let argv = launch.wrapper + [launch.python, "-I", "-c", FunctionZygote.script]
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        p.environment = launch.environment
        p.currentDirectoryURL = URL(fileURLWithPath: launch.directory)
        let stdin = Pipe()
        let stdout = Pipe()
        p.standardInput = stdin
        p.standardOutput = stdout
        p.standardError = FileHandle.nullDevice
        try p.run()
        process = p
        input = stdin.fileHandleForWriting
        outputFd = dup(stdout.fileHandleForReading.fileDescriptor)
        try? stdout.fileHandleForReading.close()
        buffer = Data()
        served = 0
    }

    /// Writes one request line and reads one answer line (on a dispatch thread: the read blocks).
    func exchange(_ line: Data, timeout: Double) async throws -> Data {
        let (input, fd) = try endpoints()
        try input.write(contentsOf: line)
        served += 1
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { [self] in
                continuation.resume(with: Result { try self.readLine(fd: fd, timeout: timeout) })
            }
        }
    }

    private func endpoints() throws -> (FileHandle, Int32) {
        lock.lock()
        defer { lock.unlock() }
        guard let input, outputFd >= 0 else { throw ZygoteError.notRunning }
        return (input, outputFd)
    }

    private func readLine(fd: Int32, timeout: Double) throws -> Data {
        let deadline = Date().addingTimeInterval(timeout)
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            if let nl = buffer.firstIndex(of: 0x0A) {
                let line = buffer[buffer.startIndex..<nl]
                buffer.removeSubrange(buffer.startIndex...nl)
                return Data(line)
            }
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { throw ZygoteError.timedOut }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, Int32(min(left, 1) * 1000))
            if ready < 0 && errno != EINTR { throw ZygoteError.died }
            if ready <= 0 { continue }
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { throw ZygoteError.died }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }

    func stop() {
        lock.lock()
        defer { lock.unlock() }
        stopLocked()
    }

    private func stopLocked() {
        if let p = process, p.isRunning {
            // The zygote leads its own process group: its task children go with it.
            kill(-p.processIdentifier, SIGKILL)
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        try? input?.close()
        if outputFd >= 0 { close(outputFd) }
        process = nil
        input = nil
        outputFd = -1
        buffer = Data()
    }
}

enum ZygoteError: Error {
    case notRunning, died, timedOut
}
