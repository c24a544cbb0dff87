import GridCore
import GridProtocol
import Testing

/// The peer port's opening of a connection, event by event: a person's HELLO, another peer's HELLO and proof, what
/// waits while a check runs, and everything a stranger may try before it is known.
@Suite struct PeerGreetingTests {
    typealias Greeting = PeerGreeting<String>

    func frame(_ id: Int, _ m: GridMessage) -> InboundFrame { .frame(GridFrame(id: id, m)) }

    func isReply(_ a: Greeting.Action, _ check: (GridMessage) -> Bool) -> Bool {
        if case .reply(let f) = a { return check(f.message) }
        return false
    }

    func isNone(_ a: Greeting.Action) -> Bool {
        if case .none = a { return true }
        return false
    }

    func isRefusal(_ a: Greeting.Action, closes: Bool, _ code: GridError.Code) -> Bool {
        switch a {
        case .reply(let f) where !closes: if case .error(let e) = f.message { return e.code == code }
        case .replyAndClose(let f) where closes: if case .error(let e) = f.message { return e.code == code }
        default: break
        }
        return false
    }

    /// A person's opening up to the check of its `SESSION`: `HELLO {nonce}`, our `HELLO_OK`, its `SESSION` (id 2).
    func sessionBeingChecked(_ g: inout Greeting) {
        guard case .greetPeer(_, 1) = g.received(frame(1, .hello(Msg.Hello(token: "", nonce: "theirs")))) else {
            Issue.record("no greeting")
            return
        }
        _ = g.greeted(.success(Msg.HelloOk(version: ProtocolVersion.current, workerId: "me", owner: "", heartbeatSeconds: 0, nonce: "ours")), id: 1)
        let session = Msg.Session(certificate: PeerTrust.UserCertificate(user: "alice", key: "k", expires: 0, signature: "s"), proof: "p")
        guard case .checkSession(_, "ours", 2) = g.received(frame(2, .session(session))) else {
            Issue.record("no session check")
            return
        }
    }

    @Test func aPersonsSessionIsCheckedThenTheConnectionOpensAndRequestsAreDelivered() {
        var g = Greeting()
        sessionBeingChecked(&g)
        #expect(g.isChecking)
        let (action, held) = g.checked(.success(("alice", .ok(Msg.Ok()))), id: 2)
        guard case .open(let reply) = action else { Issue.record("not opened: \(action)"); return }
        #expect(reply.id == 2 && held.isEmpty)
        guard case .deliver(let f, let caller) = g.received(frame(3, .ping)) else { Issue.record("not delivered"); return }
        #expect(f.id == 3 && caller == "alice")
    }

    /// Clients older than `SESSION` said `HELLO {token}` with the person's API token: refused and closed, the token
    /// never checked (no action asks anyone), whatever comes after it unanswered.
    @Test(arguments: ["cga_a-real-looking-api-token", "cgw_a-join-token", "x"])
    func aHelloWithATokenIsRefusedUncheckedAndClosed(token: String) {
        var g = Greeting()
        let action = g.received(frame(1, .hello(Msg.Hello(token: token))))
        #expect(isRefusal(action, closes: true, .unauthorized))
        if case .replyAndClose(let f) = action, case .error(let e) = f.message {
            #expect(e.message.contains("a secret never goes to a peer") && !e.message.contains(token))
        }
        #expect(g.isClosing)
        if case .none = g.received(frame(2, .getMem(Msg.MemKey(key: "k")))) {} else { Issue.record("a refused connection answered") }
        // Nor does a HELLO with neither a token nor a nonce get anywhere.
        var h = Greeting()
        #expect(isRefusal(h.received(frame(1, .hello(Msg.Hello(token: "")))), closes: true, .badRequest))
    }

    @Test func framesThatComeWhileTheSessionIsCheckedWaitAndAreHandedBackInOrder() {
        var g = Greeting()
        sessionBeingChecked(&g)
        for id in 3...6 { if case .none = g.received(frame(id, .ping)) {} else { Issue.record("frame \(id) was not held") } }
        let (_, held) = g.checked(.success(("alice", .ok(Msg.Ok()))), id: 2)
        let ids = held.compactMap { item -> Int? in if case .frame(let f) = item { f.id } else { nil } }
        #expect(ids == [3, 4, 5, 6])
    }

    @Test func aRefusedSessionClosesTheConnectionAndWhatWaitedIsDropped() {
        var g = Greeting()
        sessionBeingChecked(&g)
        _ = g.received(frame(3, .getMem(Msg.MemKey(key: "k"))))
        let (action, held) = g.checked(.failure(GridError(.unauthorized, "no")), id: 2)
        #expect(isRefusal(action, closes: true, .unauthorized))
        #expect(held.isEmpty && g.isClosing)
        if case .none = g.received(frame(4, .ping)) {} else { Issue.record("a closing connection answered") }
    }

    @Test func aFloodWhileTheCheckRunsIsBoundedAndClosesTheConnection() {
        var g = Greeting()
        sessionBeingChecked(&g)
        for id in 0..<Greeting.maxHeld { _ = g.received(frame(100 + id, .ping)) }
        #expect(isRefusal(g.received(frame(9999, .ping)), closes: true, .badRequest))
        #expect(g.isClosing)
        // The check's answer, when it comes, changes nothing.
        let (late, held) = g.checked(.success(("alice", .ok(Msg.Ok()))), id: 2)
        if case .none = late {} else { Issue.record("a closed connection was opened") }
        #expect(held.isEmpty)
    }

    @Test func beforeHelloOnlyPingIsAnsweredAndAnythingElseClosesTheConnection() {
        var g = Greeting()
        #expect(isReply(g.received(frame(1, .ping))) { if case .pong = $0 { true } else { false } })
        #expect(isRefusal(g.received(frame(2, .getMem(Msg.MemKey(key: "k")))), closes: true, .notAuthenticated))
        #expect(g.isClosing)
    }

    @Test(arguments: [0, -1, Int.max, Int.min])
    func aHelloOfAnotherVersionIsRefusedAndClosed(_ version: Int) {
        var g = Greeting()
        guard !ProtocolVersion.supported.contains(version) else { return }
        #expect(isRefusal(g.received(frame(1, .hello(Msg.Hello(version: version, token: "", nonce: "n")))), closes: true, .versionMismatch))
    }

    @Test func anotherPeerProvesItselfAfterOurCredentialAndOnlyWithPeerAuth() {
        var g = Greeting()
        guard case .greetPeer(let nonce, let id) = g.received(frame(1, .hello(Msg.Hello(token: "", nonce: "theirs")))) else {
            Issue.record("no peer greeting")
            return
        }
        #expect(nonce == "theirs" && id == 1)
        let ok = Msg.HelloOk(version: ProtocolVersion.current, workerId: "me", owner: "", heartbeatSeconds: 0, nonce: "ours")
        let (answer, _) = g.greeted(.success(ok), id: 1)
        #expect(isReply(answer) { if case .helloOk(let o) = $0 { o.nonce == "ours" } else { false } })
        // Its proof must answer our nonce.
        let proof = Msg.PeerAuth(
            credential: PeerTrust.Credential(workerId: "w2", host: "127.0.0.1", port: 1, key: "k", expires: 0, signature: "s"), proof: "sig")
        guard case .checkProof(_, let expected, 2) = g.received(frame(2, .peerAuth(proof))) else { Issue.record("no proof check"); return }
        #expect(expected == "ours")
        let (opened, _) = g.checked(.success(("peer:w2", .ok(Msg.Ok()))), id: 2)
        if case .open = opened {} else { Issue.record("not opened: \(opened)") }
    }

    @Test func aPersonProvesItselfWithItsCertificateAfterOurCredentialInPlaceOfAToken() {
        var g = Greeting()
        guard case .greetPeer(_, 1) = g.received(frame(1, .hello(Msg.Hello(token: "", nonce: "theirs")))) else {
            Issue.record("no greeting")
            return
        }
        _ = g.greeted(.success(Msg.HelloOk(version: ProtocolVersion.current, workerId: "me", owner: "", heartbeatSeconds: 0, nonce: "ours")), id: 1)
        let session = Msg.Session(certificate: PeerTrust.UserCertificate(user: "alice", key: "k", expires: 0, signature: "s"), proof: "p")
        guard case .checkSession(let shown, let expected, 2) = g.received(frame(2, .session(session))) else {
            Issue.record("no session check")
            return
        }
        #expect(shown == session && expected == "ours")
        // Frames sent meanwhile wait for the check, and are refused with it.
        #expect(isNone(g.received(frame(3, .getMem(Msg.MemKey(key: "k"))))))
        let (refused, held) = g.checked(.failure(GridError(.unauthorized, "forged")), id: 2)
        #expect(isRefusal(refused, closes: true, .unauthorized) && held.isEmpty)
    }

    @Test func aPeerThatSendsAnythingButItsProofIsClosed() {
        var g = Greeting()
        _ = g.received(frame(1, .hello(Msg.Hello(token: "", nonce: "n"))))
        _ = g.greeted(.success(Msg.HelloOk(version: ProtocolVersion.current, workerId: "me", owner: "", heartbeatSeconds: 0, nonce: "ours")), id: 1)
        #expect(isRefusal(g.received(frame(2, .getMem(Msg.MemKey(key: "k")))), closes: true, .notAuthenticated))
    }

    @Test func aSecondHelloIsRefusedButTheConnectionGoesOn() {
        var g = Greeting()
        sessionBeingChecked(&g)
        _ = g.checked(.success(("alice", .ok(Msg.Ok()))), id: 2)
        #expect(isRefusal(g.received(frame(3, .hello(Msg.Hello(token: "", nonce: "again")))), closes: false, .badRequest))
        if case .deliver(_, "alice") = g.received(frame(4, .ping)) {} else { Issue.record("the connection did not go on as alice") }
    }

    /// Once open, bad input is refused and closes only when the stream cannot be trusted; before, any closes (a
    /// stranger's lines of garbage were each answered and logged until its deadline).
    @Test func badInputIsRefusedAndClosesOnlyWhenTheStreamCannotBeTrustedOrBeforeTheConnectionIsOpen() {
        var stranger = Greeting()
        #expect(isRefusal(stranger.received(.invalid(GridError(.badRequest, "bad json"), id: 7, fatal: false)), closes: true, .badRequest))
        #expect(stranger.isClosing)
        var g = Greeting()
        sessionBeingChecked(&g)
        _ = g.checked(.success(("alice", .ok(Msg.Ok()))), id: 2)
        #expect(isRefusal(g.received(.invalid(GridError(.badRequest, "bad json"), id: 7, fatal: false)), closes: false, .badRequest))
        #expect(!g.isClosing)
        #expect(isRefusal(g.received(.invalid(GridError(.badRequest, "bad bytes"), id: nil, fatal: true)), closes: true, .badRequest))
    }

    @Test func aCheckResultWithNoCheckUnderWayChangesNothing() {
        var g = Greeting()
        let (a, held) = g.checked(.success(("mallory", .ok(Msg.Ok()))), id: 1)
        if case .none = a {} else { Issue.record("opened without a HELLO: \(a)") }
        #expect(held.isEmpty)
        if case .deliver = g.received(frame(2, .getMem(Msg.MemKey(key: "k")))) { Issue.record("delivered without a HELLO") }
    }
}
