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
        let dir = NSTemporaryDirectory() + "campusgrid-opendeleted-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
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
        let held = DiskRule.openDeletedBytes(of: [p.processIdentifier, p.processIdentifier], onDiskOf: dir)
        #expect(held >= 4 << 20 && held < 5 << 20, "\(held)")
        // On another file system (memory), it holds nothing; nor do processes that are not there.
        #expect(DiskRule.openDeletedBytes(of: [p.processIdentifier], onDiskOf: "/dev/shm") == 0)
        #expect(DiskRule.openDeletedBytes(of: [0, -1, .max], onDiskOf: dir) == 0)
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
