public import Foundation
import GridCore
public import NIOCore

extension GridMessage {
    /// Decodes a message body from its JSON line, by wire type.
    public static func decode(type: String, from data: Data) throws -> GridMessage {
        let d = GridJSON.decoder()
        d.userInfo[typeKey] = type
        return try d.decode(Typed.self, from: data).message
    }

    private static let typeKey = CodingUserInfoKey(rawValue: "grid.type")!

    private struct Typed: Decodable {
        var message: GridMessage
        init(from decoder: any Decoder) throws {
            message = try GridMessage.decode(type: decoder.userInfo[typeKey] as? String ?? "", from: decoder)
        }
    }

    /// Decodes a message body of wire type `type` from `decoder` (the whole JSON object of the line).
    public static func decode(type: String, from decoder: any Decoder) throws -> GridMessage {
        guard let kind = MessageType(rawValue: type) else {
            let shown = type.count > 40 ? String(type.prefix(40)) + "…" : type
            throw GridError(.unknownMessage, "unknown message type \(String(reflecting: shown))")
        }
        switch kind {
        case .hello: return .hello(try Msg.Hello(from: decoder))
        case .helloOk: return .helloOk(try Msg.HelloOk(from: decoder))
        case .register: return .register(try Msg.Register(from: decoder))
        case .registered: return .registered(try Msg.Registered(from: decoder))
        case .loadUpdate: return .loadUpdate(try Msg.LoadUpdate(from: decoder))
        case .jobAssign: return .jobAssign(try Msg.JobAssign(from: decoder))
        case .jobStarted: return .jobStarted(try Msg.JobStarted(from: decoder))
        case .jobLog: return .jobLog(try Msg.JobLog(from: decoder))
        case .jobDone: return .jobDone(try Msg.JobDone(from: decoder))
        case .jobDoneAck: return .jobDoneAck(try Msg.JobDoneAck(from: decoder))
        case .cancel: return .cancel(try Msg.Cancel(from: decoder))
        case .ping: return .ping
        case .pong: return .pong
        case .error: return .error(try Msg.Error(from: decoder))
        case .peers: return .peers(try Msg.Peers(from: decoder))
        case .authCheck: return .authCheck(try Msg.AuthCheck(from: decoder))
        case .authOk: return .authOk(try Msg.AuthOk(from: decoder))
        case .getBestPeer: return .getBestPeer(try Msg.GetBestPeer(from: decoder))
        case .bestPeer: return .bestPeer(try Msg.BestPeer(from: decoder))
        case .cpuTask: return .cpuTask(try Msg.CPUTask(from: decoder))
        case .cpuResult: return .cpuResult(try Msg.CPUResult(from: decoder))
        case .setMem: return .setMem(try Msg.SetMem(from: decoder))
        case .getMem: return .getMem(try Msg.MemKey(from: decoder))
        case .delMem: return .delMem(try Msg.MemKey(from: decoder))
        case .listMem: return .listMem(try Msg.ListMem(from: decoder))
        case .memResult: return .memResult(try Msg.MemResult(from: decoder))
        case .memKeys: return .memKeys(try Msg.MemKeys(from: decoder))
        case .memSync: return .memSync(try Msg.MemEntries(from: decoder))
        case .memFetch: return .memFetch(try Msg.MemFetch(from: decoder))
        case .memEntries: return .memEntries(try Msg.MemEntries(from: decoder))
        case .putFile: return .putFile(try Msg.PutFile(from: decoder))
        case .upload: return .upload(try Msg.Upload(from: decoder))
        case .putFileChunk: return .putFileChunk(try Msg.PutFileChunk(from: decoder))
        case .putFileEnd: return .putFileEnd(try Msg.PutFileEnd(from: decoder))
        case .fileStored: return .fileStored(try Msg.FileManifest(from: decoder))
        case .getFile: return .getFile(try Msg.FileRef(from: decoder))
        case .fileInfo: return .fileInfo(try Msg.FileInfo(from: decoder))
        case .getFileChunk: return .getFileChunk(try Msg.GetFileChunk(from: decoder))
        case .fileChunk: return .fileChunk(try Msg.ChunkData(from: decoder))
        case .listFiles: return .listFiles(try Msg.ListFiles(from: decoder))
        case .fileList: return .fileList(try Msg.FileList(from: decoder))
        case .deleteFile: return .deleteFile(try Msg.FileRef(from: decoder))
        case .chunkPut: return .chunkPut(try Msg.ChunkData(from: decoder))
        case .chunkGet: return .chunkGet(try Msg.ChunkData(from: decoder))
        case .chunkData: return .chunkData(try Msg.ChunkData(from: decoder))
        case .chunkHas: return .chunkHas(try Msg.ChunkHashes(from: decoder))
        case .chunkHave: return .chunkHave(try Msg.ChunkHashes(from: decoder))
        case .chunkRefs: return .chunkRefs(try Msg.ChunkRefs(from: decoder))
        case .chunkUsed: return .chunkUsed(try Msg.ChunkRefs(from: decoder))
        case .chunkKeep: return .chunkKeep(try Msg.ChunkHashes(from: decoder))
        case .peerStatus: return .peerStatus(try Msg.PeerStatus(from: decoder))
        case .ok: return .ok(try Msg.Ok(from: decoder))
        case .getPeerStatus: return .getPeerStatus
        case .peerAuth: return .peerAuth(try Msg.PeerAuth(from: decoder))
        case .session: return .session(try Msg.Session(from: decoder))
        case .credential: return .credential(try Msg.CredentialGrant(from: decoder))
        case .notLeader: return .notLeader(try Msg.NotLeader(from: decoder))
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
        case .peers(let m): m
        case .authCheck(let m): m
        case .authOk(let m): m
        case .getBestPeer(let m): m
        case .bestPeer(let m): m
        case .cpuTask(let m): m
        case .cpuResult(let m): m
        case .setMem(let m): m
        case .getMem(let m): m
        case .delMem(let m): m
        case .listMem(let m): m
        case .memResult(let m): m
        case .memKeys(let m): m
        case .memSync(let m): m
        case .memFetch(let m): m
        case .memEntries(let m): m
        case .putFile(let m): m
        case .upload(let m): m
        case .putFileChunk(let m): m
        case .putFileEnd(let m): m
        case .fileStored(let m): m
        case .getFile(let m): m
        case .fileInfo(let m): m
        case .getFileChunk(let m): m
        case .fileChunk(let m): m
        case .listFiles(let m): m
        case .fileList(let m): m
        case .deleteFile(let m): m
        case .chunkPut(let m): m
        case .chunkGet(let m): m
        case .chunkData(let m): m
        case .chunkHas(let m): m
        case .chunkHave(let m): m
        case .chunkRefs(let m): m
        case .chunkUsed(let m): m
        case .chunkKeep(let m): m
        case .peerStatus(let m): m
        case .ok(let m): m
        case .getPeerStatus: Msg.Empty()
        case .peerAuth(let m): m
        case .session(let m): m
        case .credential(let m): m
        case .notLeader(let m): m
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
        try writeHead(to: &buffer)
        if var payload { buffer.writeBuffer(&payload) }
    }

    /// The frame's line (with its newline), without the bulk bytes that follow it: `GridFrameWriter` sends those as
    /// they are, not copied behind the line.
    public func writeHead(to buffer: inout ByteBuffer) throws {
        if payload == nil {
            let mark = buffer.writerIndex
            if message.writeFastLine(id: id, into: &buffer) {
                buffer.writeInteger(UInt8(ascii: "\n"))
                return
            }
            buffer.moveWriterIndex(to: mark)
        }
        let line = try message.encodeLine(id: id, bulkBytes: payload?.readableBytes)
        buffer.writeBytes(line)
        buffer.writeInteger(UInt8(ascii: "\n"))
    }
}
