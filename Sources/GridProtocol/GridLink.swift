public import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
    /// On a listener that keeps it (the manager's grid port): whether a frame is on its way in or waits to be handled
    /// (the shell says `handled()` after each frame it reads from `inbound`).
    public let flow: InboundFlow?
    private let closer: @Sendable () -> Void

    public init(
        inbound: Inbound, outbound: GridOutbox, remoteAddress: String?, remoteDescription: String, flow: InboundFlow? = nil,
        close: @escaping @Sendable () -> Void
    ) {
        self.inbound = inbound
        self.outbound = outbound
        self.remoteAddress = remoteAddress
        self.remoteDescription = remoteDescription
        self.flow = flow
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
    /// Runs `body` with this channel as a `GridLink`, then closes the channel. `flow`: the one its decoder tells.
    public func withGridLink<R>(
        isolation actor: isolated (any Actor)? = #isolation, flow: InboundFlow? = nil, _ body: (GridLink) async throws -> sending R
    ) async throws -> sending R {
        let channel = self.channel
        return try await executeThenClose(isolation: actor) { inbound, outbound in
            try await body(
                GridLink(
                    inbound: inbound, outbound: GridOutbox(outbound), remoteAddress: channel.remoteAddress?.ipAddress,
                    remoteDescription: channel.remoteAddress?.description ?? "?", flow: flow, close: { channel.close(promise: nil) }))
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
/// channel does. Like a port, it has one listener at a time, and a manager that stops and starts again listens on it
/// again, so its workers reconnect. Used by the in-process test grid; the binary never makes one.
public final class MemoryGridTransport: Sendable {
    private let listener = Mutex<AsyncStream<GridLink>.Continuation?>(nil)
    /// The connections not yet closed (for `resetAll`); closed ones are dropped at the next dial.
    private let pipes = Mutex<[Pipe]>([])

    public init() {}

    /// Starts listening: the connections dialled from now on, as the listening side sees them. The stream ends when its
    /// reader is cancelled or `shut()` is called; dials are refused from then on, until the next `listen()`.
    public func listen() -> AsyncStream<GridLink> {
        let (stream, continuation) = AsyncStream<GridLink>.makeStream()
        let previous = listener.withLock { current in
            defer { current = continuation }
            return current
        }
        previous?.finish()
        return stream
    }

    /// Opens a connection to the listening side, which sees it come from `address`. Throws when nothing listens (as a
    /// refused connection does).
    public func dial(from address: String = "127.0.0.1") throws -> GridLink {
        let pipe = Pipe()
        let server = GridLink(
            inbound: pipe.serverInbound, outbound: GridOutbox(pipe: pipe, toServer: false), remoteAddress: address,
            remoteDescription: "memory:\(address)", flow: pipe.serverFlow, close: { pipe.close() })
        let client = GridLink(
            inbound: pipe.clientInbound, outbound: GridOutbox(pipe: pipe, toServer: true), remoteAddress: nil,
            remoteDescription: "memory:manager", close: { pipe.close() })
        let accepted = listener.withLock { current -> Bool in
            guard let current, case .enqueued = current.yield(server) else { return false }
            return true
        }
        guard accepted else {
            pipe.close()
            throw Refused()
        }
        pipes.withLock { open in
            open.removeAll { $0.isClosed }
            open.append(pipe)
        }
        return client
    }

    /// Breaks every open connection as a host that died does: both sides' readers get a connection reset (an error, not
    /// an end), and writes are refused from then on. Listening goes on.
    public func resetAll() {
        for pipe in pipes.withLock({ open in defer { open.removeAll() }; return open }) { pipe.reset() }
    }

    /// A dial when nothing listens (as a refused TCP connection).
    public struct Refused: Error, CustomStringConvertible {
        public var description: String { "connection refused: nothing listens on the in-memory grid transport" }
    }

    /// Stops listening: later dials are refused (the links already made stay until they close).
    public func shut() {
        listener.withLock { current in
            current?.finish()
            current = nil
        }
    }

    /// Both directions of one connection.
    final class Pipe: Sendable {
        let serverInbound: GridLink.Inbound
        let clientInbound: GridLink.Inbound
        private let toServer: GridLink.Inbound.TestSource
        private let toClient: GridLink.Inbound.TestSource
        /// The frames passed to the listening side and not yet handled (as a TCP link's decoder tells it).
        let serverFlow = InboundFlow()
        /// Which directions are finished (`toServer`, `toClient`).
        private let finished = Mutex((toServer: false, toClient: false))

        init() {
            (serverInbound, toServer) = GridLink.Inbound.makeTestingStream()
            (clientInbound, toClient) = GridLink.Inbound.makeTestingStream()
        }

        func deliver(_ frame: GridFrame, toServer server: Bool) throws {
            try finished.withLock { f in
                if server ? f.toServer : f.toClient { throw ChannelError.ioOnClosedChannel }
                if server { serverFlow.decoded() }
                (server ? toServer : toClient).yield(.frame(frame))
            }
        }

        /// Ends one direction cleanly, unless it has already ended: a close that races a `reset()` (the other side
        /// closing as it reads the reset) must not turn the reset this side has yet to read into a clean end.
        func finish(toServer server: Bool) {
            let first = finished.withLock { f in
                defer { if server { f.toServer = true } else { f.toClient = true } }
                return !(server ? f.toServer : f.toClient)
            }
            if first { (server ? toServer : toClient).finish() }
        }

        func close() {
            finish(toServer: true)
            finish(toServer: false)
        }

        var isClosed: Bool { finished.withLock { $0.toServer && $0.toClient } }

        /// Both directions end with a reset (`ECONNRESET`), as a TCP connection's reads do when the other host dies.
        /// `meanwhile` runs between marking both directions ended and ending them: the window in which a close can
        /// race the reset (for the test of that race).
        func reset(meanwhile: () -> Void = {}) {
            let open = finished.withLock { f in
                defer { f = (true, true) }
                return f
            }
            meanwhile()
            if !open.toServer { toServer.finish(throwing: IOError(errnoCode: ECONNRESET, reason: "read(descriptor:pointer:size:)")) }
            if !open.toClient { toClient.finish(throwing: IOError(errnoCode: ECONNRESET, reason: "read(descriptor:pointer:size:)")) }
        }
    }
}
