import Foundation
import GridClient
import GridCore
import GridSandbox
import GridTestSupport
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Issue 12, acceptance 3 and 4: a worker forced into the restricted tier is never a surprise.
@Suite(.serialized)
struct UnsandboxedWorkerTests {
    static func spec(_ name: String) -> JobSpec { JobSpec(name: name, minutes: 1, minTier: .restricted) }

    static func script(_ text: String) -> API.FileUpload { API.FileUpload(name: "main.py", contentBase64: Data(text.utf8).base64EncodedString()) }

    @Test func aRestrictedWorkerRunsOnlyItsOwnersJobsSaysWhatAJobCouldReachAndIsFlaggedEverywhere() async throws {
        let grid = try TestGrid(label: "unsandboxed")
        defer { grid.shutdown() }
        try await grid.startManager()
        let ann = try await grid.user("ann")
        let bob = try await grid.user("bob")
        let webPort = freeTCPPort()
        // Restricted, and without --allow-unsandboxed (the test grid's workers otherwise get it).
        let laptop = try await grid.startWorker(
            "ann-laptop", owner: ann, extra: ["--sandbox", "none", "--web-port", "\(webPort)"],
            extraEnvironment: ["CAMPUSGRID_ALLOW_UNSANDBOXED": "0"])

        // At start: one plain paragraph on what a job could reach and how to get a real sandbox.
        let warning = laptop.errorLog
        for needle in ["no real sandbox", "can read", "SSH keys", "network", "only your own jobs", "--allow-unsandboxed", "bubblewrap"] {
            #expect(warning.contains(needle), "start-up message lacks \(needle): \(warning.suffix(2000))")
        }

        // A stranger's job stays pending, with a reason that says why.
        let bobs = try await bob.submit(API.SubmitRequest(spec: Self.spec("bob's"), script: Self.script("print('bob ran')\n"), inputs: []))
        let explained = try await eventually(timeout: 20) {
            try await bob.job(bobs.job.id).pendingReason?.contains("--allow-unsandboxed") == true
        }
        let reason = try await bob.job(bobs.job.id).pendingReason
        #expect(explained, "pending reason: \(String(describing: reason))")

        // Its owner's own job runs there.
        let anns = try await ann.submit(API.SubmitRequest(spec: Self.spec("ann's"), script: Self.script("print('ann ran')\n"), inputs: []))
        let annDone = try await eventually(timeout: 60) { try await ann.job(anns.job.id).state == .completed }
        let annStatus = try await ann.job(anns.job.id)
        #expect(annDone, "\(annStatus)\n\(grid.logs().suffix(3000))")
        #expect(try await bob.job(bobs.job.id).state == .pending)

        // workers --json, the dashboard's workers page and the worker's status page flag it.
        let list = try await grid.cli(["workers", "--json"], token: bob.token)
        let row = try #require(
            ((try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [String: Any])?["workers"] as? [[String: Any]])?.first)
        #expect(row["unsandboxed"] as? Bool == true)
        #expect((row["sandbox"] as? [String: Any])?["accepts_others"] as? Bool == false, "\(row)")
        #expect((((row["sandbox"] as? [String: Any])?["skipped"] as? [String]) ?? []).isEmpty, "--sandbox none skips nothing")
        let table = try await grid.cli(["workers"], token: bob.token).stdout
        #expect(table.contains("UNSANDBOXED") && table.contains("owner's jobs only"), "\(table)")
        let dashboard = String(decoding: try await URLSession.shared.data(from: URL(string: grid.baseURL + "/workers")!).0, as: UTF8.self)
        #expect(dashboard.contains("unsandboxed") && dashboard.contains("runs only its owner"), "\(dashboard.suffix(3000))")
        let page = String(decoding: try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(webPort)/")!).0, as: UTF8.self)
        #expect(page.contains("restricted (best-effort)") && page.contains("no real sandbox") && page.contains("only its owner"), "\(page)")

        // Another worker that takes everyone's jobs runs the stranger's.
        try await grid.startWorker("lab", owner: ann)
        let bobDone = try await eventually(timeout: 60) { try await bob.job(bobs.job.id).state == .completed }
        #expect(bobDone)
        #expect(try await bob.job(bobs.job.id).worker == "lab")
    }
}
