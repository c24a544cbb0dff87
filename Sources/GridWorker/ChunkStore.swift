import Crypto
import Foundation
import GridCore
import GridPeer
import NIOCore
import Synchronization

/// A peer's file chunks on disk: `<root>/<first two hex digits>/<sha256>`. Names are checked to be SHA-256 hex, so
/// nothing is ever written outside `root`; writes go to a temporary file first and are renamed into place.
/// Its only state besides the file system is the count of bytes held (behind a mutex), so any task may call it without
/// going through the peer's actor. The chunks never take more than `budget`: the disk the contributor lent.
struct ChunkStore: Sendable {
    let root: String
    let budget: StorageBudget
    /// Bytes of the chunks held here: counted from the disk at start, then kept up to date by every write and removal.
    private let held: Counter
    /// How many times the folder was listed whole since the store opened (`list()`).
    private let listed = Listings()
    private final class Listings: Sendable {
        let count = Atomic<Int>(0)
    }

    /// The count, shared by the store's copies (a struct copied into tasks).
    private final class Counter: Sendable {
        let bytes: Mutex<Int64>
        init(_ bytes: Int64) { self.bytes = Mutex(bytes) }
        var value: Int64 { bytes.withLock { $0 } }

        /// Runs `body` on the count, under its lock.
        func locked(_ body: (inout Int64) -> Bool) -> Bool { bytes.withLock { body(&$0) } }

        /// Adds `delta` unless `budget` refuses it; returns the refusal.
        func add(_ delta: Int64, within budget: StorageBudget?) -> String? {
            bytes.withLock { total in
                if let budget, let reason = budget.refusal(adding: delta, totalHeld: total) { return reason }
                total = max(0, StorageBudget.sum(total, delta))
                return nil
            }
        }
    }

    init(root: String, budget: StorageBudget = .unlimited(what: "file chunks")) throws {
        self.root = root
        self.budget = budget
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        var bytes: Int64 = 0
        let found = Self.list(root)
        for hash in found { bytes = StorageBudget.sum(bytes, Self.size("\(root)/\(hash.prefix(2))/\(hash)")) }
        held = Counter(bytes)
        countedAtStart = found.count
    }

    /// How many chunks were here when the store opened (a status shows it until it is counted again).
    let countedAtStart: Int

    /// Bytes of the chunks held here now.
    var heldBytes: Int64 { held.value }

    /// Counts `bytes` more (fewer when negative) as held, unless they do not fit the budget: then throws, saying why.
    private func reserve(_ bytes: Int64) throws(GridError) {
        if let reason = held.add(bytes, within: budget) { throw GridError(.insufficientStorage, reason) }
    }

    /// Counts `bytes` more (fewer when negative) as held, whatever the budget.
    private func adjust(_ bytes: Int64) { _ = held.add(bytes, within: nil) }

    /// What the file at `path` is counted as, 0 when there is none: `charge(_:)` of its size.
    private static func size(_ path: String) -> Int64 {
        var st = stat()
        return stat(path, &st) == 0 ? charge(Int64(st.st_size)) : 0
    }

    /// What a chunk of `bytes` takes on the disk, at least: its bytes in whole 4 KiB blocks, and a block for its inode
    /// and directory entry. (Counting the bytes alone, a peer sent many one-byte chunks would fill the disk, or its
    /// inodes, thousands of times past the limit.)
    static func charge(_ bytes: Int64) -> Int64 {
        let blocks = bytes / 4096 + (bytes % 4096 == 0 ? 0 : 1)
        return StorageBudget.sum(blocks.multipliedReportingOverflow(by: 4096).overflow ? .max : blocks * 4096, 4096)
    }

    /// Removes the file at `path` and stops counting it.
    private func remove(_ path: String) {
        let size = Self.size(path)
        if unlink(path) == 0 { adjust(-size) }
    }

    static func sha256(_ bytes: some DataProtocol) -> String {
        Hex.string(SHA256.hash(data: bytes))
    }

    /// The SHA-256 (hex) of a buffer's readable bytes, hashed where they lie.
    static func sha256(_ buffer: ByteBuffer) -> String {
        Hex.string(buffer.withUnsafeReadableBytes { SHA256.hash(data: $0) })
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
    ///
    /// `storedAt`: when the copy this one is made from was stored (seconds since 1970; the repair pass passes it on),
    /// else now. A copy counts as stored at the latest of these times, so storing a chunk again (an upload of the same
    /// bytes) renews its lease, and it is not reclaimed under the new file (see `ChunkReclaim`).
    func put(_ hash: String, _ bytes: ByteBuffer, hashedHere: Bool = false, storedAt: Int64? = nil) throws {
        let p = try path(hash)
        guard hashedHere || Self.sha256(bytes) == hash else { throw GridError(.conflict, "the chunk's bytes do not match its name \(hash.prefix(12))…") }
        let stamp = Self.stamp(storedAt)
        // The copy here is kept, counted as stored now (under the count's lock, as `reclaim` deletes: a copy found
        // here is either made new before a reclaim looks, or gone, and then written again below).
        if bytes.withUnsafeReadableBytes({ Self.holds(p, exactly: $0) }), held.locked({ _ in Self.touch(p, to: stamp) }) { return }
        // Room for it first (a damaged copy it replaces frees its own size); given back if the write fails.
        let before = Self.size(p)
        let growth = Self.charge(Int64(bytes.readableBytes)) - before
        try reserve(growth)
        let dir = (p as NSString).deletingLastPathComponent
        let tmp = "\(dir)/.\(hash).\(UUID().uuidString.prefix(8)).tmp"
        guard (try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)) != nil,
            bytes.withUnsafeReadableBytes({ Self.write($0, to: tmp) })
        else {
            unlink(tmp)
            adjust(-growth)
            throw GridError(.internal, "could not write chunk \(hash.prefix(12))… (disk full?)")
        }
        // The rename and the count's correction happen under the count's lock: another write of the same chunk that
        // landed since this one looked was replaced, not added to, and two such writes cannot both miss each other.
        if let stamp { _ = Self.touch(tmp, to: stamp, backwards: true) }
        let renamed = held.locked { total -> Bool in
            let replaced = Self.size(p)
            guard rename(tmp, p) == 0 else {
                total = max(0, StorageBudget.sum(total, -growth))
                return false
            }
            total = max(0, StorageBudget.sum(total, before - replaced))
            return true
        }
        if !renamed {
            unlink(tmp)
            throw GridError(.internal, "could not store chunk \(hash.prefix(12))…")
        }
    }

    /// `put` of bytes held in an array.
    func put(_ hash: String, _ bytes: [UInt8], hashedHere: Bool = false) throws {
        try put(hash, ByteBuffer(bytes: bytes), hashedHere: hashedHere)
    }

    // MARK: - Leases, for reclaiming chunks no file names (`ChunkReclaim`)

    /// The time a copy counts as stored at: `storedAt` when it is earlier than now (a claim from the wire: a later
    /// one, or a negative one, is not taken), nil for now.
    static func stamp(_ storedAt: Int64?) -> Int64? {
        guard let storedAt else { return nil }
        let now = Int64(Date().timeIntervalSince1970)
        return storedAt >= 0 && storedAt < now ? storedAt : nil
    }

    /// Sets the modification time of the file at `path` to `stamp` (nil: now), unless it is later already
    /// (`backwards`: whatever it is); false when there is no file there, or its time could not be set (the caller
    /// then writes the chunk anew, or counts it as not renewed).
    private static func touch(_ path: String, to stamp: Int64?, backwards: Bool = false) -> Bool {
        var st = stat()
        guard stat(path, &st) == 0 else { return false }
        let now = Int64(Date().timeIntervalSince1970)
        let target = stamp ?? now
        if !backwards && Int64(st.st_mtim.tv_sec) >= target { return true }
        // Access and modification time both (glibc's UTIME_OMIT does not reach Swift); nothing reads the access time.
        var times = [timespec(tv_sec: Int(target), tv_nsec: 0), timespec(tv_sec: Int(target), tv_nsec: 0)]
        return utimensat(AT_FDCWD, path, &times, 0) == 0
    }

    /// When the copy of `hash` here counts as stored (seconds since 1970), nil when there is none.
    func storedAt(_ hash: String) -> Int64? {
        guard let p = try? path(hash) else { return nil }
        var st = stat()
        return stat(p, &st) == 0 ? Int64(st.st_mtim.tv_sec) : nil
    }

    /// Renews the lease of the copy of `hash` here, if there is one (`CHUNK_KEEP`); false when there is none.
    @discardableResult
    func renew(_ hash: String) -> Bool {
        guard let p = try? path(hash) else { return false }
        return held.locked { _ in Self.touch(p, to: nil) }
    }

    /// The chunks here last stored or renewed `lease` seconds or more before `now`.
    func pastLease(now: Double, lease: Double) -> [String] {
        list().filter { hash in storedAt(hash).map { ChunkReclaim.isPastLease(modified: Double($0), now: now, lease: lease) } ?? false }
    }

    /// Deletes chunk `hash` if it is still past its lease (checked under the count's lock, as `put` and `renew` renew
    /// a copy: a chunk stored or renewed since it was listed stays); returns the bytes it was counted as, nil if kept.
    func reclaim(_ hash: String, now: Double, lease: Double) -> Int64? {
        guard let p = try? path(hash) else { return nil }
        var freed: Int64?
        _ = held.locked { total -> Bool in
            var st = stat()
            guard stat(p, &st) == 0, ChunkReclaim.isPastLease(modified: Double(st.st_mtim.tv_sec), now: now, lease: lease), unlink(p) == 0 else {
                return false
            }
            let size = Self.charge(Int64(st.st_size))
            total = max(0, StorageBudget.sum(total, -size))
            freed = size
            return true
        }
        return freed
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
            remove(p)
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
        guard Hex.string(digest) == hash else {
            remove(p)
            throw CorruptChunk(hash: hash)
        }
        return buffer
    }

    func delete(_ hash: String) {
        if let p = try? path(hash) { remove(p) }
    }

    /// Every chunk held here.
    func list() -> [String] {
        listed.count.add(1, ordering: .relaxed)
        return Self.list(root)
    }

    /// How many times `list()` ran.
    var listings: Int { listed.count.load(ordering: .relaxed) }

    private static func list(_ root: String) -> [String] {
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
