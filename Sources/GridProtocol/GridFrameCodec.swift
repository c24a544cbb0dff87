import GridCore
public import NIOCore

/// NIO adapter of `FrameParser`: turns bytes into `InboundFrame`s.
public struct GridFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = InboundFrame

    private var parser: FrameParser
    /// On a listener: the connection's gate, which says whether the other side has authenticated yet (see
    /// `FrameParser.authenticated`). nil: this side opened the connection, and reads with the full limits.
    private let gate: StrangerGate?
    /// On the manager's grid port: told of each frame begun and each passed on (`InboundFlow`).
    private let flow: InboundFlow?

    public init(limits: FrameLimits = FrameLimits(), gate: StrangerGate? = nil, flow: InboundFlow? = nil) {
        self.init(limits: limits, gate: gate, flow: flow, isReading: FrameWatch.autoRead)
    }

    /// `isReading`: whether this side reads the channel now (tests stand in for the channel's `autoRead`).
    init(limits: FrameLimits, gate: StrangerGate?, flow: InboundFlow? = nil, isReading: @escaping @Sendable (any Channel) -> Bool) {
        self.parser = FrameParser(limits: limits)
        self.gate = gate
        self.flow = flow
        self.watch = FrameWatch(isReading: isReading)
        if let gate { parser.authenticated = gate.isOpen }
    }

    /// The deadline of the frame being read (`FrameLimits.frameDeadline`).
    private let watch: FrameWatch

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if let gate, !parser.authenticated { parser.authenticated = gate.isOpen }
        guard let frame = parser.next(&buffer) else {
            let partial = buffer.readableBytes > 0 || parser.pendingBulkBytes != nil
            // On a listener (the grid port, a peer port): the other side is the one that must keep sending.
            if partial, gate != nil { watch.arm(bulk: parser.pendingBulkBytes ?? 0, limits: parser.limits, channel: context.channel) }
            flow?.reading(more: partial)
            return .needMoreData
        }
        watch.completed()
        flow?.decoded()
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    public mutating func decoderRemoved(context: ChannelHandlerContext) {
        watch.completed()
        flow?.stoppedReading()
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        if let gate, !parser.authenticated { parser.authenticated = gate.isOpen }
        while let frame = parser.next(&buffer) {
            flow?.decoded()
            context.fireChannelRead(wrapInboundOut(frame))
        }
        if let last = parser.finish(&buffer) {
            flow?.decoded()
            context.fireChannelRead(wrapInboundOut(last))
        }
        flow?.stoppedReading()
        return .needMoreData
    }
}

/// The deadline of a frame begun and not yet whole: set at its first bytes (`FrameLimits.frameDeadline`), moved once its
/// line announces its bulk bytes, cancelled when it is whole; when it passes, the connection is closed. Used on its
/// channel's event loop only.
final class FrameWatch: @unchecked Sendable {
    // Unchecked: touched only on the channel's event loop (the decoder's calls and the timer it schedules there).
    private var timer: Scheduled<Void>?
    private var armedFor: Int?
    private let isReading: @Sendable (any Channel) -> Bool

    init(isReading: @escaping @Sendable (any Channel) -> Bool) { self.isReading = isReading }

    /// Whether the channel reads now: its `autoRead` (a peer connection turns it off while its requests are in flight
    /// or its replies unread). Read on the channel's event loop.
    static let autoRead: @Sendable (any Channel) -> Bool = { channel in (try? channel.syncOptions?.getOption(.autoRead)) ?? true }

    func arm(bulk: Int, limits: FrameLimits, channel: any Channel) {
        guard timer == nil || armedFor != bulk else { return }
        timer?.cancel()
        armedFor = bulk
        timer = channel.eventLoop.scheduleTask(in: limits.frameDeadline(bulk: bulk)) { [weak self] in
            guard let self else { return }
            self.timer = nil
            // This side stopped reading (requests in flight, its replies unread): the frame waits on it, not on the
            // sender. Another deadline, from now.
            if !self.isReading(channel) {
                self.armedFor = nil
                self.arm(bulk: bulk, limits: limits, channel: channel)
                return
            }
            channel.close(promise: nil)
        }
    }

    func completed() {
        timer?.cancel()
        timer = nil
        armedFor = nil
    }
}

/// NIO adapter that writes `GridFrame`s as bytes: the frame's line in a buffer of its own, then its bulk bytes as
/// they came (a chunk of a file is not copied behind its line; the two leave in one `writev`).
public final class GridFrameWriter: ChannelOutboundHandler {
    public typealias OutboundIn = GridFrame
    public typealias OutboundOut = ByteBuffer

    /// The longest line written (newline excluded): a longer one goes out as an `ERROR` for its request instead, since
    /// the reader would refuse it and close the connection, failing everything else in flight on it. Nil: no bound.
    let maxLineBytes: Int?

    public init(maxLineBytes: Int? = nil) {
        self.maxLineBytes = maxLineBytes
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var frame = unwrapOutboundIn(data)
        var head = context.channel.allocator.buffer(capacity: 256)
        do {
            try frame.writeHead(to: &head)
            if let most = maxLineBytes, head.readableBytes - 1 > most {
                let error = Msg.Error(
                    code: .lineTooLong, message: "the answer is \(head.readableBytes - 1) bytes, over the \(most) a line may hold: ask for less")
                frame = GridFrame(id: frame.id, .error(error))
                head.clear()
                try frame.writeHead(to: &head)
            }
        } catch {
            promise?.fail(error)
            return
        }
        guard let payload = frame.payload, payload.readableBytes > 0 else {
            context.write(wrapOutboundOut(head), promise: promise)
            return
        }
        context.write(wrapOutboundOut(head), promise: nil)
        context.write(wrapOutboundOut(payload), promise: promise)
    }
}
