import GridCore
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

@testable import GridProtocol

/// The per-address count behind the stranger limits, and what the parser accepts before authentication.
@Suite("StrangerLimits")
struct StrangerLimitsTests {
    static let small = StrangerLimits(helloDeadlineSeconds: 1, maxLineBytes: 64, maxPendingPerAddress: 2, maxOpenPerAddress: 3)

    @Test func pendingConnectionsFromOneAddressAreCapped() {
        var tally = StrangerTally(limits: Self.small)
        #expect(tally.admit("10.0.0.1") == nil)
        #expect(tally.admit("10.0.0.1") == nil)
        #expect(tally.admit("10.0.0.1") == .tooManyPending(2))
        #expect(tally.admit("10.0.0.2") == nil, "another address has its own count")
    }

    /// One host is given a whole IPv6 /64: its addresses count as one (before, each address had its own 256 pending
    /// places); an IPv4 address mapped into IPv6 counts as itself.
    @Test func anIPv6SlashSixtyFourCountsAsOneAddress() {
        var tally = StrangerTally(limits: Self.small)
        #expect(tally.admit("2001:db8:1:2::1") == nil)
        #expect(tally.admit("2001:db8:1:2:ffff::9") == nil)
        #expect(tally.admit("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == .tooManyPending(2))
        #expect(tally.admit("2001:db8:1:3::1") == nil, "another /64")
        #expect(tally.admit("::ffff:10.0.0.1") == nil)
        #expect(tally.admit("10.0.0.1") == nil)
        #expect(tally.admit("10.0.0.1") == .tooManyPending(2), "mapped and plain IPv4 are one address")
        tally.closed("2001:db8:1:2::77", wasAuthenticated: false)
        #expect(tally.admit("2001:db8:1:2::5") == nil, "a place of the /64 came back")
    }

    /// Strangers spread over many addresses still hold at most `maxPendingInAll` pending places; authenticating or
    /// closing gives one back.
    @Test func pendingConnectionsFromEveryAddressTogetherAreCapped() {
        var tally = StrangerTally(limits: StrangerLimits(maxPendingPerAddress: 2, maxOpenPerAddress: 3, maxPendingInAll: 3))
        for i in 1...3 { #expect(tally.admit("10.0.0.\(i)") == nil) }
        #expect(tally.admit("10.0.0.9") == .tooManyPendingInAll(3))
        tally.authenticated("10.0.0.1")
        #expect(tally.admit("10.0.0.9") == nil)
        #expect(tally.admit("10.0.0.8") == .tooManyPendingInAll(3))
        tally.closed("10.0.0.2", wasAuthenticated: false)
        #expect(tally.pendingInAll == 2)
        // Nothing counted is never taken away: a close of an address never admitted leaves the count alone.
        tally.closed("10.9.9.9", wasAuthenticated: false)
        tally.authenticated("10.9.9.9")
        #expect(tally.pendingInAll == 2)
    }

    @Test func anAuthenticatedConnectionFreesItsPendingPlaceButStillCountsAsOpen() {
        var tally = StrangerTally(limits: Self.small)
        #expect(tally.admit("a") == nil)
        #expect(tally.admit("a") == nil)
        tally.authenticated("a")
        #expect(tally.admit("a") == nil)
        tally.authenticated("a")
        #expect(tally.admit("a") == .tooManyOpen(3))
        #expect(tally.pending["a"] == 1 && tally.open["a"] == 3)
    }

    @Test func closingReturnsThePlacesAndForgetsTheAddress() {
        var tally = StrangerTally(limits: Self.small)
        #expect(tally.admit("a") == nil)
        #expect(tally.admit("a") == nil)
        tally.authenticated("a")
        tally.closed("a", wasAuthenticated: true)
        tally.closed("a", wasAuthenticated: false)
        #expect(tally.pending.isEmpty && tally.open.isEmpty)
    }

    @Test func theGuardCountsAGateOnceWhateverTheOrderOfOpenAndClose() {
        let strangers = StrangerGuard(limits: Self.small)
        let gate = try! strangers.admit(address: "a").get()
        gate.open()
        gate.open()
        #expect(strangers.snapshot.pending.isEmpty && strangers.snapshot.open["a"] == 1)
        let other = try! strangers.admit(address: "a").get()
        #expect(strangers.snapshot.pending["a"] == 1)
        _ = other
        if case .success = strangers.admit(address: "a") {} else { Issue.record("a second pending one is allowed") }
        if case .failure(let refusal) = strangers.admit(address: "a") {
            #expect(refusal == .tooManyPending(2))
        } else {
            Issue.record("a third pending one must be refused")
        }
    }

    // MARK: The HELLO deadline

    /// A connection through a `StrangerHandler` with a 1 s deadline, connected (so its timer runs).
    static func connected() throws -> (EmbeddedChannel, StrangerGate) {
        let handler = StrangerHandler(guard: StrangerGuard(limits: small), address: "a")
        let channel = EmbeddedChannel(handler: handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, try #require(handler.gate))
    }

    @Test func aSilentStrangerIsClosedAtTheDeadline() throws {
        let (channel, _) = try Self.connected()
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(900))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(200))
        #expect(!channel.isActive)
    }

    /// Holds every write, never completing it: what TLS does before a handshake the stranger never begins, or a socket
    /// whose stranger never reads.
    final class StallingWrites: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        var held: [EventLoopPromise<Void>?] = []
        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) { held.append(promise) }
        func flush(context: ChannelHandlerContext) {}
    }

    /// A stranger whose refusal cannot be written (no TLS handshake, or no reading) is closed anyway, a second after
    /// the deadline. Before, the close waited for the write, the connection stayed open and kept its pending place,
    /// and enough of them made the port refuse everyone.
    @Test func aStrangerWhoseRefusalCannotBeWrittenIsClosedAnyway() throws {
        let stalling = StallingWrites()
        let handler = StrangerHandler(guard: StrangerGuard(limits: Self.small), address: "a")
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(stalling)
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1_100))
        #expect(stalling.held.count == 1, "the refusal was written")
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1_000))
        #expect(!channel.isActive, "closed without waiting for the write")
    }

    /// The same for a stranger refused at once by the caps: it has no gate and no deadline, only the refusal.
    @Test func aStrangerRefusedByTheCapsIsClosedEvenWhenTheRefusalCannotBeWritten() throws {
        let strangers = StrangerGuard(limits: Self.small)
        var channels: [EmbeddedChannel] = []
        var stalls: [StallingWrites] = []
        for _ in 0..<3 {
            let stalling = StallingWrites()
            let handler = StrangerHandler(guard: strangers, address: "a")
            let channel = EmbeddedChannel()
            try channel.pipeline.syncOperations.addHandler(stalling)
            try channel.pipeline.syncOperations.addHandler(handler)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            channels.append(channel)
            stalls.append(stalling)
        }
        #expect(stalls[2].held.count == 1, "the third was refused at once")
        channels[2].embeddedEventLoop.advanceTime(by: .milliseconds(999))
        #expect(channels[2].isActive)
        channels[2].embeddedEventLoop.advanceTime(by: .milliseconds(2))
        #expect(!channels[2].isActive, "and closed a second later, before any deadline")
        #expect(channels[0].isActive && channels[1].isActive)
    }

    @Test func aHelloBeingCheckedOutlivesTheDeadlineButNotItsGrace() throws {
        let (channel, gate) = try Self.connected()
        gate.heard()
        channel.embeddedEventLoop.advanceTime(by: .seconds(30))
        #expect(channel.isActive, "this side's slow check must not close a client that said HELLO in time")
        channel.embeddedEventLoop.advanceTime(by: .seconds(32))
        #expect(!channel.isActive, "a check that never ends does not keep the connection forever")
    }

    @Test func anOpenedGateIsNeverClosedByTheTimer() throws {
        let (channel, gate) = try Self.connected()
        gate.heard()
        gate.open()
        channel.embeddedEventLoop.advanceTime(by: .seconds(120))
        #expect(channel.isActive)
    }

    @Test func anAuthenticatedConnectionThatNeverTakesItsNextStepIsClosedADeadlineLater() throws {
        let (channel, gate) = try Self.connected()
        gate.heard()
        gate.authenticated(awaiting: "REGISTER")
        #expect(gate.isOpen && !gate.isSettled, "full limits at once, but not settled")
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1_900))
        #expect(channel.isActive, "it has a whole deadline after its HELLO_OK")
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(200))
        #expect(!channel.isActive, "HELLO_OK and then silence does not hold a place for good")
        let said = try channel.readOutbound(as: ByteBuffer.self).map { String(buffer: $0) } ?? ""
        #expect(said.contains("no REGISTER within 1 s of HELLO_OK"), "it says why: \(said)")
    }

    @Test func aStepThatCameInTimeIsNotClosedWhileThisSideIsSlowToTakeIt() throws {
        let (channel, gate) = try Self.connected()
        gate.heard()
        gate.authenticated(awaiting: "REGISTER")
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(500))
        gate.takingStep()
        channel.embeddedEventLoop.advanceTime(by: .seconds(30))
        #expect(channel.isActive, "a REGISTER being written to a slow store was closed")
        channel.embeddedEventLoop.advanceTime(by: .seconds(40))
        #expect(!channel.isActive, "a REGISTER never carried out does not hold the connection for good")
    }

    @Test func aHelloCheckedLateStillGetsADeadlineForItsNextStep() throws {
        let (channel, gate) = try Self.connected()
        gate.heard()
        channel.embeddedEventLoop.advanceTime(by: .seconds(50))
        gate.authenticated(awaiting: "REGISTER")
        channel.embeddedEventLoop.advanceTime(by: .seconds(11))
        #expect(channel.isActive, "the check's grace ends, and it has a deadline from then for its REGISTER")
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
    }

    @Test func aConnectionThatTakesItsNextStepIsSettledAndCountedOnce() throws {
        let strangers = StrangerGuard(limits: Self.small)
        let gate = try strangers.admit(address: "a").get()
        gate.authenticated(awaiting: "REGISTER")
        #expect(strangers.snapshot.pending.isEmpty && strangers.snapshot.open["a"] == 1, "it counts as authenticated once it is")
        gate.open()
        #expect(gate.isSettled && strangers.snapshot.open["a"] == 1 && strangers.snapshot.pending.isEmpty)
        gate.authenticated(awaiting: "REGISTER")
        #expect(gate.isSettled, "a settled gate does not go back")

        let (channel, other) = try Self.connected()
        other.heard()
        other.authenticated(awaiting: "REGISTER")
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1_500))
        other.open()
        channel.embeddedEventLoop.advanceTime(by: .seconds(300))
        #expect(channel.isActive, "a registered worker is never closed by the timer")
    }

    // MARK: The parser before authentication

    static func frames(_ parser: inout FrameParser, _ text: String) -> [InboundFrame] {
        var buffer = ByteBuffer(string: text)
        var out: [InboundFrame] = []
        while let f = parser.next(&buffer) { out.append(f) }
        return out
    }

    static func code(_ f: InboundFrame?) -> (GridError.Code, Bool)? {
        guard case .invalid(let e, _, let fatal)? = f else { return nil }
        return (e.code, fatal)
    }

    @Test func aBulkMessageBeforeAuthenticationIsRefusedFromItsLineAndItsBytesAreNotKept() {
        var parser = FrameParser()
        parser.authenticated = false
        var buffer = ByteBuffer(string: #"{"type":"JOB_LOG","id":2,"job":{"job_id":1,"attempt":1},"offset":0,"bytes":1000000}"# + "\n")
        buffer.writeBytes([UInt8](repeating: 0x41, count: 4096))
        let first = parser.next(&buffer)
        #expect(Self.code(first)?.0 == .notAuthenticated)
        #expect(Self.code(first)?.1 == true, "fatal: the connection closes")
        #expect(buffer.readableBytes == 0, "nothing of the payload is kept")
        #expect(parser.next(&buffer) == nil)
    }

    @Test func aBulkMessageAfterAuthenticationIsAccepted() {
        var parser = FrameParser()
        parser.authenticated = false
        parser.authenticated = true
        let out = Self.frames(&parser, #"{"type":"JOB_LOG","id":2,"job":{"job_id":1,"attempt":1},"offset":0,"bytes":3}"# + "\nabc")
        guard case .frame(let f)? = out.first else { Issue.record("no frame: \(out)"); return }
        #expect(f.payload.map { Array($0.readableBytesView) } == Array("abc".utf8))
    }

    @Test func aLongLineBeforeAuthenticationIsRefusedAtTheStrangerLimit() {
        var parser = FrameParser(limits: FrameLimits(maxLineBytes: 1 << 20, maxBulkBytes: 1 << 20, maxStrangerLineBytes: 100))
        parser.authenticated = false
        let out = Self.frames(&parser, String(repeating: "a", count: 101))
        #expect(Self.code(out.first)?.0 == .lineTooLong)
        var trusted = FrameParser(limits: FrameLimits(maxLineBytes: 1 << 20, maxBulkBytes: 1 << 20, maxStrangerLineBytes: 100))
        #expect(Self.frames(&trusted, String(repeating: "a", count: 101)).isEmpty, "after authentication the long limit applies")
    }

    @Test func aHelloFitsWellWithinTheStrangerLineLimit() {
        var parser = FrameParser()
        parser.authenticated = false
        let hello = #"{"type":"HELLO","id":1,"version":2,"token":"cgw_\#(String(repeating: "x", count: 64))","name":"lab-3","peer_key":"\#(String(repeating: "k", count: 44))"}"#
        guard case .frame(let f)? = Self.frames(&parser, hello + "\n").first, case .hello = f.message else {
            Issue.record("HELLO refused")
            return
        }
    }
}

/// A frame begun must arrive whole in time: a side that announced a large payload and stopped sending held it in the
/// other's memory for good (authenticated peers included).
@Suite("FrameDeadline")
struct FrameDeadlineTests {
    static func channel(seconds: Double, bytesPerSecond: Int = 100) throws -> EmbeddedChannel {
        var limits = FrameLimits()
        limits.frameSeconds = seconds
        limits.frameBytesPerSecond = bytesPerSecond
        // A listener's decoder (it has a gate): a client's reads what it asked for, and keeps no deadline.
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(GridFrameDecoder(limits: limits, gate: StrangerGate.trusted())))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    @Test func aLineBegunAndNeverEndedClosesTheConnectionAtTheDeadline() throws {
        let channel = try Self.channel(seconds: 1)
        try channel.writeInbound(ByteBuffer(string: #"{"type":"PING","id":1"#))
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(900))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(200))
        #expect(!channel.isActive)
    }

    @Test func aBulkPayloadHasASecondMorePerItsRateAndIsClosedWhenItStops() throws {
        let channel = try Self.channel(seconds: 1, bytesPerSecond: 100)
        // 300 bytes announced: 1 s + 3 s from its line.
        try channel.writeInbound(ByteBuffer(string: #"{"type":"PING","id":1,"bytes":300}"# + "\n" + String(repeating: "x", count: 150)))
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(3_900))
        #expect(channel.isActive, "within 1 s + 300 bytes at 100 a second")
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(200))
        #expect(!channel.isActive, "the rest never came")
    }

    @Test func framesThatArriveWholeAndASilentConnectionAreNeverClosed() throws {
        let channel = try Self.channel(seconds: 1)
        for i in 0..<5 {
            try channel.writeInbound(ByteBuffer(string: #"{"type":"PING","id":\#(i)"#))
            channel.embeddedEventLoop.advanceTime(by: .milliseconds(600))
            try channel.writeInbound(ByteBuffer(string: "}\n"))
            channel.embeddedEventLoop.advanceTime(by: .milliseconds(600))
        }
        channel.embeddedEventLoop.advanceTime(by: .seconds(3_600))
        #expect(channel.isActive, "each frame came whole within its second; silence between frames is no frame begun")
        var frames = 0
        while try channel.readInbound(as: InboundFrame.self) != nil { frames += 1 }
        #expect(frames == 5)
    }

    /// While this side does not read (its requests in flight, its replies unread), a partial frame waits on it, not on
    /// the sender: the deadline starts again instead of closing an honest connection.
    @Test func aFrameIsNotTimedWhileThisSideStoppedReading() throws {
        // An embedded channel always says it reads: the decoder is told instead.
        let reading = Atomic<Bool>(true)
        var limits = FrameLimits()
        limits.frameSeconds = 1
        let decoder = GridFrameDecoder(limits: limits, gate: StrangerGate.trusted()) { _ in reading.load(ordering: .relaxed) }
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(decoder))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeInbound(ByteBuffer(string: #"{"type":"PING","id":1"#))
        reading.store(false, ordering: .relaxed)
        channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        #expect(channel.isActive, "closed while this side was not reading")
        reading.store(true, ordering: .relaxed)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive, "reading again, the sender still owes the rest")
    }

    @Test func aClientsDecoderKeepsNoDeadline() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(GridFrameDecoder()))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeInbound(ByteBuffer(string: #"{"type":"PING","id":1"#))
        channel.embeddedEventLoop.advanceTime(by: .seconds(86_400))
        #expect(channel.isActive)
    }

    @Test func theDeadlineNeverTrapsWhateverTheLimitsSay() {
        var limits = FrameLimits()
        for (seconds, rate, bulk) in [(Double.nan, 0, Int.max), (.infinity, -1, Int.max), (-5, Int.min, -1), (1e300, 1, Int.max)] as [(Double, Int, Int)] {
            limits.frameSeconds = seconds
            limits.frameBytesPerSecond = rate
            let d = limits.frameDeadline(bulk: bulk)
            #expect(d > .zero && d <= .seconds(86_400))
        }
        #expect(FrameLimits().frameDeadline(bulk: 64 << 20) == .seconds(60 + 1_024))
    }
}

/// The manager's decoder says whether a frame is on its way in (`InboundFlow`): a worker whose heartbeats wait behind
/// a slow frame counts as heard.
@Suite("InboundFlow")
struct InboundFlowTests {
    @Test func aFrameBegunIsBusyWhileItsBytesComeUntilWholeAndHandled() throws {
        let flow = InboundFlow()
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(GridFrameDecoder(gate: StrangerGate.trusted(), flow: flow)))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        #expect(!flow.busy(quiet: 3_600))
        try channel.writeInbound(ByteBuffer(string: #"{"type":"PING","id":1,"bytes":4}"# + "\nxy"))
        #expect(flow.busy(quiet: 3_600), "its bulk bytes are half in")
        #expect(!flow.busy(quiet: 0), "but no byte came within no time: a sender that stopped is not busy")
        try channel.writeInbound(ByteBuffer(string: "zw" + #"{"type":"PING","id":2}"# + "\n"))
        #expect(flow.busy(quiet: 0), "two frames whole, not yet handled, whenever their bytes came")
        #expect(!flow.busy(quiet: 3_600, waiting: false), "asked without the waiting frames (the worker): none is being read")
        #expect(flow.progress == 0)
        flow.handled()
        #expect(flow.busy(quiet: 0))
        flow.handled()
        #expect(!flow.busy(quiet: 3_600))
        #expect(flow.progress == 2)
        flow.handled()
        #expect(!flow.busy(quiet: 3_600), "never below none")
        try channel.writeInbound(ByteBuffer(string: #"{"type":"PING""#))
        #expect(flow.busy(quiet: 3_600))
        #expect(!flow.busy(quiet: .nan), "a bound that is no number counts no bytes as recent")
        // The connection closes: nothing is being read; what the decoder passed on at the end is handled as any frame.
        _ = try? channel.finish()
        var passed = 0
        while (try? channel.readInbound(as: InboundFrame.self)) ?? nil != nil { passed += 1 }
        for _ in 0..<passed { flow.handled() }
        #expect(!flow.busy(quiet: 3_600), "\(passed) passed on at the end")
    }

    /// A blank line in two reads: the parser skips it and passes nothing on; nothing is being read after it (the
    /// review: the flag stayed set until the next frame).
    @Test func aBlankLineInTwoReadsLeavesNothingBeingRead() throws {
        let flow = InboundFlow()
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(GridFrameDecoder(gate: StrangerGate.trusted(), flow: flow)))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeInbound(ByteBuffer(string: "   "))
        #expect(flow.busy(quiet: 3_600))
        try channel.writeInbound(ByteBuffer(string: "\n"))
        #expect(!flow.busy(quiet: 3_600))
    }

    /// The worker's decoder (no gate, no deadline) tells its flow too: a large `JOB_ASSIGN` on its way is no silence.
    @Test func aClientsDecoderTellsItsFlowOfAFrameOnItsWay() throws {
        let flow = InboundFlow()
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(GridFrameDecoder(flow: flow)))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeInbound(ByteBuffer(string: #"{"type":"PING","id":1,"bytes":3}"# + "\nab"))
        #expect(flow.busy(quiet: 3_600))
        channel.embeddedEventLoop.advanceTime(by: .seconds(86_400))
        #expect(channel.isActive, "a client keeps no deadline")
        try channel.writeInbound(ByteBuffer(string: "c"))
        flow.handled()
        #expect(!flow.busy(quiet: 3_600))
    }

    @Test func aRefusedFrameIsPassedOnAndCountsUntilHandled() throws {
        let flow = InboundFlow()
        var limits = FrameLimits()
        limits.maxLineBytes = 64
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(GridFrameDecoder(limits: limits, gate: StrangerGate.trusted(), flow: flow)))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeInbound(ByteBuffer(string: "not json\n"))
        #expect(flow.busy(quiet: 0))
        flow.handled()
        #expect(!flow.busy(quiet: 3_600))
    }
}
