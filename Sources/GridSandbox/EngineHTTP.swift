/// The byte-level pieces of talking to a Docker-API engine (pure, incremental, tested with malformed input).
enum EngineHTTP {
    /// A parsed HTTP/1.1 response head.
    struct Head: Sendable, Hashable {
        var status: Int
        /// Header names lower-cased.
        var headers: [String: String]
        /// Bytes of the head including the blank line.
        var length: Int

        var chunked: Bool { headers["transfer-encoding"]?.lowercased().contains("chunked") == true }
        var contentLength: Int? { headers["content-length"].flatMap { Int($0.trimmingCharacters(in: [" "])) } }
    }

    /// The head at the start of `bytes`, or nil while it is incomplete. Throws on a malformed status line.
    static func parseHead(_ bytes: [UInt8]) throws -> Head? {
        guard let end = find([13, 10, 13, 10], in: bytes) else {
            if bytes.count > 64 * 1024 { throw EngineError("the engine sent a response head over 64 KB") }
            return nil
        }
        let text = String(decoding: bytes[0..<end], as: UTF8.self)
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        guard !lines.isEmpty else { throw EngineError("the engine sent an empty response") }
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let status = Int(statusLine[1]), (100...599).contains(status) else {
            throw EngineError("the engine sent a malformed status line")
        }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = String(line[line.index(after: colon)...]).trimmingCharacters(in: [" ", "\t"])
        }
        return Head(status: status, headers: headers, length: end + 4)
    }

    static func find(_ needle: [UInt8], in hay: [UInt8], from start: Int = 0) -> Int? {
        guard hay.count >= needle.count + start else { return nil }
        var i = start
        while i + needle.count <= hay.count {
            if hay[i] == needle[0] && hay[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }

    /// Incremental decoder of `Transfer-Encoding: chunked` bodies.
    struct ChunkedDecoder: Sendable {
        private var buffer: [UInt8] = []
        private var remaining = 0
        private var inData = false
        /// The terminating zero-size chunk has arrived.
        private(set) var finished = false

        /// Feeds received bytes; returns the body bytes they complete.
        mutating func feed(_ bytes: [UInt8]) throws -> [UInt8] {
            buffer += bytes
            var out: [UInt8] = []
            var pos = 0
            while !finished {
                if inData {
                    if remaining > 0 {
                        let take = min(remaining, buffer.count - pos)
                        if take == 0 { break }
                        out += buffer[pos..<(pos + take)]
                        pos += take
                        remaining -= take
                        if remaining > 0 { break }
                    }
                    guard buffer.count - pos >= 2 else { break }
                    guard buffer[pos] == 13, buffer[pos + 1] == 10 else { throw EngineError("a chunk did not end with CRLF") }
                    pos += 2
                    inData = false
                } else {
                    guard let eol = EngineHTTP.find([13, 10], in: buffer, from: pos) else {
                        if buffer.count - pos > 1024 { throw EngineError("a chunk size line is too long") }
                        break
                    }
                    let line = String(decoding: buffer[pos..<eol], as: UTF8.self)
                    let sizeText = line.split(separator: ";").first.map(String.init)?.trimmingCharacters(in: [" "]) ?? ""
                    guard let size = Int(sizeText, radix: 16), size >= 0, size < 1 << 30 else {
                        throw EngineError("a chunk size is not hexadecimal: \(sizeText.prefix(20))")
                    }
                    pos = eol + 2
                    if size == 0 {
                        finished = true
                    } else {
                        remaining = size
                        inData = true
                    }
                }
            }
            buffer.removeFirst(pos)
            return out
        }
    }

    /// Incremental splitter of the engine's multiplexed log stream: frames of an 8-byte header
    /// (stream, 0, 0, 0, big-endian size) and `size` bytes of output.
    struct LogDemux: Sendable {
        private var buffer: [UInt8] = []

        /// Feeds received bytes; returns the output of every frame they complete (stdout and stderr together).
        mutating func feed(_ bytes: [UInt8]) throws -> [UInt8] {
            buffer += bytes
            var out: [UInt8] = []
            var pos = 0
            while buffer.count - pos >= 8 {
                guard buffer[pos] <= 2, buffer[pos + 1] == 0, buffer[pos + 2] == 0, buffer[pos + 3] == 0 else {
                    throw EngineError("the engine's log stream is not multiplexed as expected")
                }
                let size = Int(buffer[pos + 4]) << 24 | Int(buffer[pos + 5]) << 16 | Int(buffer[pos + 6]) << 8 | Int(buffer[pos + 7])
                guard buffer.count - pos - 8 >= size else { break }
                out += buffer[(pos + 8)..<(pos + 8 + size)]
                pos += 8 + size
            }
            buffer.removeFirst(pos)
            return out
        }
    }
}

/// The engine answered something unexpected, or could not be reached.
public struct EngineError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension String {
    fileprivate func trimmingCharacters(in set: Set<Character>) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return String(s)
    }
}
