import GridCore
import GridPeer
import Testing

@Suite struct PeerNamesTests {
    @Test(arguments: ["../etc/passwd", "/etc/passwd", "a/../../b", "a\u{0}b", "", ".", "a//b", "x\n"])
    func badFileNamesAreRefused(_ name: String) {
        #expect(throws: GridError.self) { try PeerNames.validateFileName(name) }
    }

    @Test func plainFileNamesAreAccepted() throws {
        try PeerNames.validateFileName("remote_copy.txt")
        try PeerNames.validateFileName("data/part-1.csv")
    }

    @Test func keysRefuseControlCharactersAndLength() throws {
        try PeerNames.validateKey("user:id")
        #expect(throws: GridError.self) { try PeerNames.validateKey("") }
        #expect(throws: GridError.self) { try PeerNames.validateKey("a\u{0}") }
        #expect(throws: GridError.self) { try PeerNames.validateKey(PeerNames.manifestPrefix + "x") }
        #expect(throws: GridError.self) { try PeerNames.validateKey(String(repeating: "k", count: PeerNames.maxKeyBytes + 1)) }
    }

    @Test func chunkNamesAreExactlySHA256Hex() {
        #expect(PeerNames.isChunkHash(String(repeating: "ab", count: 32)))
        #expect(!PeerNames.isChunkHash(String(repeating: "AB", count: 32)))
        #expect(!PeerNames.isChunkHash("../" + String(repeating: "a", count: 61)))
        #expect(!PeerNames.isChunkHash(String(repeating: "a", count: 63)))
    }

    /// A manifest is read from the shared memory, where any proven peer can write: one that claimed size 0 and
    /// thousands of 4 MiB chunks had a peer gather them all in memory for `GET_FILE`. Only the grid's own shape passes.
    @Test func onlyAConsistentManifestPasses() {
        let h = String(repeating: "ab", count: 32)
        let size = Int64(PeerNames.chunkSize) + 1
        #expect(PeerNames.isConsistent(size: size, chunkSize: PeerNames.chunkSize, chunks: [h, h], sha256: h))
        #expect(PeerNames.isConsistent(size: 0, chunkSize: PeerNames.chunkSize, chunks: [], sha256: h))
        #expect(!PeerNames.isConsistent(size: 0, chunkSize: PeerNames.chunkSize, chunks: Array(repeating: h, count: 3_800), sha256: h))
        #expect(!PeerNames.isConsistent(size: size, chunkSize: PeerNames.chunkSize, chunks: [h], sha256: h))
        #expect(!PeerNames.isConsistent(size: size, chunkSize: 1, chunks: [h, h], sha256: h))
        #expect(!PeerNames.isConsistent(size: size, chunkSize: PeerNames.chunkSize, chunks: [h, "../x"], sha256: h))
        #expect(!PeerNames.isConsistent(size: 1, chunkSize: PeerNames.chunkSize, chunks: [h], sha256: "x"))
        for bad in [Int64.min, -1, PeerNames.maxFileBytes + 1, Int64.max] {
            #expect(!PeerNames.isConsistent(size: bad, chunkSize: PeerNames.chunkSize, chunks: [h], sha256: h))
        }
    }

    @Test func chunkArithmetic() {
        #expect(PeerNames.chunkCount(size: 0, chunkSize: 4) == 0)
        #expect(PeerNames.chunkCount(size: 4, chunkSize: 4) == 1)
        #expect(PeerNames.chunkCount(size: 9, chunkSize: 4) == 3)
        #expect(PeerNames.chunkLength(index: 2, size: 9, chunkSize: 4) == 1)
        #expect(PeerNames.chunkLength(index: 3, size: 9, chunkSize: 4) == 0)
    }
}
