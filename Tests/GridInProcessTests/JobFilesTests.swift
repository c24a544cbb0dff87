import Foundation
import GridCore
import GridProtocol
@testable import GridWorker
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Collecting a finished job's outputs from its scratch folder (`JobFiles.collect`), where a stranger's job had the
/// run of the folder, and a process of it that outlived the job may still change it after it was listed.
@Suite struct JobFilesTests {
    let root = NSTemporaryDirectory() + "campusgrid-jobfiles-\(UUID().uuidString)"
    var scratch: URL { URL(fileURLWithPath: root + "/scratch") }
    /// A file of the contributor's, outside the scratch folder.
    var secret: String { root + "/secret.txt" }

    init() throws {
        try FileManager.default.createDirectory(at: URL(fileURLWithPath: root + "/scratch/sub"), withIntermediateDirectories: true)
        try Data("the contributor's key".utf8).write(to: URL(fileURLWithPath: root + "/secret.txt"))
    }

    func write(_ name: String, _ text: String) throws {
        try Data(text.utf8).write(to: scratch.appendingPathComponent(name))
    }

    /// A PID no process has: one of a process this test started and saw end.
    static func deadPid() throws -> pid_t {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run()
        p.waitUntilExit()
        return p.processIdentifier
    }

    /// A worker killed mid-run leaves the run's folder; the next worker to start on the data folder removes it, and
    /// only it: not a live worker's, nor anything not named as a run's folder.
    @Test func theFoldersOfRunsWhoseWorkerIsGoneAreSweptAndNoOthers() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let jobs = root + "/jobs"
        let dead = try Self.deadPid()
        let gone = JobFiles.folder(for: JobRef(jobId: 7, attempt: 2), in: jobs, pid: dead)
        #expect(gone.lastPathComponent == "run-\(dead)-7-2")
        // A live worker's (PID 1 is always there), and a predecessor's of the same PID as this one (a worker that is
        // always PID 1 in a container): the sweep runs before this worker runs anything.
        let live = JobFiles.folder(for: JobRef(jobId: 8, attempt: 1), in: jobs, pid: 1)
        let mine = JobFiles.folder(for: JobRef(jobId: 9, attempt: 1), in: jobs)
        try FileManager.default.createDirectory(at: mine, withIntermediateDirectories: true)
        // What the dead run left, a folder it made unreadable among it.
        try FileManager.default.createDirectory(at: gone.appendingPathComponent("locked/in"), withIntermediateDirectories: true)
        try Data(count: 4096).write(to: gone.appendingPathComponent("locked/in/big.bin"))
        chmod(gone.appendingPathComponent("locked").path, 0)
        try FileManager.default.createDirectory(at: live, withIntermediateDirectories: true)
        let others = ["7-2", "run-", "run-\(dead)-7", "run-\(dead)-x-1", "run-0-1-1", "run--5-1-1", ".warm-\(dead)-a", "notes.txt"]
        for name in others { try FileManager.default.createDirectory(atPath: jobs + "/" + name, withIntermediateDirectories: true) }
        #expect(Set(JobFiles.sweep(jobs: jobs)) == [gone.lastPathComponent, mine.lastPathComponent])
        let left = Set(try FileManager.default.contentsOfDirectory(atPath: jobs))
        #expect(left == Set(others + [live.lastPathComponent]), "\(left)")
        // Nothing more on a second start, nor in a folder that is not there.
        #expect(JobFiles.sweep(jobs: jobs).isEmpty)
        #expect(JobFiles.sweep(jobs: root + "/none").isEmpty)
    }

    /// A worker that holds the data folder's lock knows no other worker uses it: every run folder there is a gone
    /// worker's, a live PID's too (a worker in another PID namespace named it), as are folders named the older way
    /// (`JOB-ATTEMPT`). Anything not named as a run's folder still stays.
    @Test func aWorkerHoldingTheDataFolderSweepsEveryRunFolderThere() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let jobs = root + "/jobs"
        let runs = ["run-1-8-1", "run-\(getpid())-9-1", "run-\(try Self.deadPid())-7-2", "7-2", "123-0", "run-0-1-1"]
        let others = ["run-", "run-5-7", "run-5-x-1", "run--5-1-1", "run-5-1-1-1", "7-", "-2", "7-2-1", "7-x", ".warm-5-a", "notes.txt", "interpreter-ab"]
        for name in runs + others { try FileManager.default.createDirectory(atPath: jobs + "/" + name + "/sub", withIntermediateDirectories: true) }
        chmod(jobs + "/7-2/sub", 0)
        #expect(Set(JobFiles.sweep(jobs: jobs, exclusive: true)) == Set(runs))
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: jobs)) == Set(others))
    }

    /// One worker per data folder: a second one is refused while the first holds it, naming the holder's PID, and may
    /// take it once the first is gone (waiting a bounded while for it). A link in the lock file's place is not followed.
    @Test func aSecondWorkerOnOneDataFolderIsRefusedUntilTheFirstIsGone() async throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let folder = root + "/worker"
        var first: DataFolderLock? = try DataFolderLock.take(folder, wait: 0)
        #expect(first?.path == folder + "/worker.lock")
        #expect(throws: GridError.self) { try DataFolderLock.take(folder, wait: 0) }
        do {
            _ = try DataFolderLock.take(folder, wait: 0.2)
            Issue.record("a second lock was taken")
        } catch let e as GridError {
            #expect(e.code == .conflict && e.message.contains("PID \(getpid())") && e.message.contains(folder), "\(e)")
        }
        // Released while a second waits: the second takes it.
        let waiter = Task { try DataFolderLock.take(folder, wait: 30) }
        try await Task.sleep(for: .milliseconds(100))
        _ = first
        first = nil
        let second = try await waiter.value
        #expect(second.path == first?.path ?? folder + "/worker.lock")
        // A link put where the lock file goes is refused, not followed.
        let other = root + "/other"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: other + "/worker.lock", withDestinationPath: secret)
        #expect(throws: GridError.self) { try DataFolderLock.take(other, wait: 0) }
        #expect(try String(contentsOfFile: secret, encoding: .utf8) == "the contributor's key")
    }

    @Test func regularFilesAreCollectedAndLinksAreNot() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try write("out.txt", "result")
        try write("sub/deep.txt", "deeper")
        try FileManager.default.createSymbolicLink(atPath: scratch.path + "/key.txt", withDestinationPath: secret)
        try FileManager.default.createSymbolicLink(atPath: scratch.path + "/outside", withDestinationPath: root)
        let (files, skipped, _) = JobFiles.collect(in: scratch, globs: [], inputs: [:], maxBytes: 1 << 20)
        #expect(files.map(\.name) == ["out.txt", "sub/deep.txt"])
        #expect(files.map { String(decoding: $0.data, as: UTF8.self) } == ["result", "deeper"])
        #expect(skipped.isEmpty)
    }

    /// Between the listing and the reading, the job swaps its outputs: a file for a link to the contributor's file, a
    /// folder for a link to the folder that holds it, another file for a FIFO (whose open would block the worker for
    /// good). None of them is read, and the worker goes on.
    @Test func whatTheJobSwapsInAfterTheListingIsNeverFollowedNorWaitedOn() async throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try write("a.txt", "a")
        try write("b.txt", "b")
        try write("sub/c.txt", "c")
        try write("secret.txt", "placeholder")
        let (scratch, secret, root) = (scratch, secret, root)
        let swap: @Sendable () -> Void = {
            let fm = FileManager.default
            try? fm.removeItem(atPath: scratch.path + "/a.txt")
            try? fm.createSymbolicLink(atPath: scratch.path + "/a.txt", withDestinationPath: secret)
            try? fm.removeItem(atPath: scratch.path + "/sub")
            try? fm.createSymbolicLink(atPath: scratch.path + "/sub", withDestinationPath: root + "/")
            try? fm.removeItem(atPath: scratch.path + "/b.txt")
            _ = mkfifo(scratch.path + "/b.txt", 0o644)
            // sub/secret.txt now names the contributor's file through the folder link: the listing had sub/c.txt only,
            // so also put a same-named output at the top, listed and then swapped for a link to a folder's file.
            try? fm.removeItem(atPath: scratch.path + "/secret.txt")
            try? fm.createSymbolicLink(atPath: scratch.path + "/secret.txt", withDestinationPath: secret)
        }
        let collected = await withCheckedContinuation { (done: CheckedContinuation<[String: String]?, Never>) in
            // On a thread of its own: a read that blocks on the FIFO must fail this test, not hang the suite.
            let finished = Mutex(false)
            Thread.detachNewThread {
                let (files, _, _) = JobFiles.collect(in: scratch, globs: [], inputs: [:], maxBytes: 1 << 20, afterListing: swap)
                if finished.withLock({ was in defer { was = true }; return !was }) {
                    done.resume(returning: Dictionary(uniqueKeysWithValues: files.map { ($0.name, String(decoding: $0.data, as: UTF8.self)) }))
                }
            }
            Thread.detachNewThread {
                Thread.sleep(forTimeInterval: 30)
                if finished.withLock({ was in defer { was = true }; return !was }) { done.resume(returning: nil) }
            }
        }
        let files = try #require(collected, "collecting blocked (on the FIFO)")
        #expect(files.values.allSatisfy { !$0.contains("contributor") }, "the contributor's file was collected: \(files)")
        #expect(files.isEmpty, "\(files)")
    }

    /// An input whose name climbs out of the job's folder on disk, though split on Swift's characters it shows no
    /// "..": refused, and nothing is written outside (it wrote the contributor's `~/.ssh/authorized_keys`).
    @Test func anInputNameWhoseSlashHidesInACharacterWritesNothingOutside() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let job = scratch.appendingPathComponent("job")
        for name in ["\u{D4E}/../../escaped.txt", "\u{D4E}/../\u{301}\u{D4E}/../../escaped.txt", "/\u{301}tmp/escaped.txt"] {
            #expect(throws: GridError.self) { try JobFiles.unpack([(name: name, data: Data("owned".utf8))], into: job) }
        }
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/escaped.txt"))
        #expect(!FileManager.default.fileExists(atPath: root + "/escaped.txt"))
        let left = (try? FileManager.default.subpathsOfDirectory(atPath: root)) ?? []
        #expect(!left.contains { $0.hasSuffix("escaped.txt") }, "\(left)")
    }

    /// A job that makes many outputs with long names of `"` (legal names, twice as long in JSON) made a `JOB_DONE`
    /// over the line limit, which closed the worker's link each time it was sent again; past 1,000 files the manager
    /// refused it, and it stayed unacknowledged. Now the files listed stop at both limits, and say how many were left.
    @Test func manyLongNamedOutputsMakeAReportWithinTheManagersLimits() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let part = String(repeating: "\"", count: 255)
        let folder = [part, part, part].joined(separator: "/")
        try FileManager.default.createDirectory(at: scratch.appendingPathComponent(folder), withIntermediateDirectories: true)
        for i in 0..<1_200 { try write(folder + "/" + String(repeating: "\"", count: 240) + "\(i)", "") }
        let (files, skipped, leftOut) = JobFiles.collect(in: scratch, globs: [], inputs: [:], maxBytes: 1 << 20)
        #expect(!files.isEmpty && files.count <= WorkerClaims.files.upperBound)
        #expect(files.count + leftOut == 1_200 && skipped.count == 20)
        #expect(files.reduce(0) { $0 + $1.name.utf8.count } <= JobFiles.maxOutputNameBytes)
        // The report as the worker sends it, every output failed to save with a long reason: in the manager's ranges,
        // and one line under the limit.
        let long = String(repeating: "\"why ", count: 1_000)
        let done = Msg.JobDone(
            job: JobRef(jobId: 1, attempt: 1), outcome: .completed, exitCode: 0, runtimeMs: 1, peakMemoryKb: 1, cpuSeconds: 0,
            reason: "output too large: \(leftOut) file(s) left out", files: files.map { FileEntry(name: $0.name, size: $0.data.count) },
            logBytes: 0,
            saved: files.map { Msg.SavedOutput(name: $0.name, error: Msg.SavedOutput.oneLine(long, maxBytes: Msg.SavedOutput.maxErrorBytes)) })
        #expect(WorkerClaims.problem(.jobDone(done)) == nil)
        let line = try GridMessage.jobDone(done).encodeLine(id: 1, bulkBytes: 0)
        #expect(line.count < FrameLimits().maxLineBytes, "\(line.count) bytes")
        // A thousand small files with short names are all listed.
        try FileManager.default.removeItem(at: scratch)
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        for i in 0..<1_000 { try write("f\(i)", "x") }
        let all = JobFiles.collect(in: scratch, globs: [], inputs: [:], maxBytes: 1 << 20)
        #expect(all.files.count == 1_000 && all.leftOut == 0 && all.skipped.isEmpty)
    }

    /// A sparse file of a gigabyte costs the job no disk and no time; reading it whole cost the worker a gigabyte of
    /// memory before it found the file over the limit. Now a file over the room left is not read, and says so.
    @Test func aFileOverTheRoomLeftIsSkippedUnread() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try write("small.txt", "ok")
        let big = open(scratch.path + "/big.bin", O_WRONLY | O_CREAT, 0o644)
        #expect(big >= 0 && ftruncate(big, 1 << 30) == 0)
        close(big)
        let (files, skipped, _) = JobFiles.collect(in: scratch, globs: [], inputs: [:], maxBytes: 1 << 20)
        #expect(files.map(\.name) == ["small.txt"])
        #expect(skipped == ["big.bin"])
        #expect(JobFiles.readRegularFile("big.bin", in: scratch.path, limit: 1 << 20) == .tooLarge)
        #expect(JobFiles.readRegularFile("small.txt", in: scratch.path, limit: 2) == .data(Data("ok".utf8)))
        #expect(JobFiles.readRegularFile("small.txt", in: scratch.path, limit: 1) == .tooLarge)
        for bad in ["../secret.txt", "sub/../small.txt", "", "/etc/hostname", "sub//x"] {
            #expect(JobFiles.readRegularFile(bad, in: scratch.path, limit: 1 << 20) == .notARegularFile, "\(bad)")
        }
    }
}
