import Foundation
import Testing

@testable import GridSandbox

#if canImport(Glibc)
import Glibc
#endif

/// Finding the deleted files a job's processes hold open (`DiskRule.openDeletedBytes`): disk no walk of its folder sees.
@Suite struct OpenDeletedFilesTests {
    /// The bytes of deleted files a process holds open, on the folder's disk only, each file once.
    @Test func openDeletedBytesAreFoundThroughTheHoldersDescriptors() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ready = dir + "/ready"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        // 4 MiB written, held open twice (fds 3 and 4), deleted; then it says so and waits.
        p.arguments = ["-c", "head -c 4194304 /dev/zero > \(dir)/f && exec 3<\(dir)/f 4<\(dir)/f && rm \(dir)/f && touch \(ready) && exec sleep 60"]
        try p.run()
        defer { p.terminate(); p.waitUntilExit() }
        try #require(waitFor(seconds: 30) { FileManager.default.fileExists(atPath: ready) })
        // The sh became sleep, and sleep kept the descriptors.
        let held = try #require(DiskRule.openDeletedBytes(of: [p.processIdentifier, p.processIdentifier], onDiskOf: dir))
        #expect(held >= 4 << 20 && held < 5 << 20, "\(held)")
        // On another file system (memory), it holds nothing; nor do processes that are not there.
        #expect(DiskRule.openDeletedBytes(of: [p.processIdentifier], onDiskOf: "/dev/shm") == 0)
        #expect(DiskRule.openDeletedBytes(of: [0, -1, .max], onDiskOf: dir) == 0)
    }

    /// The mappings of all of a job's processes are read to a budget in one look: past it, the look is incomplete
    /// (three in a row stop the job). A job's hundred processes with 15 MiB of mappings each cost a look ten seconds,
    /// and the next look waited ten times as long; the wait now follows the folder's walk alone.
    @Test func theProcessesMappingsAreReadToABudget() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let me = getpid()
        let mine = try #require(JobCgroup.readBytes("/proc/\(me)/maps")).count
        #expect(DiskRule.openDeletedBytes(of: [me], onDiskOf: dir) != nil)
        #expect(DiskRule.openDeletedBytes(of: [me], onDiskOf: dir, mapsBudget: mine + 4096) != nil)
        #expect(DiskRule.openDeletedBytes(of: [me], onDiskOf: dir, mapsBudget: mine / 2) == nil)
        // Across processes: two of them over a budget one fits.
        #expect(DiskRule.openDeletedBytes(of: [me, getppid()], onDiskOf: dir, mapsBudget: mine + 64) == nil)
        #expect(DiskRule.openDeletedBytes(of: [me], onDiskOf: dir, mapsBudget: 0) == nil)
        #expect(DiskRule.mapsBudget >= 4 * (1 << 20) && DiskRule.mapsBudget <= 256 << 20)
    }

    /// A file mapped, its descriptor closed, then deleted holds its blocks with no descriptor left: the mapping counts,
    /// as far as it reaches into the file (one page mapped at its end says the file is that long), and once however
    /// many forked processes share it.
    @Test func aDeletedFileOnlyMappedCountsToo() throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ready = dir + "/ready"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: SandboxHarness.python)
        p.arguments = [
            "-c",
            """
            import mmap, os, time
            with open("\(dir)/f", "wb") as f:
                f.write(b"x" * (6 << 20))
            f = open("\(dir)/f", "r+b")
            m = mmap.mmap(f.fileno(), 0)
            last = mmap.mmap(f.fileno(), 4096, offset=(6 << 20) - 4096)
            f.close()
            os.unlink("\(dir)/f")
            for _ in range(3):
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
            open("\(ready)", "w").close()
            time.sleep(60)
            """,
        ]
        try p.run()
        defer {
            for pid in ProcessTree.descendants(of: p.processIdentifier).reversed() { kill(pid, SIGKILL) }
            p.waitUntilExit()
        }
        try #require(waitFor(seconds: 30) { FileManager.default.fileExists(atPath: ready) })
        let family = ProcessTree.descendants(of: p.processIdentifier)
        #expect(family.count == 4, "\(family)")
        let held = try #require(DiskRule.openDeletedBytes(of: family, onDiskOf: dir))
        #expect(held == 6 << 20, "\(held)")
    }

    /// `/proc/PID/maps` names devices as `major:minor` in hex; `stat` as glibc's makedev does.
    @Test func mapsDeviceNumbersAreStatsOnes() throws {
        #expect(DiskRule.deviceNumber("fd:01") == 0xfd01)
        #expect(DiskRule.deviceNumber("00:1f") == 0x1f)
        // Major 0x103 (its low 12 bits at bit 8), minor 0x100 (its bits above the low 8 at bit 20).
        #expect(DiskRule.deviceNumber("103:100") == 0x110300)
        for bad in ["", "fd", "fd:", ":01", "zz:01", "fd:01:02", "-1:2", "100000000:0"] { #expect(DiskRule.deviceNumber(Substring(bad)) == nil, "\(bad)") }
        // The folder's own device, as a maps line would name it.
        var s = stat()
        try #require(stat(NSTemporaryDirectory(), &s) == 0)
        let dev = UInt64(s.st_dev)
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff))
        let minor = (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff))
        #expect(DiskRule.deviceNumber(Substring(String(major, radix: 16) + ":" + String(minor, radix: 16))) == dev)
    }

    /// Every process descended from one, however deep (a sandbox's Python is bubblewrap's grandchild).
    @Test func descendantsAreFoundAtAnyDepth() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "sh -c 'sleep 60 & wait' & wait"]
        try p.run()
        defer {
            for pid in ProcessTree.descendants(of: p.processIdentifier).reversed() { kill(pid, SIGKILL) }
            p.waitUntilExit()
        }
        let found = waitFor(seconds: 30) { ProcessTree.descendants(of: p.processIdentifier).count >= 3 }
        #expect(found, "\(ProcessTree.descendants(of: p.processIdentifier))")
        #expect(ProcessTree.descendants(of: p.processIdentifier).first == p.processIdentifier)
        #expect(ProcessTree.descendants(of: 0).isEmpty && ProcessTree.descendants(of: -1).isEmpty)
    }

    /// A new folder of this test's (the caller removes it).
    private func folder() throws -> String {
        let dir = NSTemporaryDirectory() + "campusgrid-opendeleted-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    private func waitFor(seconds: Double, _ condition: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }

}

/// What `podman unshare`'s measure of a rootless container's folder printed, read (pure).
@Suite struct RootlessFoldersTests {
    @Test func onlyTwoNonNegativeCountsAreAMeasure() {
        #expect(RootlessFolders.parse("1610612736\n3\n")! == (1_610_612_736, 3))
        #expect(RootlessFolders.parse(" 0 \n1")! == (0, 1))
        for bad in ["", "1\n", "1\n2\n3\n", "-1\n2\n", "1\n-2\n", "x\n2\n", "99999999999999999999\n1\n", "1.5\n2\n"] {
            #expect(RootlessFolders.parse(bad) == nil, "\(bad)")
        }
    }
}
