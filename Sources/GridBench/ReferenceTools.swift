import Foundation
import GridSandbox

/// The reference tools, found on this machine: `scripts/bench-reference` (Dask and Ray in its virtualenv),
/// redis-server and nginx (from apt). Each is started here, on 127.0.0.1 and a free port, and stopped by pid.
struct ReferenceTools {
    /// The repository checkout holding `scripts/bench-reference`, if found.
    var repository: String?
    /// Whether missing tools may be installed (`scripts/bench-reference install`) before use.
    var install: Bool
    /// Whether the Python references (slow to start: Ray takes seconds) run at all.
    var runPython: Bool

    var script: String? { repository.map { $0 + "/scripts/bench-reference" }.flatMap { FileManager.default.isExecutableFile(atPath: $0) ? $0 : nil } }

    /// Installs what is missing, once; returns why it could not, if it could not.
    func prepare(log: (String) -> Void) -> String? {
        guard let script else { return "scripts/bench-reference not found (run the bench from the repository, or pass --repository)" }
        if (try? Shell.run(script, ["check"], timeout: 60))?.status == 0 { return nil }
        guard install else { return "reference tools not installed: run scripts/bench-reference install" }
        log("installing the reference tools (scripts/bench-reference install)…")
        guard let r = try? Shell.run(script, ["install"], timeout: 900), r.status == 0 else {
            return "scripts/bench-reference install failed"
        }
        return nil
    }

    struct PythonRun {
        var name: String
        var tasksPerSecond: [Double]
        var roundTripMs: [Double]
    }

    /// Runs the function-task workload on `framework` (dask or ray) through the script.
    func pythonTasks(_ framework: String, sizes: BenchSizes, log: (String) -> Void) -> Result<PythonRun, BenchError> {
        guard runPython else { return .failure(BenchError("not run in this mode (Python references are skipped with --tiny)")) }
        guard let script else { return .failure(BenchError("scripts/bench-reference not found")) }
        log("  running \(framework) (\(sizes.tasks) tasks × \(sizes.taskRepeats), \(sizes.roundTrips) round trips)…")
        let result: Shell.Result
        do {
            result = try Shell.run(
                script, ["run", "\(sizes.tasks)", "\(sizes.roundTrips)", "\(sizes.taskRepeats)", framework], timeout: 660)
        } catch {
            return .failure(BenchError("\(error)"))
        }
        let line = result.stdout.split(separator: "\n").last.map(String.init) ?? ""
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            return .failure(BenchError("bench-reference printed no result: \(result.stderr.suffix(400))"))
        }
        if let error = object["error"] as? String { return .failure(BenchError("bench-reference: \(error.suffix(400))")) }
        guard let run = object[framework] as? [String: Any] else { return .failure(BenchError("bench-reference printed no \(framework) result")) }
        if let error = run["error"] as? String { return .failure(BenchError("\(framework) failed: \(error.suffix(400))")) }
        guard let rates = run["tasks_per_s"] as? [Double], let trips = run["round_trip_ms"] as? [Double] else {
            return .failure(BenchError("\(framework) result without samples"))
        }
        let python = run["python"] as? String ?? "?"
        return .success(PythonRun(name: "\(run["name"] as? String ?? framework), Python \(python)", tasksPerSecond: rates, roundTripMs: trips))
    }

    /// Starts redis-server (no persistence) on a free port; with `replicaOf`, as a replica of the server on that port.
    func startRedis(scratch: String, replicaOf primary: Int? = nil) throws -> (server: ServerProcess, port: Int, name: String) {
        guard let path = Shell.which("redis-server") else { throw BenchError("redis-server not installed: run scripts/bench-reference install") }
        let version = Shell.output(path, ["--version"], timeout: 10)?.split(separator: " ").first { $0.hasPrefix("v=") }.map { $0.dropFirst(2) } ?? "?"
        let dir = scratch + (primary == nil ? "/redis" : "/redis-replica")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let port = try Shell.freePort()
        let server = try ServerProcess(
            name: primary == nil ? "redis-server" : "redis-replica", path: path,
            arguments: [
                "--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", dir, "--maxclients", "1000",
            ] + (primary.map { ["--replicaof", "127.0.0.1", "\($0)"] } ?? []))
        guard Shell.waitForPort(port, timeout: 20) else {
            server.stop()
            throw BenchError("redis-server did not start: \(server.errorLog.suffix(400))")
        }
        return (server, port, "redis-server \(version) (same Swift load generator, RESP)")
    }

    /// A Redis primary with one replica in sync (checked with `WAIT 1`, bounded: 40 tries of 250 ms).
    func startRedisWithReplica(scratch: String) async throws -> (servers: [ServerProcess], port: Int, name: String) {
        let primary = try startRedis(scratch: scratch)
        var replica: ServerProcess?
        do {
            replica = try startRedis(scratch: scratch, replicaOf: primary.port).server
            let probe = try await RESPConnection.connect(port: primary.port)
            var synced = false
            var failure: (any Error)?
            do {
                for _ in 0..<40 where !synced {
                    try await probe.set("bench:replica-probe", Array("x".utf8))
                    synced = try await probe.wait(replicas: 1, timeoutMs: 250) >= 1
                }
            } catch {
                failure = error
            }
            await probe.close()
            if let failure { throw failure }
            guard synced, let replica else { throw BenchError("the Redis replica never caught up: \(replica?.errorLog.suffix(300) ?? "")") }
            let version = primary.name.split(separator: " ").prefix(2).joined(separator: " ")
            return ([replica, primary.server], primary.port, "\(version) + 1 replica, WAIT 1 0 after each SET (same load generator)")
        } catch {
            replica?.stop()
            primary.server.stop()
            throw error
        }
    }

    /// Receives `path` with nginx `repeats` times (after one warm-up), uploaded by `curl -T`: nginx writes each request
    /// body to a file on disk (`client_body_in_file_only`), as a peer stores what it is sent; returns MB/s samples.
    func nginxPut(root: String, path: String, bytes: Int, repeats: Int) throws -> (name: String, samples: [Double]) {
        let dir = root + "/nginx-put"
        try FileManager.default.createDirectory(atPath: dir + "/tmp-body", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let nginx = try startNginx(dir: dir) { port in
            """
            location /upload {
                client_max_body_size 0;
                client_body_in_file_only clean;
                client_body_buffer_size 1m;
                proxy_pass_request_body off;
                proxy_set_header Content-Length "";
                proxy_pass http://127.0.0.1:\(port)/stored;
            }
            location /stored { return 204; }
            """
        }
        defer { nginx.server.stop() }
        let port = nginx.port
        let version = nginx.version
        var samples: [Double] = []
        for i in 0...repeats {
            Stats.settleDisk()
            let r = try Shell.run(
                "curl", ["-sS", "-o", "/dev/null", "-T", path, "-w", "%{size_upload} %{time_total} %{http_code}", "http://127.0.0.1:\(port)/upload"],
                timeout: 300)
            let parts = r.stdout.split(separator: " ")
            guard r.status == 0, parts.count == 3, let size = Double(parts[0]), let seconds = Double(parts[1]), Int(size) == bytes, seconds > 0,
                parts[2] == "204"
            else { throw BenchError("curl upload to nginx failed: \(r.stderr.suffix(300)) \(r.stdout.suffix(100))") }
            if i > 0 { samples.append(size / seconds / 1e6) }
        }
        return ("nginx \(version) over loopback, curl -T uploading, nginx writing the body to disk", samples)
    }

    /// Serves `root/www/file` with nginx on a free port and downloads it `repeats` times with curl (after one
    /// warm-up), into a file under `root` as the peers' download does (`save`), or into /dev/null; returns MB/s samples.
    func nginxGet(root: String, file: String, bytes: Int, repeats: Int, save: Bool) throws -> (name: String, samples: [Double]) {
        let nginx = try startNginx(dir: root) { _ in "root \(root)/www;" }
        defer { nginx.server.stop() }
        let port = nginx.port
        let version = nginx.version
        var samples: [Double] = []
        // Saving, curl writes the file in the same folder the peers' download writes to: both sides write what they read.
        let target = save ? root + "/nginx-got.bin" : "/dev/null"
        defer { if save { unlink(target) } }
        for i in 0...repeats {
            Stats.settleDisk()
            let r = try Shell.run(
                "curl", ["-sS", "-o", target, "-w", "%{size_download} %{time_total}", "http://127.0.0.1:\(port)/\(file)"], timeout: 300)
            let parts = r.stdout.split(separator: " ")
            guard r.status == 0, parts.count == 2, let size = Double(parts[0]), let seconds = Double(parts[1]), Int(size) == bytes, seconds > 0 else {
                throw BenchError("curl from nginx failed: \(r.stderr.suffix(300)) \(r.stdout.suffix(100))")
            }
            if i > 0 { samples.append(size / seconds / 1e6) }
        }
        return ("nginx \(version) over loopback, curl \(save ? "saving to disk" : "discarding")", samples)
    }

    /// Starts nginx (one process, in the foreground, files under `dir`) on a free loopback port, with `server` (given
    /// the port) as the body of its one server block; waits until it listens.
    func startNginx(dir: String, server body: (Int) -> String) throws -> (server: ServerProcess, port: Int, version: String) {
        guard let nginx = Shell.which("nginx") else { throw BenchError("nginx not installed: run scripts/bench-reference install") }
        guard Shell.which("curl") != nil else { throw BenchError("curl not installed: run scripts/bench-reference install") }
        let version = (try? Shell.run(nginx, ["-v"], timeout: 10))?.stderr.split(separator: "/").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
        let port = try Shell.freePort()
        let conf = """
            daemon off;
            master_process off;
            worker_processes 1;
            user root;
            pid \(dir)/nginx.pid;
            error_log \(dir)/nginx-error.log;
            events { worker_connections 64; }
            http {
                access_log off;
                sendfile on;
                tcp_nopush on;
                client_body_temp_path \(dir)/tmp-body;
                proxy_temp_path \(dir)/tmp-proxy;
                fastcgi_temp_path \(dir)/tmp-fastcgi;
                uwsgi_temp_path \(dir)/tmp-uwsgi;
                scgi_temp_path \(dir)/tmp-scgi;
                server {
                    listen 127.0.0.1:\(port);
            \(body(port))
                }
            }
            """
        try conf.write(toFile: dir + "/nginx.conf", atomically: true, encoding: .utf8)
        let server = try ServerProcess(name: "nginx", path: nginx, arguments: ["-c", dir + "/nginx.conf", "-p", dir, "-e", dir + "/nginx-error.log"])
        guard Shell.waitForPort(port, timeout: 20) else {
            server.stop()
            throw BenchError("nginx did not start: \(server.errorLog.suffix(400))")
        }
        return (server, port, version)
    }
}
