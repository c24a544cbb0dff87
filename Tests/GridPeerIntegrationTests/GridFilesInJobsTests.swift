import Foundation
import GridClient
import GridCore
import GridPeer
import GridProtocol
import GridTestSupport
import Testing

@Suite(.serialized) struct GridFilesInJobsTests {
    /// `submit --input grid:NAME --save-outputs PREFIX`: the worker fetches the input from the peers and stores the
    /// outputs back; the manager never sees either file's bytes. With `--verify`, the check run on the other owner's
    /// worker saves nothing, and the runs still agree: what the first run saved is a line of the job's history, not
    /// of its log.
    @Test func aJobReadsAStoredFileAndStoresItsOutputs() async throws {
        let g = try await PeerGrid(label: "grid-io")
        defer { g.shutdown() }
        let peers = [
            try await g.startPeer("bob-pc", owner: try await g.grid.user("bob")), try await g.startPeer("carol-pc", owner: try await g.grid.user("carol")),
        ]
        try await g.waitForMembership(peers)
        let dir = g.grid.root + "/client"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "3\n4\n5\n".write(toFile: dir + "/numbers.txt", atomically: true, encoding: .utf8)
        try "total = sum(int(x) for x in open('data/numbers.txt'))\nopen('total.txt', 'w').write(str(total))\nprint('total', total)\n"
            .write(toFile: dir + "/job.py", atomically: true, encoding: .utf8)
        let put = try await g.cli(["--port", "\(peers[0].port)", "put-file", "--filename", "data/numbers.txt", "--filepath", dir + "/numbers.txt"])
        #expect(put.status == 0, "\(put.stderr)")
        let submit = try await g.cli([
            "submit", dir + "/job.py", "--input", "grid:data/numbers.txt", "--save-outputs", "results/", "--output", "total.txt", "--verify",
            "--wait", "--json",
        ])
        #expect(submit.status == 0, "\(submit.stdout)\n\(submit.stderr)\n\(g.grid.logs())")
        let id = try #require(try? GridJSON.decode(API.JobStatus.self, from: Data(submit.stdout.utf8)).id, "\(submit.stdout)")
        var job: API.JobStatus?
        let verified = await eventually(timeout: 120) {
            job = try? await g.alice.job(id)
            return job?.verification?.state == .verified
        }
        #expect(verified, "\(String(describing: job?.verification))\n\(g.grid.logs().suffix(3000))")
        let history = (job?.events ?? []).compactMap(\.detail)
        #expect(history.contains("outputs saved in the grid as results/NAME: total.txt"), "\(history)")
        #expect(try await g.alice.logs(id, from: 0).text == "total 12\n")
        let get = try await g.cli(["--port", "\(peers[1].port)", "get-file", "--filename", "results/total.txt", "--save", dir + "/total.txt"])
        #expect(get.status == 0, "\(get.stderr)")
        #expect(try String(contentsOfFile: dir + "/total.txt", encoding: .utf8) == "12")
        // A missing grid input fails the job with a clear reason.
        let missing = try await g.cli(["submit", dir + "/job.py", "--input", "grid:nope.txt", "--wait"])
        #expect(missing.status != 0)
        #expect((missing.stdout + missing.stderr).contains("grid:nope.txt"), "\(missing.stdout)\(missing.stderr)")
    }

    /// The job's worker holds no copy of its grid input: it fetches the manifest from the peer that does, with the
    /// owner's read ticket from `JOB_ASSIGN` (a proven peer without a mandate reads no private key). One copy of each
    /// key; a first job fills one peer, so the second runs on the other.
    @Test func aJobOnAnotherPeerReadsItsGridInputWithTheOwnersReadTicket() async throws {
        let g = try await PeerGrid(label: "grid-io-remote")
        defer { g.shutdown() }
        let peers = [try await g.startPeer("p1", extra: ["--replicas", "1"]), try await g.startPeer("p2", extra: ["--replicas", "1"])]
        try await g.waitForMembership(peers)
        // Carol has opened no session at either peer (the membership checks were Alice's), so nothing of hers is
        // readable there but what a read ticket gives.
        let carol = try await g.grid.user("carol")
        let token = try #require(carol.token)
        let dir = g.grid.root + "/client"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "import time\ntime.sleep(120)\n".write(toFile: dir + "/hold.py", atomically: true, encoding: .utf8)
        let hold = try await g.grid.cli(["submit", dir + "/hold.py", "--cpus", "2", "--minutes", "5", "--json"], token: token)
        #expect(hold.status == 0, "\(hold.stderr)")
        let holdId = try #require(try? GridJSON.decode(API.SubmitResponse.self, from: Data(hold.stdout.utf8)).job.id, "\(hold.stdout)")
        let busyRunning = await eventually(timeout: 60) { (try? await carol.job(holdId).state) == .running }
        #expect(busyRunning, "the first job never ran")
        let busy = try #require(try await carol.job(holdId).workerId)
        // A name whose manifest (one copy) lives on the busy peer, so the other must fetch it.
        let name = try #require(
            (0..<1000).map { "data/in-\($0).txt" }.first { n in
                Rendezvous.owners(of: PeerNamespace.stored(n, user: "carol", kind: .file), among: peers.map(\.id), replicas: 1) == [busy]
            })
        try "3\n4\n5\n".write(toFile: dir + "/numbers.txt", atomically: true, encoding: .utf8)
        try "print('total', sum(int(x) for x in open('\(name)')))\n".write(toFile: dir + "/job.py", atomically: true, encoding: .utf8)
        let put = try await g.grid.cli(["--port", "\(peers[0].port)", "put-file", "--filename", name, "--filepath", dir + "/numbers.txt"], token: token)
        #expect(put.status == 0, "\(put.stderr)")
        let submit = try await g.grid.cli(["submit", dir + "/job.py", "--cpus", "2", "--input", "grid:\(name)", "--wait", "--json"], token: token)
        #expect(submit.status == 0, "\(submit.stdout)\n\(submit.stderr)\n\(g.grid.logs().suffix(3000))")
        let done = try? GridJSON.decode(API.JobStatus.self, from: Data(submit.stdout.utf8))
        #expect(done?.workerId != nil && done?.workerId != busy, "the job ran on the peer that holds its input: \(submit.stdout)")
        _ = try? await carol.cancel(holdId)
    }
}
