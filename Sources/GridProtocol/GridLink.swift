public import NIOCore
import Synchronization

/// One connection of the grid protocol, whatever carries it (issue 14): a TCP (or TLS) channel, or one end of an
/// in-memory pair (`MemoryGridTransport`). The shells (the manager's `GridServer`, the `WorkerAgent`) read frames from
/// `inbound`, write them to `outbound` and close it; they do not know which transport it is.
public struct GridLink: Sendable {
    public typealias Inbound = NIOAsyncChannelInboundStream<InboundFrame>

    public let inbound: Inbound
    public let outbound: GridOutbox
    /// The other side's IP address, if it has one (a worker that does not say where it is reachable is reachable there).
    public let remoteAddress: String?
    /// For logs: the other side as its transport names it.
    public let remoteDescription: String
    private let closer: @Sendable () -> Void

    public init(
        inbound: Inbound, outbound: GridOutbox, remoteAddress: String?, remoteDescription: String, close: @escaping @Sendable () -> Void
    ) {
        self.inbound = inbound
        self.outbound = outbound
        self.remoteAddress = remoteAddress
        self.remoteDescription = remoteDescription
        self.closer = close
    }

    /// Closes both directions: the other side's `inbound` ends, and so does this side's.
    public func close() { closer() }

    /// Runs `body` with the link, then closes it, however `body` ended.
    public func executeThenClose<R>(
        isolation actor: isolated (any Actor)? = #isolation, _ body: (Inbound, GridOutbox) async throws -> sending R
    ) async throws -> sending R {
        defer { close() }
        return try await body(inbound, outbound)
    }
}

extension NIOAsyncChannel where Inbound == InboundFrame, Outbound == GridFrame {
    /// Runs `body` with this channel as a `GridLink`, then closes the channel.
    public func withGridLink<R>(
        isolation actor: isolated (any Actor)? = #isolation, _ body: (GridLink) async throws -> sending R
    ) async throws -> sending R {
        let channel = self.channel
        return try await executeThenClose(isolation: actor) { inbound, outbound in
            try await body(
                GridLink(
                    inbound: inbound, outbound: GridOutbox(outbound), remoteAddress: channel.remoteAddress?.ipAddress,
                    remoteDescription: channel.remoteAddress?.description ?? "?", close: { channel.close(promise: nil) }))
        }
    }
}

/// Where a grid-protocol connection writes its frames.
public struct GridOutbox: Sendable {
    private enum Backing: Sendable {
        case channel(NIOAsyncChannelOutboundWriter<GridFrame>)
        case memory(MemoryGridTransport.Pipe, toServer: Bool)
    }

    private let backing: Backing

    public init(_ writer: NIOAsyncChannelOutboundWriter<GridFrame>) { backing = .channel(writer) }

    init(pipe: MemoryGridTransport.Pipe, toServer: Bool) { backing = .memory(pipe, toServer: toServer) }

    /// Sends one frame (suspends while a channel is not writable); throws once the connection is closed.
    public func write(_ frame: GridFrame) async throws {
        switch backing {
        case .channel(let writer): try await writer.write(frame)
        case .memory(let pipe, let toServer): try pipe.deliver(frame, toServer: toServer)
        }
    }

    /// Says nothing more will be sent: the other side's `inbound` ends (a half close; this side may still read).
    public func finish() {
        switch backing {
        case .channel(let writer): writer.finish()
        case .memory(let pipe, let toServer): pipe.finish(toServer: toServer)
        }
    }
}

/// An in-memory transport for the grid protocol (issue 14, after grpc-swift's in-process transport): a manager listens
/// on it and workers dial it, in one process, with no socket. Frames go across as values (their encoding is tested
/// on its own: `FrameParser`, the codec tests); writes keep their order, and a closed pipe refuses writes as a closed
/// channel does. Used by the in-process test grid; the binary never makes one.
public final class MemoryGridTransport: Sendable {
    private let accepted: AsyncStream<GridLink>
    private let acceptor: AsyncStream<GridLink>.Continuation
    private let closed = Mutex(false)

    public init() {
        (accepted, acceptor) = AsyncStream<GridLink>.makeStream()
    }

    /// The connections dialled, as the listening side sees them; ends once the transport is shut.
    public var connections: AsyncStream<GridLink> { accepted }

    /// Opens a connection to the listening side, which sees it come from `address`. Throws once the transport is shut
    /// (as a refused connection does).
    public func dial(from address: String = "127.0.0.1") throws -> GridLink {
        let pipe = Pipe()
        let server = GridLink(
            inbound: pipe.serverInbound, outbound: GridOutbox(pipe: pipe, toServer: false), remoteAddress: address,
            remoteDescription: "memory:\(address)", close: { pipe.close() })
        let client = GridLink(
            inbound: pipe.clientInbound, outbound: GridOutbox(pipe: pipe, toServer: true), remoteAddress: nil,
            remoteDescription: "memory:manager", close: { pipe.close() })
        let refused = closed.withLock { shut in
            if shut { return true }
            if case .terminated = acceptor.yield(server) { return true }
            return false
        }
        if refused {
            pipe.close()
            throw Refused()
        }
        return client
    }

    /// A dial after the listening side stopped (as a refused TCP connection).
    public struct Refused: Error, CustomStringConvertible {
        public var description: String { "connection refused: the in-memory grid transport is shut" }
    }

    /// Stops listening: later dials are refused (the links already made stay until they close).
    public func shut() {
        closed.withLock { $0 = true }
        acceptor.finish()
    }

    /// Both directions of one connection.
    final class Pipe: Sendable {
        let serverInbound: GridLink.Inbound
        let clientInbound: GridLink.Inbound
        private let toServer: GridLink.Inbound.TestSource
        private let toClient: GridLink.Inbound.TestSource
        /// Which directions are finished (`toServer`, `toClient`).
        private let finished = Mutex((toServer: false, toClient: false))

        init() {
            (serverInbound, toServer) = GridLink.Inbound.makeTestingStream()
            (clientInbound, toClient) = GridLink.Inbound.makeTestingStream()
        }

        func deliver(_ frame: GridFrame, toServer server: Bool) throws {
            try finished.withLock { f in
                if server ? f.toServer : f.toClient { throw ChannelError.ioOnClosedChannel }
                (server ? toServer : toClient).yield(.frame(frame))
            }
        }

        func finish(toServer server: Bool) {
            finished.withLock { f in
                if server { f.toServer = true } else { f.toClient = true }
            }
            (server ? toServer : toClient).finish()
        }

        func close() {
            finish(toServer: true)
            finish(toServer: false)
        }
    }
}
