public import GridCore
public import GridProtocol
public import GridSandbox
public import Logging
public import ServiceLifecycle
public import NIOCore

/// Builds a worker from its parts, as `Manager.run` builds a manager (issue 14): the agent (the link to the manager and
/// the jobs), and, when it offers them, its peer services and the server of its peer port, wired to each other. The
/// `campusgrid worker` command and the in-process test grid both build workers here, so the two cannot drift.
public enum Worker {
    /// A worker's peer services and its bound peer port (`PeerServer.bind`); `config.port` must already be that port.
    public struct Peers: Sendable {
        public var service: PeerService
        public var listener: PeerServer.Listener
        public init(service: PeerService, listener: PeerServer.Listener) {
            self.service = service
            self.listener = listener
        }

        /// The port the listener is bound to.
        public var port: Int? { listener.localAddress?.port }
    }

    /// The agent and every service to run (in one `ServiceGroup`): the agent first, then the peer services and their
    /// port. `transport`: tests reach the manager in memory; nil: `config.managerHost` over TCP (TLS when pinned).
    public static func build(
        config: WorkerConfig, runner: any JobRunner, resources: Resources, gpuNames: [String], logger: Logger, peers: Peers? = nil,
        environments: EnvBuilder? = nil, transport: MemoryGridTransport? = nil, onRegistered: @escaping @Sendable (String) -> Void = { _ in }
    ) async -> (agent: WorkerAgent, services: [any Service]) {
        let agent = WorkerAgent(
            config: config, runner: runner, resources: resources, gpuNames: gpuNames, logger: logger, peers: peers?.service,
            environments: environments, transport: transport, onRegistered: onRegistered)
        guard let peers else { return (agent, [agent]) }
        await peers.service.connect(manager: { try await agent.ask($0) }, onLoadChange: { agent.loadChanged() })
        return (agent, [agent, peers.service, PeerServer(listener: peers.listener, service: peers.service, logger: logger)])
    }
}
