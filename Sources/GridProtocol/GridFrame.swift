public import GridCore
public import NIOCore

/// One message on the wire with its request id and, for bulk messages, the raw bytes that follow the line.
public struct GridFrame: Sendable {
    public var id: Int
    public var message: GridMessage
    public var payload: ByteBuffer?

    public init(id: Int = 0, _ message: GridMessage, payload: ByteBuffer? = nil) {
        self.id = id
        self.message = message
        self.payload = payload
    }
}

/// What the decoder yields: a frame, or a reason the input was refused.
public enum InboundFrame: Sendable {
    case frame(GridFrame)
    /// The input was refused. `fatal` means the stream can no longer be trusted and the connection must close after
    /// the `ERROR` is sent; otherwise the connection carries on with the next line.
    case invalid(GridError, id: Int?, fatal: Bool)
}

/// Size limits, enforced before anything is allocated for the data.
public struct FrameLimits: Sendable, Hashable {
    /// The longest JSON line accepted, newline excluded.
    public var maxLineBytes: Int
    /// The largest bulk payload a message may announce.
    public var maxBulkBytes: Int
    /// The longest line accepted before the connection authenticated (`StrangerLimits.maxLineBytes`); no bulk
    /// payload at all is accepted before then.
    public var maxStrangerLineBytes: Int
    /// A frame whose first bytes arrived must arrive whole within this many seconds, and one more for every
    /// `frameBytesPerSecond` of the bulk bytes it announced (64 MiB: about 18 minutes); else the connection is closed.
    /// A side that announced a large payload and stopped sending held it in the other's memory for good.
    public var frameSeconds: Double = 60
    public var frameBytesPerSecond: Int = 64 << 10

    public init(maxLineBytes: Int = 1 << 20, maxBulkBytes: Int = 64 << 20, maxStrangerLineBytes: Int = 16 << 10) {
        self.maxLineBytes = maxLineBytes
        self.maxBulkBytes = maxBulkBytes
        self.maxStrangerLineBytes = maxStrangerLineBytes
    }

    /// How long a frame announcing `bulk` bytes may take to arrive whole, from its first byte: never a trap, at most a
    /// day.
    public func frameDeadline(bulk: Int) -> TimeAmount {
        .milliseconds(Int64(frameDeadlineSeconds(bulk: bulk) * 1000))
    }

    /// `frameDeadline(bulk:)` in seconds.
    public func frameDeadlineSeconds(bulk: Int) -> Double {
        let base = frameSeconds.isFinite ? min(max(frameSeconds, 0.1), 86_400) : 60
        return min(base + Double(max(0, bulk)) / Double(max(1, frameBytesPerSecond)), 86_400)
    }
}
