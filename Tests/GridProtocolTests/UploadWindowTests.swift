import GridProtocol
import Testing

/// An upload's window is the peer's claim: a client keeps it within 1…16, whatever number comes (issue 17).
@Suite struct UploadWindowTests {
    @Test(arguments: [(nil, 1), (0, 1), (-1, 1), (Int.min, 1), (1, 1), (4, 4), (16, 16), (17, 16), (Int.max, 16)] as [(Int?, Int)])
    func aClaimedWindowIsKeptWithinBounds(claim: Int?, used: Int) {
        #expect(Msg.Upload(uploadId: "u", chunkSize: 4 << 20, window: claim).inFlight == used)
    }

    /// So is its chunk size: 0 never advanced through the file, and a negative or huge one trapped the client.
    @Test(arguments: [(4 << 20, 4 << 20), (1, 1), (64 << 20, 64 << 20), (0, nil), (-1, nil), (Int.min, nil), ((64 << 20) + 1, nil), (Int.max, nil)] as [(Int, Int?)])
    func aClaimedChunkSizeIsUsedOnlyWithinBounds(claim: Int, used: Int?) {
        #expect(Msg.Upload(uploadId: "u", chunkSize: claim).usableChunkSize == used)
    }

    /// A file's description is a peer's claim too: a client fetches chunk by chunk only what can be a file.
    @Test(arguments: [(0, 0, true), (10, 1, true), (10, 10, true), (64 << 30, 16_384, true), (10, 11, false), (-1, 0, false),
        (0, 1, false), (10, -1, false), (Int64.max, 1, false), (100, Int.max, false)] as [(Int64, Int, Bool)])
    func aFileDescriptionIsFetchedOnlyIfItsNumbersHold(size: Int64, chunks: Int, fetched: Bool) {
        let info = Msg.FileInfo(filename: "f", size: size, sha256: "", chunkSize: 4 << 20, chunkCount: chunks, data: nil)
        #expect(info.isConsistent(maxFileBytes: 64 << 30) == fetched)
    }
}
