import NIOCore

/// NIO adapter of `FrameParser`: turns bytes into `InboundFrame`s.
public struct GridFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = InboundFrame

    private var parser: FrameParser

    public init(limits: FrameLimits = FrameLimits()) {
        self.parser = FrameParser(limits: limits)
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = parser.next(&buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while let frame = parser.next(&buffer) {
            context.fireChannelRead(wrapInboundOut(frame))
        }
        if let last = parser.finish(&buffer) {
            context.fireChannelRead(wrapInboundOut(last))
        }
        return .needMoreData
    }
}

/// NIO adapter that writes `GridFrame`s as bytes.
public struct GridFrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = GridFrame

    public init() {}

    public func encode(data: GridFrame, out: inout ByteBuffer) throws {
        try data.write(to: &out)
    }
}
