import Foundation
import GridCore
import GridProtocol
import NIOCore
import NIOEmbedded
import Testing

/// What a peer's reply may hold: a reader refuses a line over 1 MiB and closes its connection for it, failing all
/// else in flight there. Listings stop at the budget and say so; a longer line goes out as an `ERROR` in its place.
@Suite struct ReplyBoundTests {
    @Test func aListingStopsAtTheBudgetAndSaysItWasCut() throws {
        let names = (0..<3_000).map { "k\($0)-" + String(repeating: "x", count: 480) }
        let cut = Msg.MemKeys(fitting: names)
        #expect(cut.truncated == true && !cut.keys.isEmpty && cut.keys == Array(names.prefix(cut.keys.count)))
        let line = try GridMessage.memKeys(cut).encodeLine(id: 7, bulkBytes: nil)
        #expect(line.count <= 1 << 20, "\(line.count) bytes")
        let whole = Msg.MemKeys(fitting: Array(names.prefix(10)))
        #expect(whole.truncated == nil && whole.keys.count == 10)
        // Control characters (stored keys begin with one) count six bytes each, as JSON writes them.
        let controls = (0..<2_000).map { "\u{3}\u{1E}" + String(repeating: "\u{1}", count: 100) + "\($0)" }
        let cutControls = Msg.MemKeys(fitting: controls)
        #expect(try GridMessage.memKeys(cutControls).encodeLine(id: 1, bulkBytes: nil).count <= 1 << 20)
        #expect(Msg.MemKeys(fitting: [], budget: 0).truncated == nil)
        #expect(Msg.MemKeys(fitting: ["a"], budget: -1).keys.isEmpty)
    }

    @Test func aFileListingCarriesNoChunkListsAndStopsAtTheBudget() throws {
        // 1,000 files of 14 GiB: each manifest's chunk list is 240 KB, the listing would have been 240 MB.
        let chunks = (0..<3_584).map { String(format: "%064x", $0) }
        let files = (0..<1_000).map {
            Msg.FileManifest(filename: "f\($0)-" + String(repeating: "n", count: 400), size: 14 << 30, sha256: String(repeating: "a", count: 64), chunkSize: 4 << 20, chunks: chunks)
        }
        let list = Msg.FileList(fitting: files)
        #expect(list.files.allSatisfy { $0.chunks.isEmpty })
        #expect(list.files.map(\.filename) == Array(files.prefix(list.files.count).map(\.filename)))
        #expect(try GridMessage.fileList(list).encodeLine(id: 1, bulkBytes: nil).count <= 1 << 20)
        #expect(Msg.FileList(fitting: Array(files.prefix(3))).truncated == nil)
    }

    /// A reply longer than a line may be goes out as an `ERROR` for its request, which the reader takes; the next
    /// reply goes out as it is.
    @Test func aReplyOverALineIsAnErrorForItsRequest() throws {
        let channel = EmbeddedChannel(handler: GridFrameWriter(maxLineBytes: 1 << 20))
        defer { _ = try? channel.finish() }
        let big = Msg.MemEntries(entries: (0..<8).map { Msg.MemEntry(key: "k\($0)", value: .string(String(repeating: "v", count: 200_000)), version: 1, origin: "w") })
        try channel.writeOutbound(GridFrame(id: 41, .memEntries(big)))
        try channel.writeOutbound(GridFrame(id: 42, .ok(Msg.Ok())))
        var bytes = ByteBuffer()
        while var part = try channel.readOutbound(as: ByteBuffer.self) { bytes.writeBuffer(&part) }
        #expect(bytes.readableBytes < 4096, "\(bytes.readableBytes) bytes written")
        var parser = FrameParser(limits: FrameLimits())
        var frames: [InboundFrame] = []
        while let f = parser.next(&bytes) { frames.append(f) }
        #expect(frames.count == 2)
        guard case .frame(let first)? = frames.first, case .error(let e) = first.message else {
            Issue.record("not an ERROR: \(frames)")
            return
        }
        #expect(first.id == 41 && e.code == .lineTooLong && e.message.contains("ask for less"))
        guard case .frame(let second)? = frames.last, case .ok = second.message else {
            Issue.record("the next reply: \(frames)")
            return
        }
        #expect(second.id == 42)
    }
}
