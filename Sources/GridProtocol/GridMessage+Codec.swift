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
        switch type {
        case "HELLO": return .hello(try Msg.Hello(from: decoder))
        case "HELLO_OK": return .helloOk(try Msg.HelloOk(from: decoder))
        case "REGISTER": return .register(try Msg.Register(from: decoder))
        case "REGISTERED": return .registered(try Msg.Registered(from: decoder))
        case "LOAD_UPDATE": return .loadUpdate(try Msg.LoadUpdate(from: decoder))
        case "JOB_ASSIGN": return .jobAssign(try Msg.JobAssign(from: decoder))
        case "JOB_STARTED": return .jobStarted(try Msg.JobStarted(from: decoder))
        case "JOB_LOG": return .jobLog(try Msg.JobLog(from: decoder))
        case "JOB_DONE": return .jobDone(try Msg.JobDone(from: decoder))
        case "JOB_DONE_ACK": return .jobDoneAck(try Msg.JobDoneAck(from: decoder))
        case "CANCEL": return .cancel(try Msg.Cancel(from: decoder))
        case "PING": return .ping
        case "PONG": return .pong
        case "ERROR": return .error(try Msg.Error(from: decoder))
        case "PEERS": return .peers(try Msg.Peers(from: decoder))
        case "AUTH_CHECK": return .authCheck(try Msg.AuthCheck(from: decoder))
        case "AUTH_OK": return .authOk(try Msg.AuthOk(from: decoder))
        case "GET_BEST_PEER": return .getBestPeer(try Msg.GetBestPeer(from: decoder))
        case "BEST_PEER": return .bestPeer(try Msg.BestPeer(from: decoder))
        case "CPU_TASK": return .cpuTask(try Msg.CPUTask(from: decoder))
        case "CPU_RESULT": return .cpuResult(try Msg.CPUResult(from: decoder))
        case "SET_MEM": return .setMem(try Msg.SetMem(from: decoder))
        case "GET_MEM": return .getMem(try Msg.MemKey(from: decoder))
        case "DEL_MEM": return .delMem(try Msg.MemKey(from: decoder))
        case "LIST_MEM": return .listMem(try Msg.ListMem(from: decoder))
        case "MEM_RESULT": return .memResult(try Msg.MemResult(from: decoder))
        case "MEM_KEYS": return .memKeys(try Msg.MemKeys(from: decoder))
        case "MEM_SYNC": return .memSync(try Msg.MemEntries(from: decoder))
        case "MEM_FETCH": return .memFetch(try Msg.MemFetch(from: decoder))
        case "MEM_ENTRIES": return .memEntries(try Msg.MemEntries(from: decoder))
        case "PUT_FILE": return .putFile(try Msg.PutFile(from: decoder))
        case "UPLOAD": return .upload(try Msg.Upload(from: decoder))
        case "PUT_FILE_CHUNK": return .putFileChunk(try Msg.PutFileChunk(from: decoder))
        case "PUT_FILE_END": return .putFileEnd(try Msg.PutFileEnd(from: decoder))
        case "FILE_STORED": return .fileStored(try Msg.FileManifest(from: decoder))
        case "GET_FILE": return .getFile(try Msg.FileRef(from: decoder))
        case "FILE_INFO": return .fileInfo(try Msg.FileInfo(from: decoder))
        case "GET_FILE_CHUNK": return .getFileChunk(try Msg.GetFileChunk(from: decoder))
        case "FILE_CHUNK": return .fileChunk(try Msg.ChunkData(from: decoder))
        case "LIST_FILES": return .listFiles(try Msg.ListFiles(from: decoder))
        case "FILE_LIST": return .fileList(try Msg.FileList(from: decoder))
        case "DELETE_FILE": return .deleteFile(try Msg.FileRef(from: decoder))
        case "CHUNK_PUT": return .chunkPut(try Msg.ChunkData(from: decoder))
        case "CHUNK_GET": return .chunkGet(try Msg.ChunkData(from: decoder))
        case "CHUNK_DATA": return .chunkData(try Msg.ChunkData(from: decoder))
        case "CHUNK_HAS": return .chunkHas(try Msg.ChunkHashes(from: decoder))
        case "CHUNK_HAVE": return .chunkHave(try Msg.ChunkHashes(from: decoder))
        case "PEER_STATUS": return .peerStatus(try Msg.PeerStatus(from: decoder))
        case "OK": return .ok(try Msg.Ok(from: decoder))
        case "GET_PEER_STATUS": return .getPeerStatus
        case "PEER_AUTH": return .peerAuth(try Msg.PeerAuth(from: decoder))
        case "CREDENTIAL": return .credential(try Msg.CredentialGrant(from: decoder))
        case "NOT_LEADER": return .notLeader(try Msg.NotLeader(from: decoder))
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
        case .peerStatus(let m): m
        case .ok(let m): m
        case .getPeerStatus: Msg.Empty()
        case .peerAuth(let m): m
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
        if var payload { buffer.writeBuffer(&payload) }
    }
}
