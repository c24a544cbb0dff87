import CGridSpawn
import Foundation
import Testing

@testable import GridSandbox

#if canImport(Glibc)
import Glibc
#endif

/// A job's process group is signalled while its leader is unreaped, and never after: the id may by then be another
/// program's (on a busy machine, recycled pids once killed other tests' workers).
@Suite struct GroupLeaderTests {
    /// Starts `/bin/sh -c script` leading a session (and group) of its own, as jobs and interpreters are started.
    func startLeader(_ script: String) throws -> GroupLeader {
        let argv: [UnsafeMutablePointer<CChar>?] = ["/bin/sh", "-c", script].map { (s: String) in strdup(s) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = ["PATH=/usr/bin:/bin"].map { (s: String) in strdup(s) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        let pid = grid_spawn("/bin/sh", argv, envp, "/", -1, nil, 0, 1, nil, 0, -1)
        try #require(pid > 0, "cannot start /bin/sh: \(String(cString: strerror(errno)))")
        return GroupLeader(pid: pid)
    }

    @Test func whatTheLeaderLeftInItsGroupDiesWithItAndTheGroupIsNeverSignalledAfterTheReaping() async throws {
        let file = NSTemporaryDirectory() + "campusgrid-group-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: file) }
        // The leader leaves a sleeper in its group and exits.
        let leader = try startLeader("sleep 60 & echo $! > \(file); exit 3")
        let ended = await Task.detached { leader.waitKillGroupAndReap() }.value
        #expect((ended.status >> 8) & 0xff == 3)
        let sleeper = try #require(pid_t(String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        // The sleeper was SIGKILLed with the group (it is reaped by init, so it disappears; bounded wait).
        var gone = false
        for _ in 0..<500 {
            let state = (try? String(contentsOfFile: "/proc/\(sleeper)/stat", encoding: .utf8))?.split(separator: " ").dropFirst(2).first
            if state == nil || state == "Z" {
                gone = true
                break
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(gone, "the leader's group outlived it")
        // Reaped: no signal goes to that group id any more.
        #expect(leader.signalGroup(SIGKILL) == false)
    }

    @Test func aRunningLeadersGroupCanBeSignalled() async throws {
        let leader = try startLeader("sleep 60")
        #expect(leader.signalGroup(SIGKILL))
        let ended = await Task.detached { leader.waitKillGroupAndReap() }.value
        #expect(ended.status & 0x7f == SIGKILL)
        #expect(leader.signalGroup(SIGTERM) == false)
    }
}

/// The marker scan reads a whole environment: a process whose environment is larger than a page, with the marker
/// last, is still found (`String(contentsOfFile:)` returns only a /proc file's first page; the scan reads to the end).
@Suite struct ProcessTreeTests {
    @Test func aMarkerPastTheFirstPageOfTheEnvironmentIsFound() async throws {
        let marker = UUID().uuidString
        let padding = (0..<40).map { "PAD\($0)=" + String(repeating: "x", count: 200) }
        let argv: [UnsafeMutablePointer<CChar>?] = ["/bin/sh", "-c", "exec sleep 60"].map { (s: String) in strdup(s) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] =
            (["PATH=/usr/bin:/bin"] + padding + ["\(ProcessTree.markerName)=\(marker)"]).map { (s: String) in strdup(s) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        let pid = grid_spawn("/bin/sh", argv, envp, "/", -1, nil, 0, 1, nil, 0, -1)
        try #require(pid > 0)
        let leader = GroupLeader(pid: pid)
        defer {
            leader.signalGroup(SIGKILL)
            _ = leader.waitKillGroupAndReap()
        }
        #expect(ProcessTree.pids(withMarker: marker) == [pid])
    }
}
