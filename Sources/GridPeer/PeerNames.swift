public import GridCore

/// Rules for what clients may name: memory keys, stored file names, chunk hashes; and the size limits.
public enum PeerNames {
    /// Largest memory value, as JSON text.
    public static let maxValueBytes = 256 << 10
    /// Longest memory key, in bytes.
    public static let maxKeyBytes = 512
    /// Files below this size also come back inline (base64) in `FILE_INFO`, the seed's form.
    public static let inlineFileBytes = 64 << 10
    /// Chunk size of stored files.
    public static let chunkSize = 4 << 20
    /// How many chunks of one upload a client may have in flight (sent, not yet answered).
    public static let uploadWindow = 4
    /// Largest file the grid stores: its manifest (about 67 bytes a chunk) must fit a memory value (256 KiB), which
    /// every replica checks; 14 GiB is 3,584 chunks, about 240 KB. (64 GiB was allowed, and the manifest of anything
    /// over about 15 GiB was refused by every other replica.)
    public static let maxFileBytes: Int64 = 14 << 30
    /// The prefix of the manifests' keys in the distributed memory; users cannot name keys with control characters.
    public static let manifestPrefix = "\u{1}file:"

    public static func validateKey(_ key: String) throws(GridError) {
        if key.isEmpty { throw GridError(.badRequest, "the key is empty") }
        if key.utf8.count > maxKeyBytes { throw GridError(.badRequest, "the key is longer than \(maxKeyBytes) bytes") }
        if key.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) {
            throw GridError(.badRequest, "the key \(String(reflecting: key)) contains control characters")
        }
    }

    /// A stored file's name follows the job-file rules: relative, no `..`, no NUL or control characters.
    public static func validateFileName(_ name: String) throws(GridError) {
        try FileName.validate(name)
    }

    /// A chunk is named by its SHA-256: exactly 64 lower-case hex digits (so it can never be a path).
    public static func isChunkHash(_ s: String) -> Bool {
        s.utf8.count == 64 && s.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// Number of chunks of a file of `size` bytes (an empty file has none).
    public static func chunkCount(size: Int64, chunkSize: Int) -> Int {
        size <= 0 ? 0 : Int((size + Int64(chunkSize) - 1) / Int64(chunkSize))
    }

    /// Whether a manifest read from the shared memory (a peer's claim: any proven peer can write an entry) can be the
    /// grid's own: a size of 0…`maxFileBytes` in chunks of `chunkSize`, exactly as many chunks as that size needs,
    /// each named by a hash. (One claiming size 0 and thousands of 4 MiB chunks had a peer gather them all in memory.)
    public static func isConsistent(size: Int64, chunkSize: Int, chunks: [String], sha256: String) -> Bool {
        (0...maxFileBytes).contains(size) && chunkSize == Self.chunkSize && chunks.count == chunkCount(size: size, chunkSize: chunkSize)
            && chunks.allSatisfy(isChunkHash) && isChunkHash(sha256)
    }

    /// The size chunk `index` must have.
    public static func chunkLength(index: Int, size: Int64, chunkSize: Int) -> Int {
        let start = Int64(index) * Int64(chunkSize)
        return Int(max(0, min(Int64(chunkSize), size - start)))
    }
}
