import Foundation
import GridSandbox
import GridTestSupport
import Testing

/// The CLI against a hostile manager (a user pointed `--manager` at the wrong host, or the manager passes on what a
/// stranger's worker sent): a real `campusgrid` against a small HTTP server of the test's own, on loopback, that answers
/// as no honest manager would.
@Suite struct HostileManagerCLITests {
    static let server = #"""
        import json, sys
        from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, code, body, headers=()):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.startswith("/api/v1/jobs/1/logs"):
                    # Text, but a `next` that never moves on.
                    return self.reply(200, {"offset": 0, "next": 0, "text": "again\n", "state": "running", "done": False})
                if self.path.startswith("/api/v1/jobs/2/logs"):
                    text = "\x1b]52;c;aGk=\x07progress 50%\rprogress 100%\n"
                    return self.reply(200, {"offset": 0, "next": len(text.encode()), "text": text, "state": "completed", "done": True})
                if self.path.startswith("/stolen"):
                    print("STOLEN GET", flush=True)
                    return self.reply(200, {})
                self.reply(404, {"error": {"code": "not_found", "message": "no \x1b]0;pwned\x07such \x1b[2Jthing"}})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path.startswith("/stolen"):
                    print("STOLEN " + body.decode(errors="replace"), flush=True)
                    return self.reply(200, {})
                if self.path.startswith("/api/v1/login"):
                    return self.reply(307, b"", [("Location", "http://127.0.0.1:%d/stolen" % self.server.server_port)])
                self.reply(404, {"error": {"code": "not_found", "message": "no"}})

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        print(server.server_port, flush=True)
        server.serve_forever()
        """#

    /// The server, and the URL the CLI is pointed at.
    func start(_ grid: TestGrid) async throws -> (ManagedProcess, String) {
        let path = grid.root + "/hostile_manager.py"
        try Self.server.write(toFile: path, atomically: true, encoding: .utf8)
        let p = grid.adopt(
            try ManagedProcess(name: "hostile-manager", executable: TestPython.path, arguments: [path], environment: grid.environment, logDirectory: grid.root))
        let port = try #require(await p.nextLine(timeout: 60), "the server did not start:\n\(p.errorLog)")
        return (p, "http://127.0.0.1:\(port)")
    }

    @Test func aLogAnswerThatNeverMovesOnEndsLogsWithAnErrorInsteadOfPrintingItForEver() async throws {
        let grid = try TestGrid(label: "hostile-logs")
        defer { grid.shutdown() }
        let (_, url) = try await start(grid)
        let r = try await grid.cli(["logs", "1", "--manager", url], token: "cgu_x", timeout: 60)
        #expect(r.status != 0, "logs ended by itself")
        #expect(r.stderr.contains("does not follow from it"), "\(r.stderr)")
        #expect(r.stdout.utf8.count < 10_000, "it printed the same text \(r.stdout.utf8.count / 6) times")
    }

    @Test func aLogGoesByteForByteToAFileAndTheManagersMessagesShowTheirControls() async throws {
        let grid = try TestGrid(label: "hostile-text")
        defer { grid.shutdown() }
        let (_, url) = try await start(grid)
        // Standard output here is a pipe, as `logs 2 > out.txt` is: the log exactly as the job wrote it.
        let log = try await grid.cli(["logs", "2", "--manager", url], token: "cgu_x", timeout: 60)
        #expect(log.status == 0, "\(log.stderr)")
        #expect(log.stdout == "\u{1B}]52;c;aGk=\u{7}progress 50%\rprogress 100%\n")
        // What the CLI says itself (an error the manager worded) shows the controls, whatever it goes to.
        let status = try await grid.cli(["status", "9", "--manager", url], token: "cgu_x", timeout: 60)
        #expect(status.status != 0)
        #expect(status.stderr.contains("no ^[]0;pwned^Gsuch ^[[2Jthing"), "\(status.stderr)")
        #expect(!status.stderr.unicodeScalars.contains("\u{1B}"), "\(status.stderr.debugDescription)")
    }

    @Test func aRedirectIsNotFollowedSoAPasswordGoesNowhereElse() async throws {
        let grid = try TestGrid(label: "hostile-redirect")
        defer { grid.shutdown() }
        let (server, url) = try await start(grid)
        let r = try await grid.cli(
            ["login", "--manager", url, "--username", "alice", "--password-stdin"], stdin: "correct horse battery\n", timeout: 60)
        #expect(r.status != 0)
        #expect(r.stderr.contains("307"), "\(r.stderr)")
        // Ask once more for something the server prints, so that anything it printed before is read by now.
        _ = try await grid.cli(["status", "9", "--manager", url], token: "cgu_x", timeout: 60)
        #expect(!server.output.contains { $0.hasPrefix("STOLEN") }, "the CLI followed the redirect: \(server.output)")
    }
}
