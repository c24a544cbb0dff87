import GridCore
import GridProtocol
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle

/// The grid-protocol listener: accepts worker connections and runs one `WorkerSession.StateMachine` for each.
/// A thin shell: it decodes, feeds the machine, and carries out the action it returns.
struct GridServer: Service {
    /// Which term this manager leads, if any: sessions belong to the term they started in; a follower answers
    /// `HELLO` with `NOT_LEADER` (issue 16).
    let leadership: LeaderState
    let host: String
    let port: Int
    let limits: FrameLimits
    /// Connections that have not said `HELLO` yet: counted per address, closed at the deadline.
    let strangers: StrangerGuard
    /// TLS 1.3 on this port (nil: plain text, on loopback or by `--insecure-plaintext`).
    let tls: NIOSSLContext?
    /// On a TLS grid: signs each worker's peer-port key at `REGISTER`.
    let peerCertificates: PeerCertificates?
    let logger: Logger
    let onBound: @Sendable (Int) async -> Void
    /// Tests (issue 14): listen on this in-memory transport instead of a TCP port (which is then 0). Once the server
    /// stops, a worker dialling is refused, as it would be by a closed port.
    var memory: MemoryGridTransport?

    func run() async throws {
        if let memory {
            let connections = memory.listen()
            await onBound(0)
            logger.info("grid protocol listening in memory")
            await cancelWhenGracefulShutdown {
                await withDiscardingTaskGroup { group in
                    for await link in connections {
                        group.addTask { await self.serve(link, gate: .trusted()) }
                    }
                }
            }
            return
        }
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .bind(host: host, port: port) { [limits, strangers, tls] channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    let stranger = StrangerHandler(guard: strangers, address: channel.remoteAddress?.ipAddress ?? "?")
                    let flow = InboundFlow()
                    try channel.pipeline.syncOperations.addHandler(stranger)
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(GridFrameDecoder(limits: limits, gate: stranger.gate, flow: flow)))
                    try channel.pipeline.syncOperations.addHandler(GridFrameWriter())
                    let async = try NIOAsyncChannel<InboundFrame, GridFrame>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(isOutboundHalfClosureEnabled: true))
                    return Accepted(channel: async, gate: stranger.gate, flow: flow)
                }
            }
        await onBound(server.channel.localAddress?.port ?? port)
        logger.info("grid protocol listening", metadata: ["grid.port": "\(server.channel.localAddress?.port ?? port)"])
        // A graceful shutdown stops accepting by cancelling the loop: this service's normal end, not a failure (a
        // service that throws makes its ServiceGroup cancel the others at once, the leadership's hand-over among them).
        do {
            try await cancelWhenGracefulShutdown {
                try await withThrowingDiscardingTaskGroup { group in
                    try await server.executeThenClose { inbound in
                        for try await connection in inbound {
                            // A refused stranger has no gate: its handler already said why and closes it (within a
                            // second). Its channel is still run to that end: an async channel dropped while open
                            // traps (NIOAsyncWriter's precondition), and a stranger refused under TLS, where the
                            // refusal waits for a handshake, crashed the manager.
                            guard let gate = connection.gate else {
                                group.addTask { try? await connection.channel.executeThenClose { inbound, _ in for try await _ in inbound {} } }
                                continue
                            }
                            group.addTask {
                                try? await connection.channel.withGridLink(flow: connection.flow) { link in await self.serve(link, gate: gate) }
                            }
                        }
                    }
                }
            }
        } catch is CancellationError {
            logger.info("grid protocol stopped listening")
        }
    }

    /// An accepted connection with its gate (nil: refused by the per-address caps).
    struct Accepted: Sendable {
        var channel: NIOAsyncChannel<InboundFrame, GridFrame>
        var gate: StrangerGate?
        /// What its decoder says of the frames on their way in.
        var flow: InboundFlow
    }

    private func serve(_ link: GridLink, gate: StrangerGate) async {
        guard let term = leadership.term, let tracked = term.track(link) else {
            await refuseAsFollower(link, gate: gate)
            return
        }
        defer { term.untrack(tracked) }
        await serve(link, gate: gate, core: term.core)
    }

    /// A follower's answer to whatever comes first (a `HELLO`): `NOT_LEADER` naming the leader it knows, then close.
    private func refuseAsFollower(_ link: GridLink, gate: StrangerGate) async {
        do {
            try await link.executeThenClose { inbound, outbound in
                for try await item in inbound {
                    gate.heard()
                    let id: Int
                    switch item {
                    case .frame(let frame): id = frame.id
                    case .invalid(_, let i, _): id = i ?? 0
                    }
                    let leader = leadership.leader?.workerAddress ?? ""
                    try await outbound.write(GridFrame(id: id, .notLeader(Msg.NotLeader(leader: leader))))
                    return
                }
            }
        } catch {
            logger.debug("follower connection ended", metadata: ["grid.error": "\(error)"])
        }
    }

    private func serve(_ link: GridLink, gate: StrangerGate, core: ManagerCore) async {
        let connection = await core.newConnection()
        let remote = link.remoteDescription
        var machine = WorkerSession.StateMachine(heartbeatSeconds: core.config.heartbeatSeconds, managerKey: core.authority.publicKey)
        // What the manager sends this worker on its own, written by a task of this connection's (`WorkerSendQueue`).
        let queue = WorkerSendQueue(limitBytes: core.config.workerSendQueueBytes, stallSeconds: core.config.workerSendStallSeconds)
        do {
            try await link.executeThenClose { inbound, outbound in
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask { await queue.drain(into: outbound) { await core.bundle(of: $0) } }
                    // The writer ends with the connection (the group waits for it): stopped whether it waits for the
                    // next frame or on a write to a worker that no longer reads.
                    defer {
                        queue.close()
                        group.cancelAll()
                    }
                    loop: for try await item in inbound {
                        // Handled, however this turn ends (`InboundFlow`: a frame waiting here counts as heard).
                        defer { link.flow?.handled() }
                        var payload: ByteBuffer?
                        var action: WorkerSession.StateMachine.Action
                        switch item {
                        case .frame(let frame):
                            payload = frame.payload
                            action = machine.received(frame.message, id: frame.id)
                        case .invalid(let error, let id, let fatal):
                            // Debug: each is answered (or closes the connection); a peer that sends many should not fill the log.
                            logger.debug("refused input", metadata: ["grid.peer": "\(remote)", "grid.error": "\(error)"])
                            action = machine.invalid(error, id: id, fatal: fatal)
                        }
                        // Carry out actions until one needs no follow-up.
                        while true {
                            switch action {
                            case .none:
                                continue loop
                            case .send(let message, let id):
                                try await outbound.write(GridFrame(id: id, message))
                                continue loop
                            case .authenticate(let hello, let id):
                                gate.heard()
                                switch await core.authenticate(hello) {
                                case .success(let who):
                                    // Full limits from here on; HELLO_OK goes out after the gate is open. It still
                                    // owes its REGISTER: an authenticated connection that never registers is closed.
                                    gate.authenticated(awaiting: "REGISTER")
                                    action = machine.authenticated(who, id: id)
                                case .failure(let error): action = machine.authenticationFailed(error, id: id)
                                }
                            case .register(let who, var reg, let id):
                                // It came in time: registering it (store writes) has the grace of a check.
                                gate.takingStep()
                                // A peer that does not say where it is reachable is reachable where it connected from.
                                if reg.host == nil || reg.host?.isEmpty == true { reg.host = link.remoteAddress }
                                guard
                                    var answer = await core.register(
                                        who, reg, connection: connection, queue: queue, flow: link.flow, close: { link.close() })
                                else {
                                    try? await outbound.write(
                                        GridFrame(id: id, .error(Msg.Error(GridError(.unauthorized, "this worker's join token was revoked by its owner")))))
                                    break loop
                                }
                                gate.open()
                                answer.credential = await core.credential(for: who.workerId)
                                if let issuer = peerCertificates, let key = reg.tlsKey {
                                    do {
                                        answer.peerCertificate = try issuer.issue(workerId: who.workerId, host: reg.host ?? "127.0.0.1", keyPEM: key)
                                        answer.peerAuthority = issuer.caPEM
                                    } catch {
                                        logger.warning("refused a peer key", metadata: ["grid.worker.id": "\(who.workerId)", "grid.error": "\(error)"])
                                    }
                                }
                                try await outbound.write(GridFrame(id: id, .registered(answer)))
                                await core.announcePeers()
                                continue loop
                            case .deliver(let who, let message, let id):
                                if let reply = await core.deliver(who, message, payload: payload, connection: connection) {
                                    try await outbound.write(GridFrame(id: id, reply))
                                }
                                continue loop
                            case .refuse(let error, let id):
                                logger.warning("refused a worker's message", metadata: ["grid.peer": "\(remote)", "grid.error": "\(error)"])
                                try await outbound.write(GridFrame(id: id, .error(Msg.Error(error))))
                                continue loop
                            case .closeWithError(let error, let id):
                                try? await outbound.write(GridFrame(id: id, .error(Msg.Error(error))))
                                break loop
                            case .close:
                                break loop
                            }
                        }
                    }
                    if case .closed = machine.state {} else {
                        // Peer closed its side: nothing more to say.
                    }
                }
            }
        } catch {
            logger.debug("connection ended", metadata: ["grid.peer": "\(remote)", "grid.error": "\(error)"])
        }
        if let who = machine.closed() {
            await core.disconnected(who, connection: connection)
        }
    }
}

extension GridServer: CustomStringConvertible {
    /// What ServiceLifecycle logs for this service: its name and port, not its fields.
    var description: String { "GridServer(port: \(port))" }
}
