import GridCore
import GridProtocol
import Testing

/// The worker's handshake with a manager, frame by frame: the ordinary path, early frames, a follower, refusals, and a
/// manager that misbehaves.
@Suite struct ManagerHandshakeTests {
    static let ok = Msg.HelloOk(version: 1, workerId: "w-1", owner: "alice", heartbeatSeconds: 1)
    static let registered = Msg.Registered(cancel: [], logOffsets: [:])

    static func isRegister(_ a: ManagerHandshake.Action) -> Bool { if case .register = a { return true } else { return false } }
    static func reconnects(_ a: ManagerHandshake.Action) -> Bool { if case .reconnect = a { return true } else { return false } }

    @Test func helloOkThenRegisteredCompletesTheHandshakeWithTheFramesThatCameEarly() {
        var h = ManagerHandshake()
        #expect(Self.isRegister(h.received(GridFrame(.helloOk(Self.ok)))))
        #expect(h.step == .awaitingRegistered)
        let peers = GridFrame(.peers(Msg.Peers(peers: [])))
        let ping = GridFrame(id: 7, .ping)
        guard case .readOn = h.received(peers), case .readOn = h.received(ping) else {
            Issue.record("an early frame was not kept")
            return
        }
        guard case .registered(_, let early) = h.received(GridFrame(.registered(Self.registered))) else {
            Issue.record("REGISTERED did not end the handshake")
            return
        }
        #expect(early.map(\.message.type) == ["PEERS", "PING"] && early.last?.id == 7, "kept in order")
        #expect(h.step == .registered)
    }

    @Test func aFollowerNamesTheLeaderToGoTo() {
        var h = ManagerHandshake()
        guard case .followLeader(let leader) = h.received(GridFrame(.notLeader(Msg.NotLeader(leader: "10.0.0.2:9999")))) else {
            Issue.record("NOT_LEADER was not followed")
            return
        }
        #expect(leader == "10.0.0.2:9999")
        #expect(h.step == .failed)
    }

    @Test func aRefusedTokenOrAnotherVersionStopsButOtherErrorsRetry() {
        for code in [GridError.Code.unauthorized, .forbidden, .versionMismatch, .notAuthenticated] {
            var h = ManagerHandshake()
            guard case .fatal(let message) = h.received(GridFrame(.error(Msg.Error(GridError(code, "no \(code)"))))) else {
                Issue.record("\(code) was not fatal")
                continue
            }
            #expect(message == "no \(code)")
        }
        var h = ManagerHandshake()
        _ = h.received(GridFrame(.helloOk(Self.ok)))
        #expect(Self.reconnects(h.received(GridFrame(.error(Msg.Error(GridError(.internal, "the store is busy")))))))
    }

    @Test func framesOutOfTurnAndFloodsBeforeRegisteredDropTheConnection() {
        var first = ManagerHandshake()
        #expect(Self.reconnects(first.received(GridFrame(.registered(Self.registered)))), "REGISTERED before HELLO_OK")
        var flood = ManagerHandshake()
        _ = flood.received(GridFrame(.helloOk(Self.ok)))
        var actions: [ManagerHandshake.Action] = []
        for _ in 0...ManagerHandshake.maxEarly { actions.append(flood.received(GridFrame(.peers(Msg.Peers(peers: []))))) }
        #expect(actions.prefix(ManagerHandshake.maxEarly).allSatisfy { if case .readOn = $0 { true } else { false } })
        #expect(Self.reconnects(actions.last!), "the 65th early frame is one too many")
        #expect(Self.reconnects(flood.received(GridFrame(.registered(Self.registered)))), "and nothing after it counts")
    }

    @Test func aCloseOrABadFrameDuringTheHandshakeRetries() {
        var h = ManagerHandshake()
        #expect(Self.reconnects(h.closed()))
        var g = ManagerHandshake()
        _ = g.received(GridFrame(.helloOk(Self.ok)))
        #expect(Self.reconnects(g.invalid(GridError(.malformedMessage, "not JSON"))))
        #expect(g.step == .failed)
    }
}
