import Foundation
import GridClient
import GridCore
import GridProtocol
import GridTestSupport
import Testing

@Suite(.serialized) struct GridFilesInJobsTests {
    /// `submit --input grid:NAME --save-outputs PREFIX`: the worker fetches the input from the peers and stores the
    /// outputs back; the manager never sees either file's bytes.
    @Test func aJobReadsAStoredFileAndStoresItsOutputs() async throws {
        let g = try await PeerGrid(label: "grid-io")
        defer { g.shutdown() }
        let peers = try await g.startPeers(2)
        let dir = g.grid.root + "/client"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "3\n4\n5\n".write(toFile: dir + "/numbers.txt", atomically: true, encoding: .utf8)
        try "total = sum(int(x) for x in open('data/numbers.txt'))\nopen('total.txt', 'w').write(str(total))\nprint('total', total)\n"
            .write(toFile: dir + "/job.py", atomically: true, encoding: .utf8)
        let put = try await g.cli(["--port", "\(peers[0].port)", "put-file", "--filename", "data/numbers.txt", "--filepath", dir + "/numbers.txt"])
        #expect(put.status == 0, "\(put.stderr)")
        let submit = try await g.cli([
            "submit", dir + "/job.py", "--input", "grid:data/numbers.txt", "--save-outputs", "results/", "--output", "total.txt", "--wait",
        ])
        #expect(submit.status == 0, "\(submit.stdout)\n\(submit.stderr)\n\(g.grid.logs())")
        let get = try await g.cli(["--port", "\(peers[1].port)", "get-file", "--filename", "results/total.txt", "--save", dir + "/total.txt"])
        #expect(get.status == 0, "\(get.stderr)")
        #expect(try String(contentsOfFile: dir + "/total.txt", encoding: .utf8) == "12")
        // A missing grid input fails the job with a clear reason.
        let missing = try await g.cli(["submit", dir + "/job.py", "--input", "grid:nope.txt", "--wait"])
        #expect(missing.status != 0)
        #expect((missing.stdout + missing.stderr).contains("grid:nope.txt"), "\(missing.stdout)\(missing.stderr)")
    }
}
