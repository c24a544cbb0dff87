import Foundation
import GridTestSupport
import Testing

/// The CLI against a manager it cannot use says so at once, with what to do: no manager listening, or a manager whose
/// certificate it does not trust (`TLS` covers the second with a real TLS manager).
@Suite struct CLIUnreachableTests {
    @Test func aCommandWithNoManagerListeningSaysSoAndHowToStartOne() async throws {
        let grid = try TestGrid(label: "nomanager")
        defer { grid.shutdown() }
        // Port 1 on loopback: nothing listens there, so the connection is refused. The CLI used to retry that until its
        // request's deadline and answered a minute later; the bound here is far below that, and far above a loaded
        // machine's start of the binary.
        let started = Date()
        let r = try await grid.cli(["whoami", "--manager", "http://127.0.0.1:1"], token: "cgu_not_a_real_token", timeout: 45)
        #expect(r.status != 0)
        #expect(r.stderr.contains("cannot reach the manager at http://127.0.0.1:1") && r.stderr.contains("campusgrid up"), "\(r.stderr)")
        #expect(Date().timeIntervalSince(started) < 45, "the CLI waited for retries instead of saying so")
    }

    @Test func anHTTPSURLForAManagerWithoutTLSSaysTheHandshakeFailedNotThatACertificateIsUntrusted() async throws {
        let grid = try TestGrid(label: "httpsplain")
        defer { grid.shutdown() }
        try await grid.startManager()
        let url = "https://127.0.0.1:\(grid.httpPort)"
        let r = try await grid.cli(["whoami", "--manager", url], token: "cgu_not_a_real_token", timeout: 45)
        #expect(r.status != 0)
        #expect(r.stderr.contains("TLS handshake with the manager at \(url) failed") && r.stderr.contains("http:// URL"), "\(r.stderr)")
        #expect(!r.stderr.contains("does not trust"), "\(r.stderr)")
    }
}
