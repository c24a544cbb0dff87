import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A TCP relay on 127.0.0.1 that forwards every connection to `127.0.0.1:target` and keeps a copy of every byte that
/// crosses it, both ways: a packet capture of a test's own stream, for checking that nothing readable goes over it.
/// Threads only (one per direction); bounded by the connections the test makes; `stop` closes the listener.
public final class CaptureRelay: @unchecked Sendable {
    // Safe: state behind the mutex; the listening socket is used by the accept thread and closed by `stop`.
    public let port: Int
    private let target: Int
    private let fd: Int32
    private let state = Mutex<(bytes: [UInt8], stopped: Bool)>(([], false))

    public init(to target: Int) throws {
        self.target = target
        let sock = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(sock, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard bound, listen(sock, 16) == 0 else {
            close(sock)
            throw TestGridError("the capture relay could not bind")
        }
        var out = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &out) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(sock, $0, &len) } }
        fd = sock
        port = Int(UInt16(bigEndian: out.sin_port))
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    /// Every byte relayed so far, both directions interleaved.
    public var captured: [UInt8] { state.withLock { $0.bytes } }

    /// Whether `text` crossed the relay in clear (as UTF-8 bytes).
    public func saw(_ text: String) -> Bool {
        let needle = Array(text.utf8)
        let hay = captured
        guard !needle.isEmpty, hay.count >= needle.count else { return false }
        return (0...(hay.count - needle.count)).contains { i in hay[i] == needle[0] && Array(hay[i..<(i + needle.count)]) == needle }
    }

    public func stop() {
        let first = state.withLock { s -> Bool in
            defer { s.stopped = true }
            return !s.stopped
        }
        guard first else { return }
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    deinit { stop() }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return addr
    }

    private func acceptLoop() {
        while !state.withLock({ $0.stopped }) {
            let client = accept(fd, nil, nil)
            if client < 0 { return }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = Self.loopback(port: UInt16(target))
            let ok = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            guard ok else {
                close(client)
                close(upstream)
                continue
            }
            let ended = EndCount()
            for (from, to) in [(client, upstream), (upstream, client)] {
                Thread.detachNewThread { [self] in
                    pump(from: from, to: to)
                    // The second direction to end closes both sockets.
                    if ended.bump() == 2 {
                        close(client)
                        close(upstream)
                    }
                }
            }
        }
    }

    private func pump(from: Int32, to: Int32) {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(from, &chunk, chunk.count, 0)
            if n <= 0 { break }
            state.withLock { $0.bytes.append(contentsOf: chunk[0..<n]) }
            var sent = 0
            while sent < n {
                let m = chunk[sent..<n].withUnsafeBytes { send(to, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if m <= 0 { break }
                sent += m
            }
            if sent < n { break }
        }
        shutdown(to, Int32(SHUT_WR))
    }
}

/// How many directions of one relayed connection have ended.
private final class EndCount: Sendable {
    private let count = Mutex(0)
    func bump() -> Int {
        count.withLock {
            $0 += 1
            return $0
        }
    }
}
