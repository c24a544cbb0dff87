import GridCore
import GridProtocol
import NIOCore
import Testing

/// Feeds bytes to a `FrameParser` the way `GridFrameDecoder` does and collects what comes out.
private struct Feeder {
    var parser: FrameParser
    var buffer = ByteBuffer()

    init(limits: FrameLimits = FrameLimits()) {
        parser = FrameParser(limits: limits)
    }

    /// Appends `bytes` and takes every frame that is now complete.
    mutating func feed(_ bytes: some Sequence<UInt8>) -> [InboundFrame] {
        buffer.writeBytes(Array(bytes))
        var out: [InboundFrame] = []
        while let frame = parser.next(&buffer) { out.append(frame) }
        return out
    }

    mutating func feed(_ text: String) -> [InboundFrame] { feed(Array(text.utf8)) }

    /// Feeds `bytes` in pieces of `chunk` bytes.
    mutating func feed(_ bytes: [UInt8], chunk: Int) -> [InboundFrame] {
        var out: [InboundFrame] = []
        var start = 0
        while start < bytes.count {
            let end = min(start + chunk, bytes.count)
            out += feed(bytes[start..<end])
            start = end
        }
        return out
    }

    /// The peer closed: what is complete, then whatever `finish` says about the rest.
    mutating func finish() -> [InboundFrame] {
        var out: [InboundFrame] = []
        while let frame = parser.next(&buffer) { out.append(frame) }
        if let last = parser.finish(&buffer) { out.append(last) }
        return out
    }
}

/// What a frame is, in a form that tests can compare.
private enum Seen: Equatable {
    case frame(id: Int, GridMessage, payload: [UInt8]?)
    case invalid(GridError.Code, id: Int?, fatal: Bool)

    init(_ inbound: InboundFrame) {
        switch inbound {
        case .frame(let f): self = .frame(id: f.id, f.message, payload: f.payload.map { Array($0.readableBytesView) })
        case .invalid(let error, let id, let fatal): self = .invalid(error.code, id: id, fatal: fatal)
        }
    }
}

private func seen(_ frames: [InboundFrame]) -> [Seen] { frames.map(Seen.init) }

private let job = JobRef(jobId: 12, attempt: 1)

/// The payload of the bulk message in `stream`: bytes that look like lines but must not be parsed as such.
private let bulk = Array((#"{"type":"PING"}"# + "\nxx").utf8)

/// A stream with a plain line, a bulk message, a blank line and a trailing line.
private let stream: [UInt8] =
    Array((#"{"type":"PING","id":1}"# + "\n").utf8)
    + Array((#"{"type":"JOB_LOG","id":2,"job":{"job_id":12,"attempt":1},"offset":0,"bytes":\#(bulk.count)}"# + "\n").utf8)
    + bulk
    + Array(("\n" + #"{"type":"PONG","id":3}"# + "\n").utf8)

private let streamFrames: [Seen] = [
    .frame(id: 1, .ping, payload: nil),
    .frame(id: 2, .jobLog(Msg.JobLog(job: job, offset: 0)), payload: bulk),
    .frame(id: 3, .pong, payload: nil),
]

@Suite("FrameParser")
struct FrameParserTests {
    // MARK: Lines and bulk payloads

    @Test func aLineIsOneFrameWithItsId() {
        var f = Feeder()
        #expect(seen(f.feed(#"{"type":"PING","id":7}"# + "\n")) == [.frame(id: 7, .ping, payload: nil)])
    }

    @Test func aMissingIdIsZero() {
        var f = Feeder()
        #expect(seen(f.feed(#"{"type":"PONG"}"# + "\n")) == [.frame(id: 0, .pong, payload: nil)])
    }

    @Test func nothingComesOutBeforeTheNewline() {
        var f = Feeder()
        #expect(f.feed(#"{"type":"PING","id":7}"#).isEmpty)
        #expect(seen(f.feed("\n")) == [.frame(id: 7, .ping, payload: nil)])
    }

    @Test func wholeStreamAtOnceYieldsEveryFrame() {
        var f = Feeder()
        #expect(seen(f.feed(stream)) == streamFrames)
        #expect(f.finish().isEmpty)
    }

    @Test func streamFedOneByteAtATimeYieldsTheSameFrames() {
        var f = Feeder()
        var out: [InboundFrame] = []
        for byte in stream { out += f.feed([byte]) }
        #expect(seen(out) == streamFrames)
        #expect(f.finish().isEmpty)
    }

    @Test(arguments: [2, 3, 5, 8, 13, 64, 100])
    func streamFedInChunksYieldsTheSameFrames(chunk: Int) {
        var f = Feeder()
        #expect(seen(f.feed(stream, chunk: chunk)) == streamFrames)
        #expect(f.finish().isEmpty)
    }

    @Test func bulkFrameWaitsForEveryPayloadByte() {
        var f = Feeder()
        #expect(f.feed(#"{"type":"PING","id":4,"bytes":5}"# + "\nhell").isEmpty)
        #expect(seen(f.feed("o")) == [.frame(id: 4, .ping, payload: Array("hello".utf8))])
    }

    @Test func bulkOfZeroBytesHasAnEmptyPayload() {
        var f = Feeder()
        #expect(seen(f.feed(#"{"type":"PING","id":4,"bytes":0}"# + "\n")) == [.frame(id: 4, .ping, payload: [])])
    }

    @Test func payloadMayHoldAnyByte() {
        var f = Feeder()
        let payload: [UInt8] = [0, 10, 13, 255, 10, 10]
        let out = f.feed(Array((#"{"type":"PING","bytes":6}"# + "\n").utf8) + payload + Array("\n".utf8))
        #expect(seen(out) == [.frame(id: 0, .ping, payload: payload)])
    }

    @Test func blankLinesAreIgnored() {
        var f = Feeder()
        #expect(seen(f.feed("\n\n   \n\t \n\r\n" + #"{"type":"PING","id":1}"# + "\n\n")) == [.frame(id: 1, .ping, payload: nil)])
    }

    @Test func crlfLineEndingsAreAccepted() {
        var f = Feeder()
        let out = f.feed(#"{"type":"PING","id":1}"# + "\r\n" + #"{"type":"PING","id":2,"bytes":2}"# + "\r\nok")
        #expect(seen(out) == [.frame(id: 1, .ping, payload: nil), .frame(id: 2, .ping, payload: Array("ok".utf8))])
    }

    // MARK: Bad input that the connection survives

    @Test func malformedJSONIsInvalidButNotFatal() {
        var f = Feeder()
        let out = f.feed("{not json\n" + #"{"type":"PING","id":2}"# + "\n")
        #expect(seen(out) == [.invalid(.malformedMessage, id: nil, fatal: false), .frame(id: 2, .ping, payload: nil)])
    }

    @Test func aJSONValueThatIsNotAnObjectIsMalformed() {
        var f = Feeder()
        #expect(seen(f.feed("[1,2]\n\"PING\"\n")) == [
            .invalid(.malformedMessage, id: nil, fatal: false), .invalid(.malformedMessage, id: nil, fatal: false),
        ])
    }

    @Test func unknownTypeIsInvalidWithUnknownMessageAndItsId() {
        var f = Feeder()
        let out = f.feed(#"{"type":"FROB","id":9}"# + "\n" + #"{"type":"PING","id":10}"# + "\n")
        #expect(seen(out) == [.invalid(.unknownMessage, id: 9, fatal: false), .frame(id: 10, .ping, payload: nil)])
    }

    @Test func unknownTypeErrorNamesTheType() {
        var f = Feeder()
        guard case .invalid(let error, _, _)? = f.feed(#"{"type":"FROB"}"# + "\n").first else {
            Issue.record("expected an invalid frame")
            return
        }
        #expect(error.message.contains("FROB"))
    }

    @Test func unknownTypeWithBulkSkipsItsPayload() {
        var f = Feeder()
        let out = f.feed(#"{"type":"FROB","id":9,"bytes":3}"# + "\n{x\n" + #"{"type":"PING","id":10}"# + "\n")
        #expect(seen(out) == [.invalid(.unknownMessage, id: 9, fatal: false), .frame(id: 10, .ping, payload: nil)])
    }

    @Test func missingTypeIsMalformedWithItsId() {
        var f = Feeder()
        let out = f.feed(#"{"id":5}"# + "\n" + #"{"type":"","id":6}"# + "\n" + #"{"type":"PING","id":7}"# + "\n")
        #expect(
            seen(out) == [
                .invalid(.malformedMessage, id: 5, fatal: false), .invalid(.malformedMessage, id: 6, fatal: false),
                .frame(id: 7, .ping, payload: nil),
            ])
    }

    @Test func knownTypeWithAMissingFieldIsMalformedNamingTheField() {
        var f = Feeder()
        let out = f.feed(#"{"type":"HELLO","id":3,"version":1}"# + "\n" + #"{"type":"PING","id":4}"# + "\n")
        #expect(seen(out) == [.invalid(.malformedMessage, id: 3, fatal: false), .frame(id: 4, .ping, payload: nil)])
        guard case .invalid(let error, _, _)? = out.first else { return }
        #expect(error.message.contains("token"))
    }

    // MARK: Limits

    private let limits = FrameLimits(maxLineBytes: 64, maxBulkBytes: 16)

    /// A PING line of exactly `length` bytes (newline excluded).
    private func pingLine(length: Int) -> String {
        let bare = #"{"type":"PING","id":1,"pad":""}"#
        return #"{"type":"PING","id":1,"pad":""# + String(repeating: "x", count: length - bare.utf8.count) + #""}"#
    }

    @Test func aLineOfExactlyTheLimitIsAccepted() {
        var f = Feeder(limits: limits)
        let line = pingLine(length: 64)
        #expect(line.utf8.count == 64)
        #expect(seen(f.feed(line + "\n")) == [.frame(id: 1, .ping, payload: nil)])
    }

    @Test func aLineOverTheLimitIsFatal() {
        var f = Feeder(limits: limits)
        #expect(seen(f.feed(pingLine(length: 65) + "\n")) == [.invalid(.lineTooLong, id: nil, fatal: true)])
    }

    @Test func anOverlongLineIsRefusedBeforeItsNewlineArrives() {
        var f = Feeder(limits: limits)
        let bytes = Array(String(repeating: "x", count: 65).utf8)
        #expect(f.feed(bytes[..<64]).isEmpty)
        #expect(seen(f.feed(bytes[64...])) == [.invalid(.lineTooLong, id: nil, fatal: true)])
        #expect(f.buffer.readableBytes == 0)
    }

    @Test func anOverlongLineFedByteByByteIsRefusedAtTheFirstByteOverTheLimit() {
        var f = Feeder(limits: limits)
        var fedWhenRefused: Int?
        for (i, byte) in Array(String(repeating: "x", count: 200).utf8).enumerated() {
            if !f.feed([byte]).isEmpty, fedWhenRefused == nil { fedWhenRefused = i + 1 }
        }
        #expect(fedWhenRefused == 65)
    }

    @Test func bulkOfExactlyTheLimitIsAccepted() {
        var f = Feeder(limits: limits)
        let payload = Array(repeating: UInt8(ascii: "b"), count: 16)
        let out = f.feed(Array((#"{"type":"PING","id":2,"bytes":16}"# + "\n").utf8) + payload)
        #expect(seen(out) == [.frame(id: 2, .ping, payload: payload)])
    }

    @Test func bulkOverTheLimitIsFatalWithItsId() {
        var f = Feeder(limits: limits)
        #expect(seen(f.feed(#"{"type":"PING","id":2,"bytes":17}"# + "\n")) == [.invalid(.bulkTooLarge, id: 2, fatal: true)])
    }

    @Test func bulkOverTheLimitIsRefusedBeforeItsBytesArrive() {
        var f = Feeder()
        let out = f.feed(#"{"type":"PING","id":2,"bytes":1099511627776}"# + "\n")
        #expect(seen(out) == [.invalid(.bulkTooLarge, id: 2, fatal: true)])
    }

    @Test(arguments: [#""3""#, "2.5", "1e30", "true", "null"])
    func aBulkSizeThatIsNotAWholeNumberIsFatal(bytes: String) {
        var f = Feeder(limits: limits)
        let out = f.feed(#"{"type":"PING","id":2,"bytes":"# + bytes + "}\n" + "raw bytes\n")
        #expect(seen(out) == [.invalid(.malformedMessage, id: 2, fatal: true)])
    }

    @Test func negativeBulkSizeIsFatal() {
        var f = Feeder(limits: limits)
        #expect(seen(f.feed(#"{"type":"PING","id":2,"bytes":-1}"# + "\n")) == [.invalid(.bulkTooLarge, id: 2, fatal: true)])
    }

    // MARK: End of stream

    @Test func endOfStreamInsideAPayloadIsTruncated() {
        var f = Feeder()
        #expect(f.feed(#"{"type":"PING","id":3,"bytes":10}"# + "\nabc").isEmpty)
        #expect(seen(f.finish()) == [.invalid(.truncated, id: 3, fatal: true)])
    }

    @Test func endOfStreamRightAfterABulkHeaderIsTruncated() {
        var f = Feeder()
        #expect(f.feed(#"{"type":"PING","id":3,"bytes":1}"# + "\n").isEmpty)
        #expect(seen(f.finish()) == [.invalid(.truncated, id: 3, fatal: true)])
    }

    @Test func endOfStreamInsideALineIsTruncated() {
        var f = Feeder()
        #expect(f.feed(#"{"type":"PING","id":3}"#).isEmpty)
        #expect(seen(f.finish()) == [.invalid(.truncated, id: nil, fatal: true)])
    }

    @Test func endOfStreamBetweenFramesIsClean() {
        var f = Feeder()
        #expect(f.feed(#"{"type":"PING","id":3}"# + "\n").count == 1)
        #expect(f.finish().isEmpty)
    }

    @Test func endOfAnEmptyStreamIsClean() {
        var f = Feeder()
        #expect(f.finish().isEmpty)
    }

    // MARK: After a fatal error

    @Test func inputAfterAFatalErrorIsDiscarded() {
        var f = Feeder(limits: limits)
        let out = f.feed(#"{"type":"PING","bytes":99}"# + "\n" + #"{"type":"PING","id":1}"# + "\n")
        #expect(seen(out) == [.invalid(.bulkTooLarge, id: 0, fatal: true)])
        #expect(f.buffer.readableBytes == 0)
        #expect(f.feed(#"{"type":"PING","id":2}"# + "\n").isEmpty)
        #expect(f.buffer.readableBytes == 0)
    }

    @Test func finishAfterAFatalErrorSaysNothingMore() {
        var f = Feeder(limits: limits)
        #expect(f.feed(String(repeating: "x", count: 100)).count == 1)
        #expect(f.feed("partial").isEmpty)
        #expect(f.finish().isEmpty)
    }
}
