import Foundation
import GridCore
import NIOCore

extension GridMessage {
    /// Decodes a message body from its JSON line, by wire type.
    public static func decode(type: String, from data: Data) throws -> GridMessage {
        let d = GridJSON.decoder()
        switch type {
        case "HELLO": return .hello(try d.decode(Msg.Hello.self, from: data))
        case "HELLO_OK": return .helloOk(try d.decode(Msg.HelloOk.self, from: data))
        case "REGISTER": return .register(try d.decode(Msg.Register.self, from: data))
        case "REGISTERED": return .registered(try d.decode(Msg.Registered.self, from: data))
        case "LOAD_UPDATE": return .loadUpdate(try d.decode(Msg.LoadUpdate.self, from: data))
        case "JOB_ASSIGN": return .jobAssign(try d.decode(Msg.JobAssign.self, from: data))
        case "JOB_STARTED": return .jobStarted(try d.decode(Msg.JobStarted.self, from: data))
        case "JOB_LOG": return .jobLog(try d.decode(Msg.JobLog.self, from: data))
        case "JOB_DONE": return .jobDone(try d.decode(Msg.JobDone.self, from: data))
        case "JOB_DONE_ACK": return .jobDoneAck(try d.decode(Msg.JobDoneAck.self, from: data))
        case "CANCEL": return .cancel(try d.decode(Msg.Cancel.self, from: data))
        case "PING": return .ping
        case "PONG": return .pong
        case "ERROR": return .error(try d.decode(Msg.Error.self, from: data))
        default:
            let shown = type.count > 40 ? String(type.prefix(40)) + "…" : type
            throw GridError(.unknownMessage, "unknown message type \(String(reflecting: shown))")
        }
    }

    private var body: any Encodable {
        switch self {
        case .hello(let m): m
        case .helloOk(let m): m
        case .register(let m): m
        case .registered(let m): m
        case .loadUpdate(let m): m
        case .jobAssign(let m): m
        case .jobStarted(let m): m
        case .jobLog(let m): m
        case .jobDone(let m): m
        case .jobDoneAck(let m): m
        case .cancel(let m): m
        case .ping, .pong: Msg.Empty()
        case .error(let m): m
        }
    }

    /// The JSON line of this message (without the newline), with `type`, `id` and, when given, `bytes`.
    public func encodeLine(id: Int, bulkBytes: Int?) throws -> Data {
        try GridJSON.encode(Wire(type: type, id: id, bytes: bulkBytes, body: body))
    }
}

/// Writes `type`, `id` and `bytes` next to the message's own fields in one JSON object.
private struct Wire: Encodable {
    var type: String
    var id: Int
    var bytes: Int?
    var body: any Encodable

    enum Keys: String, CodingKey { case type, id, bytes }

    func encode(to encoder: any Encoder) throws {
        try body.encode(to: encoder)
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(type, forKey: .type)
        try c.encode(id, forKey: .id)
        try c.encodeIfPresent(bytes, forKey: .bytes)
    }
}

extension GridFrame {
    /// Appends this frame's bytes (line, newline, payload) to `buffer`.
    public func write(to buffer: inout ByteBuffer) throws {
        let line = try message.encodeLine(id: id, bulkBytes: payload?.readableBytes)
        buffer.writeBytes(line)
        buffer.writeInteger(UInt8(ascii: "\n"))
        if var payload { buffer.writeBuffer(&payload) }
    }
}
