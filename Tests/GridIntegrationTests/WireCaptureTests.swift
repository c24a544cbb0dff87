import Foundation
import GridCore
import GridSandbox
import GridTestSupport
import Testing

/// Issue 11, acceptance 1: a grid that is genuinely not on loopback (a manager, two workers and a client, each in a
/// network namespace of its own on one bridge, with their own addresses), every packet on the bridge captured while a
/// user registers, submits a job, stores a value and a file, and reads them back through the other peer. No password,
/// token, value, file byte or job script crosses the wire in clear text.
extension Integration {
    @Suite(.serialized) struct WireCapture {
        static let capture = #"""
            import socket, sys, time
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(3))
            s.settimeout(0.2)
            end = time.time() + float(sys.argv[2])
            with open(sys.argv[1], "wb") as f:
                print("capturing", flush=True)
                while time.time() < end:
                    try:
                        f.write(s.recv(65535))
                        f.flush()
                    except socket.timeout:
                        pass
            """#

        /// Runs `args` to completion, throwing with its output when it fails.
        @discardableResult
        static func sh(_ args: String...) throws -> String { try runTool(args[0], Array(args.dropFirst())) }

        @Test(.enabled(if: getuid() == 0, "network namespaces need root"))
        func nothingReadableCrossesANonLoopbackGrid() async throws {
            let tag = UUID().uuidString.prefix(6).lowercased()
            let ip = "/usr/sbin/ip"
            let names = ["s", "m", "a", "b", "c"].map { "cgw-\(tag)-\($0)" }
            let (hub, nsM, nsA, nsB, nsC) = (names[0], names[1], names[2], names[3], names[4])
            defer { for n in names { _ = try? Self.sh(ip, "netns", "delete", n) } }
            for n in names {
                try Self.sh(ip, "netns", "add", n)
                try Self.sh(ip, "netns", "exec", n, ip, "link", "set", "lo", "up")
            }
            try Self.sh(ip, "netns", "exec", hub, ip, "link", "add", "br0", "type", "bridge")
            try Self.sh(ip, "netns", "exec", hub, ip, "link", "set", "br0", "up")
            let address = [nsM: "10.213.0.1", nsA: "10.213.0.2", nsB: "10.213.0.3", nsC: "10.213.0.4"]
            for (i, n) in [nsM, nsA, nsB, nsC].enumerated() {
                try Self.sh(ip, "link", "add", "cgv\(tag)\(i)", "netns", n, "type", "veth", "peer", "name", "cgp\(tag)\(i)", "netns", hub)
                try Self.sh(ip, "netns", "exec", n, ip, "addr", "add", address[n]! + "/24", "dev", "cgv\(tag)\(i)")
                try Self.sh(ip, "netns", "exec", n, ip, "link", "set", "cgv\(tag)\(i)", "up")
                try Self.sh(ip, "netns", "exec", hub, ip, "link", "set", "cgp\(tag)\(i)", "master", "br0")
                try Self.sh(ip, "netns", "exec", hub, ip, "link", "set", "cgp\(tag)\(i)", "up")
            }
            let grid = try TestGrid(label: "wire")
            defer { grid.shutdown() }
            let exec = { (ns: String) in [ip, "netns", "exec", ns] }

            // Every packet on the bridge's ports, from before the first connection.
            let script = grid.root + "/capture.py"
            try Self.capture.write(toFile: script, atomically: true, encoding: .utf8)
            let pcap = grid.root + "/wire.bin"
            let sniffer = grid.adopt(
                try ManagedProcess(
                    name: "capture", executable: ip, arguments: ["netns", "exec", hub, "/usr/bin/python3", script, pcap, "600"],
                    environment: grid.environment, logDirectory: grid.root))
            #expect(await sniffer.nextLine(timeout: 60) == "capturing")

            // The manager binds a campus address: TLS by default, nothing asked for.
            let manager = try grid.spawn(
                "manager",
                [
                    "manager", "--data-dir", grid.root + "/manager", "--host", "10.213.0.1", "--port", "0", "--dashboard-port", "0", "--json",
                    "--admin", "dora",
                ], launcher: exec(nsM))
            guard let line = await manager.nextLine(timeout: 60), let ready = try? JSONDecoder().decode([String: JSONValue].self, from: Data(line.utf8)),
                case .number(let gridPort)? = ready["grid_port"], case .number(let httpPort)? = ready["http_port"], ready["tls"] == .bool(true)
            else { throw TestGridError("the manager did not become ready with TLS:\n\(manager.errorLog.suffix(3000))") }
            let ca = grid.root + "/manager/ca.pem"
            let url = "https://10.213.0.1:\(Int(httpPort))"
            grid.launcher = exec(nsC)
            func cli(_ args: [String], token: String? = nil, stdin: String? = nil) async throws -> CLIResult {
                let r = try await grid.cli(args + ["--manager", url, "--ca", ca], token: token, stdin: stdin)
                guard r.status == 0 else { throw TestGridError("campusgrid \(args.joined(separator: " ")): \(r.stderr)") }
                return r
            }

            let password = "wire-secret-password-\(tag)"
            _ = try await cli(["register", "--username", "alice", "--password-stdin"], stdin: password + "\n")
            // A name the operator made an admin before its account existed is not for the first stranger to take: from
            // another machine its registration is refused.
            let squat = try await grid.cli(["register", "--username", "dora", "--password-stdin", "--manager", url, "--ca", ca], stdin: password + "\n")
            #expect(squat.status != 0 && squat.stderr.contains("kept for an admin"), "\(squat.stderr)")
            func field(_ json: String, _ key: String) -> String? {
                (try? JSONDecoder().decode([String: JSONValue].self, from: Data(json.utf8)))?[key].flatMap { if case .string(let s) = $0 { s } else { nil } }
            }
            let api = try #require(field(try await cli(["token", "create", "--api", "--json"]).stdout, "token"))
            let joinJSON = try await cli(["token", "create", "--worker", "--json"], token: api).stdout
            let join = try #require(field(joinJSON, "join"))
            let joinToken = try #require(field(joinJSON, "token"))
            var peerPorts: [Int] = []
            for (name, ns) in [("wa", nsA), ("wb", nsB)] {
                let w = try grid.spawn(
                    name,
                    [
                        "worker", "-m", "10.213.0.1:\(Int(gridPort))", "--token-file", try grid.tokenFile(join), "--data-dir", grid.root + "/\(name)",
                        "-n", name, "--cpus", "2", "--memory", "2", "--json",
                    ], launcher: exec(ns))
                guard let l = await w.nextLine(timeout: 90), let r = try? JSONDecoder().decode([String: JSONValue].self, from: Data(l.utf8)),
                    case .number(let port)? = r["port"]
                else { throw TestGridError("worker \(name) did not register:\n\(w.errorLog.suffix(3000))") }
                peerPorts.append(Int(port))
            }

            // A job whose script carries a secret, run to completion.
            let jobSecret = "wire-secret-job-\(tag)"
            let job = grid.root + "/job.py"
            try "print('\(jobSecret)'[::-1])\n".write(toFile: job, atomically: true, encoding: .utf8)
            let done = try await cli(["submit", job, "--wait", "--json", "--cpus", "1", "--ram", "0", "--minutes", "1"], token: api)
            #expect(done.stdout.contains("completed"), "\(done.stdout)")
            // A value and a file stored through worker A's peer port, read back through worker B's (the peers'
            // own replication crosses the bridge too).
            let value = "wire-secret-value-\(tag)"
            let fileText = "wire-secret-file-\(tag)"
            try fileText.write(toFile: grid.root + "/f.txt", atomically: true, encoding: .utf8)
            let a = ["--host", "10.213.0.2", "--port", "\(peerPorts[0])"]
            let b = ["--host", "10.213.0.3", "--port", "\(peerPorts[1])"]
            _ = try await cli(["set-mem"] + a + ["--key", "k", "--value", "\"\(value)\""], token: api)
            _ = try await cli(["put-file"] + a + ["--filename", "f.txt", "--filepath", grid.root + "/f.txt"], token: api)
            let got = try await cli(["get-mem"] + b + ["--key", "k"], token: api)
            #expect(got.stdout.contains(value))
            _ = try await cli(["get-file"] + b + ["--filename", "f.txt", "--save", grid.root + "/back.txt"], token: api)
            #expect((try? String(contentsOfFile: grid.root + "/back.txt", encoding: .utf8)) == fileText)

            // The control: bytes sent in clear text across the bridge are in the capture, so its silence means something.
            let control = "wire-control-marker-\(tag)"
            try Self.sh(
                ip, "netns", "exec", nsC, "/usr/bin/python3", "-c",
                "import socket; s = socket.create_connection(('10.213.0.1', \(Int(httpPort))), 10); s.sendall(b'\(control)\\r\\n'); s.close()")
            let seen = await eventually(timeout: 20) {
                ((try? Data(contentsOf: URL(fileURLWithPath: pcap)))?.range(of: Data(control.utf8))) != nil
            }
            #expect(seen, "the capture did not see a clear-text control sent across the bridge")

            sniffer.signal(SIGTERM)
            _ = await sniffer.waitForExit(timeout: 10)
            let wire = try Data(contentsOf: URL(fileURLWithPath: pcap))
            print("wire capture: \(wire.count) bytes on the bridge")
            #expect(wire.count > 20_000, "the capture saw only \(wire.count) bytes: it proves nothing")
            for (what, secret) in [
                ("the password", password), ("the API token", api), ("the join token", joinToken), ("the job's script", jobSecret),
                ("a memory value", value), ("a file's bytes", fileText), ("a protocol line", "\"type\":\"HELLO\""),
                ("an HTTP request", "Authorization: Bearer"),
            ] {
                #expect(wire.range(of: Data(secret.utf8)) == nil, "\(what) crossed the wire in clear text")
            }
        }
    }
}
