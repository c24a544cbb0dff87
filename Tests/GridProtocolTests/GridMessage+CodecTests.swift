import Foundation
import GridCore
import GridProtocol
import NIOCore
import Testing

/// One sample of every message, with and without optional fields.
private let samples: [GridMessage] = [
    .hello(Msg.Hello(token: "t0k3n")),
    .hello(Msg.Hello(version: 7, token: "t", name: "lab-pc-3", workerId: "w-1", user: "ada")),
    .helloOk(Msg.HelloOk(version: 1, workerId: "w-1", owner: "ada", heartbeatSeconds: 2.5)),
    .register(
        Msg.Register(
            resources: Resources(cpus: 8, ramGb: 32, gpus: 1, gpuMemoryGb: 24), gpuNames: ["RTX 4090"], tier: .bwrap, slots: 4,
            host: "10.0.0.5", port: 5001, webPort: 5002, running: [JobRef(jobId: 3, attempt: 2)])),
    .register(Msg.Register(resources: Resources(cpus: 1, ramGb: 1), tier: .restricted, slots: 1)),
    .registered(Msg.Registered(cancel: [JobRef(jobId: 4, attempt: 1)], logOffsets: ["3": 1024, "9": 0])),
    .registered(Msg.Registered(cancel: [], logOffsets: [:])),
    .loadUpdate(Msg.LoadUpdate(load: 0.75, running: [JobRef(jobId: 3, attempt: 2), JobRef(jobId: 5, attempt: 1)])),
    .jobAssign(
        Msg.JobAssign(
            job: JobRef(jobId: 5, attempt: 1),
            spec: JobSpec(name: "fit", cpus: 2, ramGb: 4, gpus: 1, minutes: 30, priority: -3, outputs: ["*.png"], minTier: .oci),
            script: "main.py", files: [FileEntry(name: "main.py", size: 10), FileEntry(name: "data/in.csv", size: 3)])),
    .jobStarted(Msg.JobStarted(job: JobRef(jobId: 5, attempt: 1))),
    .jobLog(Msg.JobLog(job: JobRef(jobId: 5, attempt: 1), offset: 4096)),
    .jobDone(
        Msg.JobDone(
            job: JobRef(jobId: 5, attempt: 1), outcome: .timedOut, exitCode: -9, runtimeMs: 1_800_000, peakMemoryKb: 123_456,
            cpuSeconds: 1.5, reason: "ran past its 30-minute limit", files: [FileEntry(name: "out.png", size: 2)])),
    .jobDone(
        Msg.JobDone(
            job: JobRef(jobId: 6, attempt: 3), outcome: .completed, exitCode: nil, runtimeMs: 0, peakMemoryKb: 0, cpuSeconds: 0,
            reason: nil, files: [])),
    .jobDoneAck(Msg.JobDoneAck(job: JobRef(jobId: 5, attempt: 1))),
    .cancel(Msg.Cancel(job: JobRef(jobId: 5, attempt: 1), reason: "cancelled by its owner")),
    .ping,
    .pong,
    .error(Msg.Error(GridError(.unknownMessage, "unknown message type \"FROB\""))),
    // Peer services (seed 003).
    .peers(Msg.Peers(peers: [Msg.PeerInfo(workerId: "w-1", name: "lab-1", host: "10.0.0.5", port: 9000, webPort: 5001)])),
    .authCheck(Msg.AuthCheck(token: "t0k3n")),
    .authOk(Msg.AuthOk(user: "ada", kind: "api")),
    .getBestPeer(Msg.GetBestPeer(taskId: "T1", prefer: "w-1")),
    .bestPeer(Msg.BestPeer(peer: Msg.PeerInfo(workerId: "w-2", name: "lab-2", host: "127.0.0.1", port: 9001), load: 0.5)),
    .cpuTask(Msg.CPUTask(taskId: "T123", program: "def main(x): return x*x", args: .array([.number(5)]))),
    .cpuTask(
        Msg.CPUTask(
            taskId: "T124", program: "def main(s): return s", function: "main", argsLiteral: "['secret']", confidential: true, timeout: 2.5,
            priority: 3, user: "ada")),
    .cpuResult(Msg.CPUResult(taskId: "T123", ok: true, result: .number(25), output: "", peer: "w-1", runtimeMs: 3, startOrder: 7)),
    .cpuResult(Msg.CPUResult(taskId: "T9", ok: false, error: "exception", message: "ZeroDivisionError", traceback: "Traceback…", peer: "w-1", runtimeMs: 1)),
    .setMem(Msg.SetMem(key: "user:id", value: .object(["a": .array([.null, .bool(true), .string("x")])]))),
    .getMem(Msg.MemKey(key: "user:id")),
    .delMem(Msg.MemKey(key: "user:id")),
    .listMem(Msg.ListMem(prefix: "user:", local: true)),
    .memResult(Msg.MemResult(key: "user:id", value: .number(101), owners: ["w-1", "w-2"])),
    .memKeys(Msg.MemKeys(keys: ["a", "b"])),
    .memSync(Msg.MemEntries(entries: [Msg.MemEntry(key: "k", value: nil, version: 1_700_000_000_000, origin: "w-1")])),
    .memFetch(Msg.MemFetch(keys: ["k"])),
    .memEntries(Msg.MemEntries(entries: [Msg.MemEntry(key: "k", value: .string("v"), version: 2, origin: "w-2")])),
    .putFile(Msg.PutFile(filename: "document.txt", data: "aGVsbG8=")),
    .upload(Msg.Upload(uploadId: "u-1", chunkSize: 4 << 20)),
    .putFileChunk(Msg.PutFileChunk(uploadId: "u-1", index: 0)),
    .putFileEnd(Msg.PutFileEnd(uploadId: "u-1", sha256: String(repeating: "a", count: 64))),
    .fileStored(Msg.FileManifest(filename: "big.bin", size: 5 << 20, sha256: String(repeating: "b", count: 64), chunkSize: 4 << 20, chunks: ["c1", "c2"])),
    .getFile(Msg.FileRef(filename: "document.txt")),
    .fileInfo(Msg.FileInfo(filename: "document.txt", size: 5, sha256: "s", chunkSize: 4 << 20, chunkCount: 1, data: "aGVsbG8=")),
    .fileInfo(Msg.FileInfo(filename: "data.csv", size: 0, sha256: "s", chunkSize: 4 << 20, chunkCount: 0, data: "", publishedBy: "mallory")),
    .memResult(Msg.MemResult(key: "config", value: .string("v"), owners: ["w-1"], publishedBy: "mallory")),
    .getFileChunk(Msg.GetFileChunk(filename: "big.bin", index: 1)),
    .fileChunk(Msg.ChunkData(hash: "c2", index: 1)),
    .listFiles(Msg.ListFiles(prefix: "b")),
    .fileList(Msg.FileList(files: [])),
    .deleteFile(Msg.FileRef(filename: "big.bin")),
    .chunkPut(Msg.ChunkData(hash: "c1")),
    .chunkGet(Msg.ChunkData(hash: "c1")),
    .chunkData(Msg.ChunkData(hash: "c1")),
    .chunkHas(Msg.ChunkHashes(hashes: ["c1", "c2"])),
    .chunkHave(Msg.ChunkHashes(hashes: ["c1"])),
    .chunkRefs(Msg.ChunkRefs(hashes: ["c1", "c2"], members: "m")),
    .chunkUsed(Msg.ChunkRefs(hashes: ["c1"], members: "m")),
    .chunkKeep(Msg.ChunkHashes(hashes: ["c1", "c2"])),
    .chunkPut(Msg.ChunkData(hash: "c1", storedAt: 1_700_000_000)),
    .peerStatus(
        Msg.PeerStatus(workerId: "w-1", name: "lab-1", slots: 2, running: 1, queued: ["ada": 3], peers: [], memKeys: 10, chunks: 4, tasksDone: 99)),
    .ok(Msg.Ok(detail: "deleted")),
    .getPeerStatus,
    // Trust between peers (issue 10).
    .hello(Msg.Hello(token: "", name: "w-1", nonce: "00112233445566778899aabbccddeeff")),
    .hello(Msg.Hello(token: "cgw_x", peerKey: "cGsK")),
    .helloOk(
        Msg.HelloOk(
            version: 1, workerId: "w-1", owner: "", heartbeatSeconds: 0, managerKey: "bWsK", credential: sampleCredential, proof: "cHJvb2Y=",
            nonce: "n0nce")),
    .registered(Msg.Registered(cancel: [], logOffsets: [:], credential: sampleCredential)),
    // Peer-port TLS (issue 11): the key goes up in REGISTER, the certificate and its CA come back.
    .register(Msg.Register(resources: Resources(cpus: 1, ramGb: 1), tier: .bwrap, slots: 1, tlsKey: "-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n")),
    .registered(Msg.Registered(cancel: [], logOffsets: [:], peerCertificate: "-----BEGIN CERTIFICATE-----\nQQ==\n", peerAuthority: "-----BEGIN CERTIFICATE-----\nQg==\n")),
    .peerAuth(Msg.PeerAuth(credential: sampleCredential, proof: "cHJvb2Y=")),
    .session(
        Msg.Session(
            certificate: PeerTrust.UserCertificate(user: "ada", key: "a2V5", expires: 1_700_043_200, signature: "c2ln"), proof: "cHJvb2Y=",
            forward: PeerTrust.Ticket(user: "ada", holder: "w-1", expires: 1_700_000_900, signature: "c2ln"))),
    .credential(Msg.CredentialGrant()),
    .credential(Msg.CredentialGrant(credential: sampleCredential)),
    .notLeader(Msg.NotLeader(leader: "10.0.0.7:9999")),
    .notLeader(Msg.NotLeader(leader: "")),
    .authOk(Msg.AuthOk(user: "ada", kind: "api", ticket: PeerTrust.Ticket(user: "ada", holder: "w-1", expires: 1_700_000_900, signature: "c2ln"))),
    .cpuTask(
        Msg.CPUTask(
            taskId: "T125", program: "def main(): return 1",
            ticket: PeerTrust.Ticket(user: "ada", holder: "w-1", expires: 1_700_000_900, signature: "c2ln"), signature: "cmVx")),
    .setMem(Msg.SetMem(key: "shared", value: .number(1), isPublic: true)),
    .setMem(Msg.SetMem(key: "shared", value: .number(1), isPublic: false)),
    .putFile(Msg.PutFile(filename: "pub.txt", data: "aGVsbG8=", isPublic: true)),
    .jobAssign(
        Msg.JobAssign(
            job: JobRef(jobId: 7, attempt: 1), spec: JobSpec(name: "j", cpus: 1, ramGb: 1, minutes: 1), script: "main.py", files: [],
            owner: "ada")),
]

private let sampleCredential = PeerTrust.Credential(
    workerId: "w-1", host: "127.0.0.1", port: 9000, key: "a2V5", expires: 1_700_000_600, signature: "c2ln")

/// The case of `message`, by position: adding a case to `GridMessage` breaks this switch until it has a sample.
private func caseIndex(_ message: GridMessage) -> Int {
    switch message {
    case .hello: 0
    case .helloOk: 1
    case .register: 2
    case .registered: 3
    case .loadUpdate: 4
    case .jobAssign: 5
    case .jobStarted: 6
    case .jobLog: 7
    case .jobDone: 8
    case .jobDoneAck: 9
    case .cancel: 10
    case .ping: 11
    case .pong: 12
    case .error: 13
    case .peers: 14
    case .authCheck: 15
    case .authOk: 16
    case .getBestPeer: 17
    case .bestPeer: 18
    case .cpuTask: 19
    case .cpuResult: 20
    case .setMem: 21
    case .getMem: 22
    case .delMem: 23
    case .listMem: 24
    case .memResult: 25
    case .memKeys: 26
    case .memSync: 27
    case .memFetch: 28
    case .memEntries: 29
    case .putFile: 30
    case .upload: 31
    case .putFileChunk: 32
    case .putFileEnd: 33
    case .fileStored: 34
    case .getFile: 35
    case .fileInfo: 36
    case .getFileChunk: 37
    case .fileChunk: 38
    case .listFiles: 39
    case .fileList: 40
    case .deleteFile: 41
    case .chunkPut: 42
    case .chunkGet: 43
    case .chunkData: 44
    case .chunkHas: 45
    case .chunkHave: 46
    case .peerStatus: 47
    case .ok: 48
    case .getPeerStatus: 49
    case .peerAuth: 50
    case .credential: 51
    case .notLeader: 52
    case .session: 53
    case .chunkRefs: 54
    case .chunkUsed: 55
    case .chunkKeep: 56
    }
}

/// Writes `frame` and parses the bytes back.
private func roundTrip(_ frame: GridFrame) throws -> GridFrame {
    var buffer = ByteBuffer()
    try frame.write(to: &buffer)
    var parser = FrameParser()
    let next = parser.next(&buffer)
    let inbound = try #require(next)
    #expect(buffer.readableBytes == 0)
    #expect(parser.finish(&buffer) == nil)
    switch inbound {
    case .frame(let f):
        return f
    case .invalid(let error, _, _):
        Issue.record("\(frame.message.type) did not parse back: \(error)")
        throw error
    }
}

@Suite("GridMessage wire codec")
struct GridMessageCodecTests {
    @Test func samplesCoverEveryMessageCase() {
        #expect(Set(samples.map(caseIndex)) == Set(0...56))
    }

    @Test(arguments: samples)
    func everyMessageRoundTripsThroughTheFrameParser(message: GridMessage) throws {
        let back = try roundTrip(GridFrame(id: 41, message))
        #expect(back.id == 41)
        #expect(back.message == message)
        #expect(back.payload == nil)
    }

    @Test(arguments: samples)
    func everyMessageRoundTripsWithAPayload(message: GridMessage) throws {
        let payload = ByteBuffer(bytes: [0, 10, 13, 123, 255] + Array("\n{\"type\":\"PING\"}\n".utf8))
        let back = try roundTrip(GridFrame(id: 8, message, payload: payload))
        #expect(back.id == 8)
        #expect(back.message == message)
        #expect(back.payload == payload)
    }

    @Test func anEmptyPayloadRoundTripsAsEmptyNotAbsent() throws {
        let back = try roundTrip(GridFrame(id: 1, .ping, payload: ByteBuffer()))
        #expect(back.payload?.readableBytes == 0)
    }

    @Test func framesWrittenBackToBackParseInOrderByteByByte() throws {
        var wire = ByteBuffer()
        for (i, message) in samples.enumerated() {
            let payload = i.isMultiple(of: 2) ? ByteBuffer(string: "payload \(i)\n") : nil
            try GridFrame(id: i, message, payload: payload).write(to: &wire)
        }
        var parser = FrameParser()
        var buffer = ByteBuffer()
        var got: [GridFrame] = []
        for byte in wire.readableBytesView {
            buffer.writeInteger(byte)
            while let inbound = parser.next(&buffer) {
                guard case .frame(let f) = inbound else {
                    Issue.record("unexpected \(inbound)")
                    return
                }
                got.append(f)
            }
        }
        #expect(got.map(\.message) == samples)
        #expect(got.map(\.id) == Array(samples.indices))
        #expect(got.map { $0.payload.map { String(buffer: $0) } } == samples.indices.map { $0.isMultiple(of: 2) ? "payload \($0)\n" : nil })
    }

    @Test func aLineIsOneSnakeCaseJSONObjectWithTypeIdAndBytes() throws {
        let line = try GridMessage.jobLog(Msg.JobLog(job: JobRef(jobId: 5, attempt: 2), offset: 9)).encodeLine(id: 3, bulkBytes: 4)
        let text = String(decoding: line, as: UTF8.self)
        #expect(!text.contains("\n"))
        #expect(text == #"{"bytes":4,"id":3,"job":{"attempt":2,"job_id":5},"offset":9,"type":"JOB_LOG"}"#)
    }

    @Test func aLineWithoutPayloadHasNoBytesField() throws {
        let text = String(decoding: try GridMessage.ping.encodeLine(id: 1, bulkBytes: nil), as: UTF8.self)
        #expect(text == #"{"id":1,"type":"PING"}"#)
    }

    @Test func decodingAnUnknownTypeThrowsUnknownMessage() {
        let error = #expect(throws: GridError.self) { try GridMessage.decode(type: "NOPE", from: Data("{}".utf8)) }
        #expect(error?.code == .unknownMessage)
    }

    @Test func aVeryLongUnknownTypeIsShortenedInTheError() {
        let type = String(repeating: "X", count: 500)
        let error = #expect(throws: GridError.self) { try GridMessage.decode(type: type, from: Data("{}".utf8)) }
        #expect((error?.message.count ?? 0) < 100)
    }
}
