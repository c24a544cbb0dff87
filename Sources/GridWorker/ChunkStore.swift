import Crypto
import Foundation
import GridCore
import GridPeer
import NIOCore

/// A peer's file chunks on disk: `<root>/<first two hex digits>/<sha256>`. Names are checked to be SHA-256 hex, so
/// nothing is ever written outside `root`; writes go to a temporary file first and are renamed into place.
/// Stateless apart from the file system, so any task may call it without going through the peer's actor.
struct ChunkStore: Sendable {
    let root: String

    init(root: String) throws {
        self.root = root
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    static func sha256(_ bytes: some DataProtocol) -> String {
        SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }

    func path(_ hash: String) throws(GridError) -> String {
        guard PeerNames.isChunkHash(hash) else { throw GridError(.badRequest, "\(String(reflecting: hash)) is not a chunk name (64 hex digits)") }
        return "\(root)/\(hash.prefix(2))/\(hash)"
    }

    func has(_ hash: String) -> Bool {
        guard let p = try? path(hash) else { return false }
        return FileManager.default.fileExists(atPath: p)
    }

    /// Stores `bytes` as chunk `hash` after checking that they hash to it; `hashedHere`: the caller computed `hash`
    /// from these very bytes in this process, so the check would repeat it.
    func put(_ hash: String, _ bytes: [UInt8], hashedHere: Bool = false) throws {
        let p = try path(hash)
        guard hashedHere || Self.sha256(bytes) == hash else { throw GridError(.conflict, "the chunk's bytes do not match its name \(hash.prefix(12))…") }
        if FileManager.default.fileExists(atPath: p), (try? read(hash)) != nil { return }
        let dir = (p as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tmp = "\(dir)/.\(hash).\(UUID().uuidString.prefix(8)).tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: Data(bytes)) else {
            throw GridError(.internal, "could not write chunk \(hash.prefix(12))… (disk full?)")
        }
        if rename(tmp, p) != 0 {
            unlink(tmp)
            throw GridError(.internal, "could not store chunk \(hash.prefix(12))…")
        }
    }

    /// The chunk's bytes if it is here and intact; nil if absent. A corrupt copy is deleted and reported as `corrupt`.
    func read(_ hash: String) throws -> [UInt8]? {
        let p = try path(hash)
        guard let data = FileManager.default.contents(atPath: p) else { return nil }
        let bytes = [UInt8](data)
        guard Self.sha256(bytes) == hash else {
            unlink(p)
            throw CorruptChunk(hash: hash)
        }
        return bytes
    }

    /// The chunk's bytes read straight into a buffer for the wire (no copy), if it is here; nil if absent. With
    /// `verify` (the default) they are hashed too, and a corrupt copy is deleted and reported as `CorruptChunk`;
    /// without, they are sent as stored (checked when written: `put`), for a reader that checks what it receives.
    func readBuffer(_ hash: String, verify: Bool = true) throws -> ByteBuffer? {
        let p = try path(hash)
        let fd = open(p, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        let size = Int(st.st_size)
        var buffer = ByteBufferAllocator().buffer(capacity: size)
        let got = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { raw -> Int in
            var done = 0
            while done < size {
                let n = pread(fd, raw.baseAddress! + done, size - done, off_t(done))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                done += n
            }
            return done
        }
        guard got == size else { return nil }
        guard verify else { return buffer }
        let digest = buffer.withUnsafeReadableBytes { SHA256.hash(data: $0) }
        guard digest.map({ String(format: "%02x", $0) }).joined() == hash else {
            unlink(p)
            throw CorruptChunk(hash: hash)
        }
        return buffer
    }

    func delete(_ hash: String) {
        if let p = try? path(hash) { unlink(p) }
    }

    /// Every chunk held here.
    func list() -> [String] {
        guard let dirs = try? FileManager.default.contentsOfDirectory(atPath: root) else { return [] }
        var out: [String] = []
        for d in dirs where d.count == 2 {
            for f in (try? FileManager.default.contentsOfDirectory(atPath: root + "/" + d)) ?? [] where PeerNames.isChunkHash(f) {
                out.append(f)
            }
        }
        return out.sorted()
    }

    struct CorruptChunk: Error {
        var hash: String
    }
}
