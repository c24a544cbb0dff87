import Crypto
import Foundation
import GridCore
import GridPeer
public import GridProtocol
import NIOCore

/// Streaming file transfers over a peer link: a few chunks in flight at a time, read from and written to disk, so
/// neither side ever holds the whole file.
extension PeerLink {
    /// Uploads the file at `path` as `filename` (the bulk form of `PUT_FILE`), private to the link's user or
    /// (`isPublic`) readable by everyone; returns the stored manifest.
    public func upload(path: String, as filename: String, isPublic: Bool = false) async throws -> Msg.FileManifest {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw GridError(.notFound, "cannot read \(path)") }
        defer { try? handle.close() }
        let size = Int64((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)??.int64Value ?? 0)
        guard case .upload(let up) = try await request(.putFile(Msg.PutFile(filename: filename, size: size, isPublic: isPublic ? true : nil))).message else {
            throw GridError(.badRequest, "the peer did not accept the upload")
        }
        guard let chunkSize = up.usableChunkSize else {
            throw GridError(.badRequest, "the peer asked for chunks of \(up.chunkSize) bytes (1 byte to 64 MiB expected); nothing was sent")
        }
        var hasher = SHA256()
        var read: Int64 = 0
        let fd = handle.fileDescriptor
        // Each chunk is read straight into the buffer that goes on the wire, and hashed there.
        func nextChunk() throws -> ByteBuffer? {
            guard read < size else { return nil }
            let want = Int(min(Int64(chunkSize), size - read))
            var buffer = ByteBufferAllocator().buffer(capacity: want)
            let got = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: want) { raw -> Int in
                var done = 0
                while done < want {
                    let n = pread(fd, raw.baseAddress! + done, want - done, off_t(read) + off_t(done))
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break }
                    done += n
                }
                return done
            }
            guard got == want else { throw GridError(.conflict, "\(path) changed while it was being uploaded") }
            buffer.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
            read += Int64(want)
            return buffer
        }
        // Up to the peer's window of chunks in flight: the peer stores one (and sends its copies on) while the next
        // cross the network and this side reads and hashes the one after.
        try await withThrowingTaskGroup(of: Void.self) { group in
            var index = 0
            var inFlight = 0
            while let chunk = try nextChunk() {
                if inFlight == up.inFlight {
                    try await group.next()
                    inFlight -= 1
                }
                let message = GridMessage.putFileChunk(Msg.PutFileChunk(uploadId: up.uploadId, index: index))
                group.addTask {
                    guard case .ok = try await self.request(message, payload: chunk).message else {
                        throw GridError(.badRequest, "the peer did not accept a chunk of the upload")
                    }
                }
                inFlight += 1
                index += 1
            }
            try await group.waitForAll()
        }
        let sha = Hex.string(hasher.finalize())
        guard case .fileStored(let manifest) = try await request(.putFileEnd(Msg.PutFileEnd(uploadId: up.uploadId, sha256: sha))).message else {
            throw GridError(.badRequest, "the peer did not confirm the upload")
        }
        return manifest
    }

    /// Downloads `filename` into `path` (through a temporary file, renamed once its SHA-256 checks out).
    public func download(_ filename: String, to path: String) async throws -> Msg.FileInfo {
        guard case .fileInfo(let info) = try await request(.getFile(Msg.FileRef(filename: filename))).message else {
            throw GridError(.badRequest, "the peer gave an unexpected answer to GET_FILE")
        }
        // The peer sends stored chunks as they were checked when written, and this side hashes the whole file. If that
        // check fails (a copy damaged on the peer's disk since), the file is read once more with every chunk hashed
        // by the peer, which then serves a damaged one from a replica and rewrites it.
        do {
            try await download(info, to: path, verify: false)
        } catch let error as GridError where error.code == .conflict && info.data == nil {
            try await download(info, to: path, verify: true)
        }
        return info
    }

    private func download(_ info: Msg.FileInfo, to path: String, verify: Bool) async throws {
        let tmp = path + ".part-\(UUID().uuidString.prefix(8))"
        guard FileManager.default.createFile(atPath: tmp, contents: nil), let out = FileHandle(forWritingAtPath: tmp) else {
            throw GridError(.badRequest, "cannot write \(path)")
        }
        var hasher = SHA256()
        do {
            defer { try? out.close() }
            if let inline = info.data {
                guard let data = Data(base64Encoded: inline) else { throw GridError(.badRequest, "the peer sent bad base64") }
                hasher.update(data: data)
                try out.write(contentsOf: data)
            } else {
                // Up to `window` chunks in flight, written in order as they come: the peer reads the next chunks from
                // its disk while this one crosses the network and is written here.
                // The grid's own chunking, and nothing else: a peer that claimed billions of 1-byte chunks had this
                // download ask for each of them.
                guard info.isConsistent(maxFileBytes: PeerNames.maxFileBytes), info.chunkSize == PeerNames.chunkSize,
                    info.chunkCount == PeerNames.chunkCount(size: info.size, chunkSize: info.chunkSize)
                else {
                    throw GridError(.badRequest, "the peer described \(info.filename) as \(info.chunkCount) chunks of \(info.size) bytes in all")
                }
                let window = 4
                var received: Int64 = 0
                var inFlight: [Task<Reply, any Error>] = []
                var next = 0
                defer { for t in inFlight { t.cancel() } }
                while next < info.chunkCount || !inFlight.isEmpty {
                    while next < info.chunkCount && inFlight.count < window {
                        let request = Msg.GetFileChunk(filename: info.filename, index: next, verify: verify ? true : nil)
                        inFlight.append(Task { try await self.request(.getFileChunk(request)) })
                        next += 1
                    }
                    let index = next - inFlight.count
                    let reply = try await inFlight.removeFirst().value
                    guard case .fileChunk = reply.message, let payload = reply.payload else {
                        throw GridError(.badRequest, "the peer gave an unexpected answer for chunk \(index)")
                    }
                    // Each chunk is as long as the file's chunking says, so never more than its size is written.
                    guard payload.readableBytes == PeerNames.chunkLength(index: index, size: info.size, chunkSize: info.chunkSize) else {
                        // A conflict, as a chunk whose hash is wrong: the download is tried again with the peer checking
                        // (and repairing from a replica) what it reads, as a chunk cut short on its disk needs.
                        throw GridError(.conflict, "the peer sent \(payload.readableBytes) bytes for chunk \(index) of \(info.filename)")
                    }
                    received += Int64(payload.readableBytes)
                    guard received <= info.size else {
                        throw GridError(.conflict, "the peer sent more than the \(info.size) bytes of \(info.filename)")
                    }
                    try payload.withUnsafeReadableBytes { raw in
                        hasher.update(bufferPointer: raw)
                        try Self.writeAll(out.fileDescriptor, raw)
                    }
                }
            }
            let sha = Hex.string(hasher.finalize())
            guard sha == info.sha256 else {
                throw GridError(.conflict, "the downloaded file's SHA-256 (\(sha)) differs from the stored one (\(info.sha256))")
            }
        } catch {
            unlink(tmp)
            throw error
        }
        if rename(tmp, path) != 0 {
            unlink(tmp)
            throw GridError(.badRequest, "cannot save to \(path)")
        }
    }

    /// Writes every byte of `raw` to `fd`.
    static func writeAll(_ fd: Int32, _ raw: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < raw.count {
            let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { throw GridError(.internal, "could not write the download (disk full?): \(String(cString: strerror(errno)))") }
            offset += n
        }
    }
}
