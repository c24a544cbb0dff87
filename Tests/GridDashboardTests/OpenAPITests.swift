import Foundation
import GridClient
import GridCore
import GridTestSupport
import Testing

/// `/openapi.json` against a live manager: schemathesis (from PyPI, installed by `scripts/setup`) generates requests
/// from the document and checks every response against it.
@Suite(.serialized) struct OpenAPITests {
    @Test(.timeLimit(.minutes(10)))
    func schemathesisFindsNoServerErrorAndNoResponseOutsideTheDocument() async throws {
        let schemathesis = try #require(
            DashboardTools.executable([DashboardTools.repositoryRoot.appendingPathComponent(".build-venv/bin/schemathesis").path]),
            "schemathesis is missing: run scripts/setup")
        let grid = try TestGrid(label: "openapi")
        defer { grid.shutdown() }
        try await grid.startManager()
        let user = try await grid.user("schema")
        // Real data to find: a worker, a finished job with an output.
        try await grid.startWorker("schema-worker", owner: user, cpus: 2, memoryGb: 2)
        let script = Data("open('out.txt', 'w').write('x')\nprint('hi')\n".utf8).base64EncodedString()
        let job = try await user.submit(
            API.SubmitRequest(spec: JobSpec(name: "schema-job", minutes: 1, minTier: .restricted), script: .init(name: "job.py", contentBase64: script), inputs: []))
        let ended = try await eventually(timeout: 60) { try await user.job(job.job.id).state.isFinal }
        #expect(ended)

        let report = DashboardTools.artifacts.appendingPathComponent("schemathesis")
        try? FileManager.default.removeItem(at: report)
        let run = try DashboardTools.Tool(
            schemathesis,
            [
                "run", grid.baseURL + "/openapi.json", "--url", grid.baseURL,
                "--header", "Authorization: Bearer \(user.token ?? "")",
                "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
                "--phases", "examples,coverage,fuzzing", "--max-examples", "60", "--workers", "1", "--request-timeout", "40",
                "--exclude-path", "/api/v1/logout",
                "--report", "junit", "--report-dir", report.path, "--no-color",
            ],
            environment: ["SCHEMATHESIS_HOOKS": "", "HOME": grid.root],
            outputPath: grid.root + "/schemathesis.log", directory: grid.root)
        let status = try await run.wait(timeout: 480)
        try? run.output.write(to: DashboardTools.artifacts.appendingPathComponent("schemathesis.log"), atomically: true, encoding: .utf8)
        #expect(status == 0, "schemathesis reported problems:\n\(run.output.suffix(8000))\n\(grid.logs().suffix(3000))")
        // The user's token still works: the run never logged it out (logout is checked on its own below).
        #expect(try await user.me().username == "schema")
    }

    @Test func logoutRevokesTheTokenItWasSent() async throws {
        let grid = try TestGrid(label: "logout")
        defer { grid.shutdown() }
        try await grid.startManager()
        let user = try await grid.user("leaving")
        #expect(try await user.me().username == "leaving")
        try await user.logout()
        await #expect(throws: (any Error).self) { try await user.me() }
    }
}
