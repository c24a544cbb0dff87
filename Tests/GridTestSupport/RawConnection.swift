import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A plain TCP connection to 127.0.0.1 for speaking the grid protocol byte by byte, as `nc` would.
public final class RawConnection {
    private let fd: Int32
    private var buffer: [UInt8] = []

    public init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestGridError("socket() failed") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            throw TestGridError("cannot connect to 127.0.0.1:\(port)")
        }
    }

    deinit { close(fd) }

    /// Sends bytes; returns false if the peer has closed.
    @discardableResult
    public func send(_ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            sent += n
        }
        return true
    }

    @discardableResult
    public func send(_ text: String) -> Bool { send(Array(text.utf8)) }

    /// Shrinks the socket's receive buffer (a peer that reads slowly, or not at all, fills up at once).
    public func shrinkReceiveBuffer(to bytes: Int32 = 4096) {
        var size = bytes
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Closes the sending side (the peer sees end of stream, can still answer).
    public func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Appends what arrives before `deadline` to the buffer; false on close or time-out.
    private func receive(until deadline: Date) -> Bool {
        let left = deadline.timeIntervalSinceNow
        if left <= 0 { return false }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(left * 1000)) > 0 else { return false }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = recv(fd, &chunk, chunk.count, 0)
        if n <= 0 { return false }
        buffer += chunk[0..<n]
        return true
    }

    /// The next line received (without the newline), or nil on close or after `timeout` seconds.
    public func readLine(timeout: Double = 5) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let nl = buffer.firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeSubrange(...nl)
                return line
            }
            guard receive(until: deadline) else { return nil }
        }
    }

    /// The next `count` raw bytes (a frame's bulk payload), or nil on close or after `timeout` seconds.
    public func readBytes(_ count: Int, timeout: Double = 5) -> [UInt8]? {
        let deadline = Date().addingTimeInterval(timeout)
        while buffer.count < count {
            guard receive(until: deadline) else { return nil }
        }
        defer { buffer.removeSubrange(0..<count) }
        return Array(buffer[0..<count])
    }

    /// The next frame: its JSON object, with its bulk payload (if it announced `bytes`) read past.
    public func readFrame(timeout: Double = 5) -> (message: [String: Any], payload: [UInt8])? {
        guard let m = readMessage(timeout: timeout) else { return nil }
        let n = (m["bytes"] as? Int) ?? 0
        guard n > 0 else { return (m, []) }
        guard let payload = readBytes(n, timeout: timeout) else { return nil }
        return (m, payload)
    }

    /// Reads frames until one of `type` arrives (skipping others, such as `PEERS`); nil after `timeout` seconds.
    public func next(_ type: String, timeout: Double = 10) -> [String: Any]? {
        let deadline = Date().addingTimeInterval(timeout)
        while deadline.timeIntervalSinceNow > 0 {
            guard let f = readFrame(timeout: deadline.timeIntervalSinceNow) else { return nil }
            if f.message["type"] as? String == type { return f.message }
        }
        return nil
    }

    /// The next line decoded as a JSON object.
    public func readMessage(timeout: Double = 5) -> [String: Any]? {
        guard let line = readLine(timeout: timeout) else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
    }

    /// Whether the peer closed the connection within `timeout` seconds (all pending data is drained).
    public func isClosed(timeout: Double = 5) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while deadline.timeIntervalSinceNow > 0 {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(max(1, deadline.timeIntervalSinceNow * 1000))) > 0 else { return false }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { return true }
        }
        return false
    }
}
