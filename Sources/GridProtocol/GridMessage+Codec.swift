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
        case "PEERS": return .peers(try d.decode(Msg.Peers.self, from: data))
        case "AUTH_CHECK": return .authCheck(try d.decode(Msg.AuthCheck.self, from: data))
        case "AUTH_OK": return .authOk(try d.decode(Msg.AuthOk.self, from: data))
        case "GET_BEST_PEER": return .getBestPeer(try d.decode(Msg.GetBestPeer.self, from: data))
        case "BEST_PEER": return .bestPeer(try d.decode(Msg.BestPeer.self, from: data))
        case "CPU_TASK": return .cpuTask(try d.decode(Msg.CPUTask.self, from: data))
        case "CPU_RESULT": return .cpuResult(try d.decode(Msg.CPUResult.self, from: data))
        case "SET_MEM": return .setMem(try d.decode(Msg.SetMem.self, from: data))
        case "GET_MEM": return .getMem(try d.decode(Msg.MemKey.self, from: data))
        case "DEL_MEM": return .delMem(try d.decode(Msg.MemKey.self, from: data))
        case "LIST_MEM": return .listMem(try d.decode(Msg.ListMem.self, from: data))
        case "MEM_RESULT": return .memResult(try d.decode(Msg.MemResult.self, from: data))
        case "MEM_KEYS": return .memKeys(try d.decode(Msg.MemKeys.self, from: data))
        case "MEM_SYNC": return .memSync(try d.decode(Msg.MemEntries.self, from: data))
        case "MEM_FETCH": return .memFetch(try d.decode(Msg.MemFetch.self, from: data))
        case "MEM_ENTRIES": return .memEntries(try d.decode(Msg.MemEntries.self, from: data))
        case "PUT_FILE": return .putFile(try d.decode(Msg.PutFile.self, from: data))
        case "UPLOAD": return .upload(try d.decode(Msg.Upload.self, from: data))
        case "PUT_FILE_CHUNK": return .putFileChunk(try d.decode(Msg.PutFileChunk.self, from: data))
        case "PUT_FILE_END": return .putFileEnd(try d.decode(Msg.PutFileEnd.self, from: data))
        case "FILE_STORED": return .fileStored(try d.decode(Msg.FileManifest.self, from: data))
        case "GET_FILE": return .getFile(try d.decode(Msg.FileRef.self, from: data))
        case "FILE_INFO": return .fileInfo(try d.decode(Msg.FileInfo.self, from: data))
        case "GET_FILE_CHUNK": return .getFileChunk(try d.decode(Msg.GetFileChunk.self, from: data))
        case "FILE_CHUNK": return .fileChunk(try d.decode(Msg.ChunkData.self, from: data))
        case "LIST_FILES": return .listFiles(try d.decode(Msg.ListFiles.self, from: data))
        case "FILE_LIST": return .fileList(try d.decode(Msg.FileList.self, from: data))
        case "DELETE_FILE": return .deleteFile(try d.decode(Msg.FileRef.self, from: data))
        case "CHUNK_PUT": return .chunkPut(try d.decode(Msg.ChunkData.self, from: data))
        case "CHUNK_GET": return .chunkGet(try d.decode(Msg.ChunkData.self, from: data))
        case "CHUNK_DATA": return .chunkData(try d.decode(Msg.ChunkData.self, from: data))
        case "CHUNK_HAS": return .chunkHas(try d.decode(Msg.ChunkHashes.self, from: data))
        case "CHUNK_HAVE": return .chunkHave(try d.decode(Msg.ChunkHashes.self, from: data))
        case "PEER_STATUS": return .peerStatus(try d.decode(Msg.PeerStatus.self, from: data))
        case "OK": return .ok(try d.decode(Msg.Ok.self, from: data))
        case "GET_PEER_STATUS": return .getPeerStatus
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
