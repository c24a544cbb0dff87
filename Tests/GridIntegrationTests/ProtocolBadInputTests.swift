import Foundation
import GridClient
import GridCore
import GridTestSupport
import Testing

/// Bad input on the grid port of a live manager: each gets an `ERROR` with a reason (or a clean close), and the
/// manager keeps serving.
extension Integration {
    @Suite struct ProtocolBadInput {
        static func code(_ message: [String: Any]?) -> String? {
            guard let m = message, m["type"] as? String == "ERROR" else { return nil }
            return m["code"] as? String
        }

        @Test func everyKindOfBadInputGetsAnErrorAndTheManagerSurvives() async throws {
            let grid = try TestGrid(label: "badproto")
            defer { grid.shutdown() }
            try await grid.startManager()
            let alice = try await grid.user("alice")
            let port = grid.gridPort

            // Before HELLO, malformed JSON and unknown types: an ERROR that says why, and the connection closes (a
            // stranger's lines of garbage were each answered and logged until its deadline).
            for (line, code, id) in [
                ("this is not json", "malformed_message", nil), (#"{"type":"NO_SUCH_THING","id":7}"#, "unknown_message", 7),
                (#"{"id":3}"#, "malformed_message", nil),
            ] as [(String, String, Int?)] {
                let c = try RawConnection(port: port)
                c.send(line + "\n")
                let reply = c.readMessage()
                #expect(Self.code(reply) == code, "\(line)")
                if let id { #expect(reply?["id"] as? Int == id, "the reply echoes the request id") }
                #expect(c.isClosed(), "\(line)")
            }
            // A PING before HELLO is answered, and the connection stays.
            let c1 = try RawConnection(port: port)
            c1.send(#"{"type":"PING","id":9}"# + "\n")
            #expect(c1.readMessage()?["type"] as? String == "PONG")

            // A message before HELLO: refused and closed.
            c1.send(#"{"type":"LOAD_UPDATE","id":1,"load":0,"running":[]}"# + "\n")
            #expect(Self.code(c1.readMessage()) == "not_authenticated")
            #expect(c1.isClosed())

            // A wrong token.
            let c2 = try RawConnection(port: port)
            c2.send(#"{"type":"HELLO","id":1,"version":2,"token":"cgw_wrong"}"# + "\n")
            #expect(Self.code(c2.readMessage()) == "unauthorized")
            #expect(c2.isClosed())

            // An unsupported protocol version.
            let c3 = try RawConnection(port: port)
            c3.send(#"{"type":"HELLO","id":1,"version":99,"token":"x"}"# + "\n")
            #expect(Self.code(c3.readMessage()) == "version_mismatch")

            // An over-long line: refused before its end arrives.
            let c4 = try RawConnection(port: port)
            c4.send([UInt8](repeating: UInt8(ascii: "a"), count: (1 << 20) + 10))
            #expect(Self.code(c4.readMessage(timeout: 10)) == "line_too_long")
            #expect(c4.isClosed())

            // A bulk length over the limit.
            let c5 = try RawConnection(port: port)
            c5.send(#"{"type":"JOB_LOG","id":2,"bytes":999999999999}"# + "\n")
            #expect(Self.code(c5.readMessage()) == "bulk_too_large")
            #expect(c5.isClosed())

            // A bulk message before HELLO: refused from its line, its bytes never kept (a truncated payload is the
            // FrameParser tests' business: only an authenticated side may send one).
            let c6 = try RawConnection(port: port)
            c6.send(#"{"type":"JOB_LOG","id":4,"bytes":100}"# + "\n" + "only ten b")
            #expect(Self.code(c6.readMessage()) == "not_authenticated")
            #expect(c6.isClosed())

            // A stream that ends inside a line.
            let c6b = try RawConnection(port: port)
            c6b.send(#"{"type":"PING","id":4"#)
            c6b.shutdownWrite()
            #expect(Self.code(c6b.readMessage()) == "truncated")

            // A message that decodes but has the wrong fields.
            let c7 = try RawConnection(port: port)
            c7.send(#"{"type":"HELLO","id":5,"version":"one"}"# + "\n")
            #expect(Self.code(c7.readMessage()) == "malformed_message")

            // The manager still serves workers and users.
            let owner = try await grid.user("owner")
            try await grid.startWorker("w1", owner: owner)
            let script = grid.root + "/after.py"
            try "print('still alive')\n".write(toFile: script, atomically: true, encoding: .utf8)
            let r = try await grid.cli(["submit", script, "--follow"], token: alice.token!)
            #expect(r.status == 0 && r.stdout.contains("still alive"), "\(r.stderr)")
        }

        @Test func aRegisteredWorkerConnectionSurvivesMalformedMessages() async throws {
            let grid = try TestGrid(label: "badproto2")
            defer { grid.shutdown() }
            // This raw worker sends no heartbeat: a lease long enough that it is still online when the test looks.
            try await grid.startManager(leaseSeconds: 30)
            let owner = try await grid.user("owner")
            let token = try await owner.createToken(kind: "worker").token
            let c = try RawConnection(port: grid.gridPort)
            c.send(#"{"type":"HELLO","id":1,"version":2,"token":"\#(token)","name":"raw"}"# + "\n")
            #expect(c.readMessage()?["type"] as? String == "HELLO_OK")
            c.send(#"{"type":"LOAD_UPDATE","id":2,"load":0,"running":[]}"# + "\n")
            #expect(Self.code(c.readMessage()) == "bad_request", "REGISTER must come first")
            c.send(
                #"{"type":"REGISTER","id":3,"resources":{"cpus":1,"ram_gb":1,"gpus":0,"gpu_memory_gb":0},"gpu_names":[],"tier":"restricted","slots":1,"running":[]}"#
                    + "\n")
            #expect(c.readMessage()?["type"] as? String == "REGISTERED")
            c.send("{broken\n")
            #expect(Self.code(c.readMessage()) == "malformed_message")
            c.send(#"{"type":"JOB_DONE","id":4}"# + "\n")
            #expect(Self.code(c.readMessage()) == "malformed_message")
            c.send(#"{"type":"PING","id":5}"# + "\n")
            #expect(c.readMessage()?["type"] as? String == "PONG")
            let online = try await owner.workers().workers.filter(\.online).map(\.name)
            #expect(online == ["raw"])
        }
    }
}
