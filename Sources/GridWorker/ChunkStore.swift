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

    /// The SHA-256 (hex) of a buffer's readable bytes, hashed where they lie.
    static func sha256(_ buffer: ByteBuffer) -> String {
        buffer.withUnsafeReadableBytes { SHA256.hash(data: $0) }.map { String(format: "%02x", $0) }.joined()
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
    ///
    /// A copy already here is kept when it equals `bytes` byte for byte (bytes that hash to its name, so the copy is
    /// intact); a damaged one is replaced. The chunk is written to a temporary file and renamed into place, so a reader
    /// never sees part of one, but not forced to the disk (`fsync`) before the answer: like HDFS's pipeline writes and
    /// Redis's `WAIT`, a chunk counts as stored once `replicas` peers hold it, and a copy a machine's crash damages is
    /// found by the hash every read checks and made again from another copy (the repair pass). Forcing each 4 MiB
    /// chunk to the disk made an upload wait for the disk twice over (issue 17).
    func put(_ hash: String, _ bytes: ByteBuffer, hashedHere: Bool = false) throws {
        let p = try path(hash)
        guard hashedHere || Self.sha256(bytes) == hash else { throw GridError(.conflict, "the chunk's bytes do not match its name \(hash.prefix(12))…") }
        if bytes.withUnsafeReadableBytes({ Self.holds(p, exactly: $0) }) { return }
        let dir = (p as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tmp = "\(dir)/.\(hash).\(UUID().uuidString.prefix(8)).tmp"
        guard bytes.withUnsafeReadableBytes({ Self.write($0, to: tmp) }) else {
            unlink(tmp)
            throw GridError(.internal, "could not write chunk \(hash.prefix(12))… (disk full?)")
        }
        if rename(tmp, p) != 0 {
            unlink(tmp)
            throw GridError(.internal, "could not store chunk \(hash.prefix(12))…")
        }
    }

    /// `put` of bytes held in an array.
    func put(_ hash: String, _ bytes: [UInt8], hashedHere: Bool = false) throws {
        try put(hash, ByteBuffer(bytes: bytes), hashedHere: hashedHere)
    }

    /// Whether the file at `path` holds exactly `bytes`.
    static func holds(_ path: String, exactly want: UnsafeRawBufferPointer) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, Int(st.st_size) == want.count else { return false }
        var block = [UInt8](repeating: 0, count: min(want.count, 1 << 18))
        var offset = 0
        return block.withUnsafeMutableBytes { got in
            while offset < want.count {
                let n = pread(fd, got.baseAddress!, min(got.count, want.count - offset), off_t(offset))
                if n < 0 && errno == EINTR { continue }
                guard n > 0, memcmp(got.baseAddress!, want.baseAddress! + offset, n) == 0 else { return false }
                offset += n
            }
            return true
        }
    }

    /// Writes `bytes` to a new file at `path` (mode 0644); false if it could not be written whole.
    static func write(_ raw: UnsafeRawBufferPointer, to path: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return false }
        var done = 0
        var ok = true
        while done < raw.count {
            let n = Foundation.write(fd, raw.baseAddress! + done, raw.count - done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                ok = false
                break
            }
            done += n
        }
        return close(fd) == 0 && ok
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
