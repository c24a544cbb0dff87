import GridProtocol
import Testing

/// An upload's window is the peer's claim: a client keeps it within 1…16, whatever number comes (issue 17).
@Suite struct UploadWindowTests {
    @Test(arguments: [(nil, 1), (0, 1), (-1, 1), (Int.min, 1), (1, 1), (4, 4), (16, 16), (17, 16), (Int.max, 16)] as [(Int?, Int)])
    func aClaimedWindowIsKeptWithinBounds(claim: Int?, used: Int) {
        #expect(Msg.Upload(uploadId: "u", chunkSize: 4 << 20, window: claim).inFlight == used)
    }
}
