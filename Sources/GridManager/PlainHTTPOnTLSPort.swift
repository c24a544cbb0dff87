import Foundation
import GridHTTP
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL

/// What the HTTPS port answers a client that speaks plain HTTP to it (someone typed `http://` before the manager's
/// address): a redirect to the same path over `https`, instead of a TLS alert that a browser shows as a broken page.
///
/// Pure: the bytes the client sent so far in, the answer out. The client's `Host` is used only when it is a plain
/// host name or address (letters, digits, `.`, `-`, `:`, `[`, `]`), and the path only when it is an origin path with no
/// control characters or spaces; otherwise the answer is a 400 that says to use `https://`.
public enum PlainHTTPAnswer: Equatable, Sendable {
    /// Not enough bytes yet to decide (no end of the request head within the limit so far).
    case needMore
    /// Not HTTP at all: close without a word.
    case close
    /// Send these bytes, then close.
    case respond(String)

    /// The most a request head may take before the answer is a 400.
    public static let maxHeadBytes = 8 * 1024

    public static func decide(_ head: [UInt8]) -> PlainHTTPAnswer {
        // A request line starts with a method: upper-case letters, then a space.
        let method = head.prefix { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }
        if method.isEmpty || method.count > 16 { return head.isEmpty ? .needMore : .close }
        if method.count == head.count { return .needMore }
        guard head[method.count] == UInt8(ascii: " ") else { return .close }
        guard let end = find(Array("\r\n\r\n".utf8), in: head) else {
            return head.count >= maxHeadBytes ? .respond(badRequest) : .needMore
        }
        let text = String(decoding: head[..<end], as: UTF8.self)
        let lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
        let request = lines[0].split(separator: " ", omittingEmptySubsequences: false)
        guard request.count == 3, request[2].hasPrefix("HTTP/1."), ["GET", "HEAD"].contains(String(request[0])) else { return .respond(badRequest) }
        let path = String(request[1])
        guard path.hasPrefix("/"), !path.hasPrefix("//"), path.utf8.count <= 2048, path.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            return .respond(badRequest)
        }
        let hosts = lines.dropFirst().compactMap { line -> String? in
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "host" else { return nil }
            return parts[1].trimmingCharacters(in: .whitespaces)
        }
        guard hosts.count == 1, let host = hosts.first, isPlainHost(host) else { return .respond(badRequest) }
        let location = "https://\(host)\(path)"
        let body = "This port speaks HTTPS: \(location)\n"
        return .respond(
            "HTTP/1.1 308 Permanent Redirect\r\nLocation: \(location)\r\nContent-Type: text/plain; charset=utf-8\r\n"
                + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body)
    }

    static let badRequest: String = {
        let body = "This port speaks HTTPS: use https:// and the same address.\n"
        return "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
            + body
    }()

    static func isPlainHost(_ host: String) -> Bool {
        !host.isEmpty && host.utf8.count <= 261
            && host.utf8.allSatisfy { c in
                (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
                    || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || [UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: ":"), UInt8(ascii: "["), UInt8(ascii: "]")].contains(c)
            }
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for i in 0...(haystack.count - needle.count) where haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
        return nil
    }
}

/// First in the HTTPS port's pipeline: a connection whose first byte opens a TLS record (0x16, handshake) is handed on
/// untouched and this handler leaves; anything else gets `PlainHTTPAnswer`'s answer and is closed.
final class PlainHTTPOnTLSPortHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private var head: [UInt8] = []
    private var decided = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !decided else { return }
        let buffer = unwrapInboundIn(data)
        if head.isEmpty, buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) == 0x16 {
            decided = true
            context.fireChannelRead(data)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        head += buffer.readableBytesView.prefix(PlainHTTPAnswer.maxHeadBytes - head.count)
        switch PlainHTTPAnswer.decide(head) {
        case .needMore:
            return
        case .close:
            decided = true
            context.close(promise: nil)
        case .respond(let text):
            decided = true
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(string: text))).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

extension HTTPServerBuilder {
    /// HTTP/1 over TLS, answering plain HTTP on the same port with a redirect to `https` (`PlainHTTPAnswer`), with the
    /// connection cap and the idle timeout (which also closes a connection that never begins its handshake).
    static func tlsAnsweringPlainHTTP(tlsConfiguration: TLSConfiguration, cap: HTTPConnectionCap) throws -> HTTPServerBuilder {
        let context = TLSChannelConfiguration(tlsConfiguration: tlsConfiguration)
        return .init { responder in
            let http = HTTP1Channel(responder: responder, configuration: .init(idleTimeout: cap.idleTimeout))
            return FrontedHTTPChannel(
                front: { HTTPConnectionCapHandler(cap: cap) },
                base: FrontedHTTPChannel(front: { PlainHTTPOnTLSPortHandler() }, base: try TLSChannel(http, configuration: context)))
        }
    }
}
