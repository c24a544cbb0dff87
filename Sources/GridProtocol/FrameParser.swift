import Foundation
import GridCore
public import NIOCore

/// The framing of the grid protocol as a pure parser: one JSON object per `\n`-terminated line; a line whose object
/// has `"bytes": N` is followed by exactly N raw bytes.
///
/// It never throws and never allocates more than the limits allow: an over-long line or an over-limit bulk size is
/// refused from its announced length, before its bytes are kept.
public struct FrameParser: Sendable {
    private enum State: Sendable {
        case line
        case payload(type: String, id: Int, message: Result<GridMessage, any Error>, size: Int)
        /// A fatal error was reported; everything after it is discarded.
        case failed
    }

    /// The envelope fields, read leniently: a bad `type` or `id` is reported later; a `bytes` that is present but not
    /// a whole number is `badBytes` (the stream's framing can no longer be trusted). The message itself is decoded in
    /// the same pass (one parse of the line), its failure kept for later.
    private struct Envelope: Decodable {
        var type: String?
        var id: Int?
        var bytes: Int?
        var badBytes = false
        var message: Result<GridMessage, any Error>?

        enum Keys: String, CodingKey { case type, id, bytes }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: Keys.self)
            type = try? c.decodeIfPresent(String.self, forKey: .type)
            id = try? c.decodeIfPresent(Int.self, forKey: .id)
            if c.contains(.bytes) {
                if let n = try? c.decode(Int.self, forKey: .bytes) { bytes = n } else { badBytes = true }
            }
            if let type, !type.isEmpty, !badBytes {
                message = Result { try GridMessage.decode(type: type, from: decoder) }
            }
        }
    }

    public let limits: FrameLimits
    private var state: State = .line
    /// Whether the other side has authenticated. Until it has, a line may be at most `maxStrangerLineBytes` long
    /// and a message that announces bulk bytes is refused (`not_authenticated`, fatal) from its line, so nothing of
    /// its payload is kept. A parser that reads what this side asked for (a client) stays authenticated.
    public var authenticated = true

    private var lineLimit: Int { authenticated ? limits.maxLineBytes : min(limits.maxLineBytes, limits.maxStrangerLineBytes) }

    public init(limits: FrameLimits = FrameLimits()) {
        self.limits = limits
    }

    /// The bulk bytes the frame being read announced, once its line is in; nil while a line is read.
    public var pendingBulkBytes: Int? {
        if case .payload(_, _, _, let size) = state { return size }
        return nil
    }

    /// Takes the next frame out of `buffer`, or returns nil when more bytes are needed.
    public mutating func next(_ buffer: inout ByteBuffer) -> InboundFrame? {
        while true {
            switch state {
            case .failed:
                buffer.moveReaderIndex(to: buffer.writerIndex)
                return nil
            case .payload(let type, let id, let message, let size):
                guard buffer.readableBytes >= size else { return nil }
                let payload = buffer.readSlice(length: size)!
                state = .line
                return Self.frame(type: type, id: id, message, payload: payload)
            case .line:
                let view = buffer.readableBytesView
                guard let newline = view.firstIndex(of: UInt8(ascii: "\n")) else {
                    if buffer.readableBytes > lineLimit { return fail(.lineTooLong, tooLong(), id: nil, &buffer) }
                    return nil
                }
                let length = newline - view.startIndex
                if length > lineLimit { return fail(.lineTooLong, tooLong(), id: nil, &buffer) }
                if let fast = Self.fastFrame(buffer.readableBytesView[..<newline]) {
                    buffer.moveReaderIndex(forwardBy: length + 1)
                    return fast
                }
                var line = Data(buffer.readBytes(length: length)!)
                buffer.moveReaderIndex(forwardBy: 1)
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }  // blank lines are ignored (nc, telnet)
                guard let probe = try? GridJSON.decode(Envelope.self, from: line) else {
                    return .invalid(GridError(.malformedMessage, "not a JSON object: \(Self.preview(line))"), id: nil, fatal: false)
                }
                let id = probe.id ?? 0
                if probe.badBytes {
                    return fail(.malformedMessage, "\"bytes\" must be a whole number of bytes", id: id, &buffer)
                }
                guard let type = probe.type, !type.isEmpty, let message = probe.message else {
                    return .invalid(GridError(.malformedMessage, "a message needs a string field \"type\""), id: id, fatal: false)
                }
                if let size = probe.bytes {
                    guard size >= 0, size <= limits.maxBulkBytes else {
                        return fail(.bulkTooLarge, "bulk size \(size) is outside 0...\(limits.maxBulkBytes) bytes", id: id, &buffer)
                    }
                    guard authenticated else {
                        return fail(.notAuthenticated, "no bulk data before HELLO_OK (\(type) announced \(size) bytes)", id: id, &buffer)
                    }
                    state = .payload(type: type, id: id, message: message, size: size)
                    continue
                }
                return Self.frame(type: type, id: id, message, payload: nil)
            }
        }
    }

    /// Called once the peer has closed its side: anything left over is a truncated frame.
    public mutating func finish(_ buffer: inout ByteBuffer) -> InboundFrame? {
        switch state {
        case .failed:
            return nil
        case .payload(let type, let id, _, let size):
            let got = buffer.readableBytes
            return fail(.truncated, "\(type) announced \(size) bulk bytes but the stream ended after \(got)", id: id, &buffer)
        case .line:
            if buffer.readableBytes == 0 { return nil }
            return fail(.truncated, "the stream ended inside a line (no final newline)", id: nil, &buffer)
        }
    }

    private func tooLong() -> String {
        authenticated ? "line longer than \(lineLimit) bytes" : "line longer than \(lineLimit) bytes before HELLO_OK"
    }

    private mutating func fail(_ code: GridError.Code, _ message: String, id: Int?, _ buffer: inout ByteBuffer) -> InboundFrame {
        state = .failed
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .invalid(GridError(code, message), id: id, fatal: true)
    }

    static func preview(_ data: Data) -> String {
        let text = String(decoding: data.prefix(60), as: UTF8.self)
        return data.count > 60 ? "\(text)…" : text
    }

    /// A hot message (see `GridMessage+Fast`) read without `Codable`; nil sends the line the general way.
    static func fastFrame(_ line: ByteBufferView) -> InboundFrame? {
        line.withUnsafeBytes { raw -> InboundFrame? in
            guard raw.count > 0, raw[0] == UInt8(ascii: "{"), case .object(let fields)? = WireJSON.parse(raw),
                fields["bytes"] == nil, case .string(let type)? = fields["type"], case .number(let n)? = fields["id"],
                let id = Int(exactly: n), let message = GridMessage.fastMessage(type: type, fields)
            else { return nil }
            return .frame(GridFrame(id: id, message))
        }
    }

    static func frame(type: String, id: Int, _ message: Result<GridMessage, any Error>, payload: ByteBuffer?) -> InboundFrame {
        switch message {
        case .success(let message):
            return .frame(GridFrame(id: id, message, payload: payload))
        case .failure(let error as GridError):
            return .invalid(error, id: id, fatal: false)
        case .failure(let error):
            return .invalid(GridError(.malformedMessage, "bad \(type) message: \(Self.describe(error))"), id: id, fatal: false)
        }
    }

    /// A short, readable account of a decoding error.
    static func describe(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        func path(_ c: [any CodingKey]) -> String { c.map(\.stringValue).joined(separator: ".") }
        switch error {
        case .keyNotFound(let key, let ctx): return "missing field \"\(path(ctx.codingPath + [key]))\""
        case .typeMismatch(_, let ctx), .valueNotFound(_, let ctx): return "wrong type for field \"\(path(ctx.codingPath))\""
        case .dataCorrupted(let ctx): return "invalid value at \"\(path(ctx.codingPath))\": \(ctx.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}
