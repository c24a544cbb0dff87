import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A Docker Engine API client over a unix socket (Docker's, or Podman's Docker-compatible service): one connection
/// per request, HTTP/1.1 with `Connection: close`, blocking calls made from the job's own threads.
public struct DockerEngine: Sendable {
    /// The socket path (`unix://` prefixes are accepted).
    public let socketPath: String
    /// API version prefix every path is sent under.
    static let apiPrefix = "/v1.41"

    public init(socket: String) {
        socketPath = socket.hasPrefix("unix://") ? String(socket.dropFirst("unix://".count)) : socket
    }

    /// The engine sockets `auto` looks at, first found first: `$DOCKER_HOST` (unix only), Docker's, Podman's (root).
    public static func candidates(environment: [String: String]) -> [String] {
        var out: [String] = []
        if let host = environment["DOCKER_HOST"], host.hasPrefix("unix://") { out.append(String(host.dropFirst(7))) }
        out += ["/var/run/docker.sock", "/run/podman/podman.sock"]
        return out
    }

    /// A response: status and whole body.
    struct Response {
        var status: Int
        var body: [UInt8]
        var json: Any? { try? JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed]) }
        var message: String {
            ((json as? [String: Any])?["message"] as? String) ?? String(decoding: body.prefix(300), as: UTF8.self)
        }
    }

    /// Sends one request and reads the whole answer; `timeout` bounds each read (nil = wait as long as it takes).
    func call(_ method: String, _ path: String, json: Any? = nil, timeout: Double? = 30) throws -> Response {
        var body: [UInt8] = []
        let status = try stream(method, path, json: json, timeout: timeout) { bytes in
            body += bytes
            return body.count < 64 << 20
        }
        guard let status else { throw EngineError("the engine at \(socketPath) did not answer \(method) \(path)") }
        return Response(status: status, body: body)
    }

    /// Sends one request and hands the decoded body to `onBody` as it arrives until it returns false or the body
    /// ends; returns the status. `onHead` gets the status as soon as the response's head is in.
    @discardableResult
    func stream(
        _ method: String, _ path: String, json: Any? = nil, timeout: Double? = 30, onHead: ((Int) -> Void)? = nil, onBody: ([UInt8]) -> Bool
    ) throws -> Int? {
        let fd = try connect(timeout: timeout)
        defer { close(fd) }
        var payload: [UInt8] = []
        if let json { payload = Array(try JSONSerialization.data(withJSONObject: json)) }
        var head = "\(method) \(Self.apiPrefix)\(path) HTTP/1.1\r\nHost: engine\r\nConnection: close\r\nUser-Agent: campusgrid\r\n"
        if json != nil { head += "Content-Type: application/json\r\n" }
        head += "Content-Length: \(payload.count)\r\n\r\n"
        try send(fd, Array(head.utf8) + payload)

        var received: [UInt8] = []
        var parsed: EngineHTTP.Head?
        var chunked = EngineHTTP.ChunkedDecoder()
        var left: Int?
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw EngineError("reading from the engine at \(socketPath) failed: \(String(cString: strerror(errno)))") }
            let bytes = Array(buffer[0..<max(n, 0)])
            if parsed == nil {
                received += bytes
                guard let h = try EngineHTTP.parseHead(received) else {
                    if n == 0 { throw EngineError("the engine closed the connection before answering") }
                    continue
                }
                parsed = h
                onHead?(h.status)
                left = h.chunked ? nil : h.contentLength
                let rest = Array(received[h.length...])
                received = []
                if try !deliver(rest, head: h, chunked: &chunked, left: &left, onBody) { return h.status }
            } else if let h = parsed {
                if n == 0 { return h.status }
                if try !deliver(bytes, head: h, chunked: &chunked, left: &left, onBody) { return h.status }
            }
            if n == 0 { return parsed?.status }
        }
    }

    /// Passes body bytes on; false when the body is complete or the reader wants no more.
    private func deliver(
        _ bytes: [UInt8], head: EngineHTTP.Head, chunked: inout EngineHTTP.ChunkedDecoder, left: inout Int?, _ onBody: ([UInt8]) -> Bool
    ) throws -> Bool {
        if head.chunked {
            let body = try chunked.feed(bytes)
            if !body.isEmpty && !onBody(body) { return false }
            return !chunked.finished
        }
        if var l = left {
            let take = Array(bytes.prefix(l))
            l -= take.count
            left = l
            if !take.isEmpty && !onBody(take) { return false }
            return l > 0
        }
        return bytes.isEmpty ? true : onBody(bytes)
    }

    private func connect(timeout: Double?) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw EngineError("cannot make a socket: \(String(cString: strerror(errno)))") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let path = Array(socketPath.utf8)
        guard path.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            close(fd)
            throw EngineError("the engine socket path is too long: \(socketPath)")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: path)
            raw[path.count] = 0
        }
        if let timeout {
            var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard ok == 0 else {
            let why = String(cString: strerror(errno))
            close(fd)
            throw EngineError("cannot reach a container engine at \(socketPath): \(why)")
        }
        return fd
    }

    private func send(_ fd: Int32, _ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw EngineError("writing to the engine failed: \(String(cString: strerror(errno)))") }
            sent += n
        }
    }

    // MARK: - The API calls CampusGrid uses

    /// Whether the engine answers `/_ping` within `timeout` seconds (an engine busy on a loaded machine can be slow).
    public func ping(timeout: Double = 15) -> Bool {
        (try? call("GET", "/_ping", timeout: timeout))?.status == 200
    }

    /// What `/info` says about where containers run: rootless (`SecurityOptions` has `name=rootless`) and the cgroup
    /// version (`CgroupVersion`), or nil when the engine does not say.
    /// Podman's compatible `/info` says neither, so its own `/libpod/info` (`host.security.rootless`) is asked too; its answering at all says the engine is Podman.
    public func host() -> OCIRunner.EngineHost? {
        guard let r = try? call("GET", "/info", timeout: 10), r.status == 200, let info = r.json as? [String: Any] else { return nil }
        let options = (info["SecurityOptions"] as? [String]) ?? []
        var host = OCIRunner.EngineHost(rootless: options.contains { $0.contains("name=rootless") }, cgroupVersion: info["CgroupVersion"] as? String)
        if let p = try? call("GET", "/libpod/info", timeout: 10), p.status == 200,
            let podman = (p.json as? [String: Any])?["host"] as? [String: Any]
        {
            host.podman = true
            host.rootless = host.rootless || (podman["security"] as? [String: Any])?["rootless"] as? Bool ?? false
            if let v = podman["cgroupVersion"] as? String { host.cgroupVersion = v.hasPrefix("v") ? String(v.dropFirst()) : v }
        }
        return host
    }

    /// Whether `image` is present locally (never pulled: a worker runs only images its owner put there).
    public func hasImage(_ image: String) -> Bool {
        let name = image.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? image
        return (try? call("GET", "/images/\(name)/json", timeout: 10))?.status == 200
    }
}
