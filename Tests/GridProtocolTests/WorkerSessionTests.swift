import GridCore
import GridProtocol
import Testing

typealias Machine = WorkerSession.StateMachine

private let ada = WorkerSession.Identity(workerId: "w-1", name: "lab-pc", ownerId: 1, ownerName: "ada")
private let hello = Msg.Hello(token: "secret", name: "lab-pc")
private let register = Msg.Register(resources: Resources(cpus: 4, ramGb: 8), tier: .restricted, slots: 2)
private let load = GridMessage.loadUpdate(Msg.LoadUpdate(load: 0.1, running: []))

/// A machine driven to `state` through the ordinary events.
private func machine(in state: Machine.State) -> Machine {
    var m = Machine(heartbeatSeconds: 5)
    switch state {
    case .awaitingHello:
        break
    case .authenticating:
        _ = m.received(.hello(hello), id: 1)
    case .awaitingRegister:
        _ = m.received(.hello(hello), id: 1)
        _ = m.authenticated(ada, id: 1)
    case .active:
        _ = m.received(.hello(hello), id: 1)
        _ = m.authenticated(ada, id: 1)
        _ = m.received(.register(register), id: 2)
    case .closed:
        _ = m.closed()
    }
    #expect(m.state == state)
    return m
}

/// The error code of a `closeWithError` action, or nil for any other action.
private func closeCode(_ action: Machine.Action) -> GridError.Code? {
    if case .closeWithError(let error, _) = action { return error.code }
    return nil
}

/// The error code of a `send(.error)` action, or nil for any other action.
private func sentErrorCode(_ action: Machine.Action) -> GridError.Code? {
    if case .send(.error(let e), _) = action { return e.code }
    return nil
}

@Suite("WorkerSession.StateMachine")
struct WorkerSessionTests {
    // MARK: HELLO and authentication

    @Test func startsAwaitingHello() {
        #expect(Machine(heartbeatSeconds: 5).state == .awaitingHello)
    }

    @Test func helloAsksTheShellToAuthenticate() {
        var m = Machine(heartbeatSeconds: 5)
        #expect(m.received(.hello(hello), id: 3) == .authenticate(hello, id: 3))
        #expect(m.state == .authenticating)
    }

    @Test func helloWithAnUnsupportedVersionClosesWithVersionMismatch() {
        var m = Machine(heartbeatSeconds: 5)
        let action = m.received(.hello(Msg.Hello(version: ProtocolVersion.supported.upperBound + 1, token: "secret")), id: 3)
        #expect(closeCode(action) == .versionMismatch)
        guard case .closeWithError(let error, let id) = action else { return }
        #expect(id == 3)
        #expect(error.message.contains("\(ProtocolVersion.supported.upperBound + 1)"))
        #expect(m.state == .closed)
    }

    @Test func helloWithVersionZeroIsRefused() {
        var m = Machine(heartbeatSeconds: 5)
        #expect(closeCode(m.received(.hello(Msg.Hello(version: 0, token: "secret")), id: 1)) == .versionMismatch)
    }

    @Test func successfulAuthenticationSendsHelloOkWithTheWorkerIdAndHeartbeat() {
        var m = machine(in: .authenticating)
        let expected = Msg.HelloOk(version: ProtocolVersion.current, workerId: "w-1", owner: "ada", heartbeatSeconds: 5)
        #expect(m.authenticated(ada, id: 1) == .send(.helloOk(expected), id: 1))
        #expect(m.state == .awaitingRegister(ada))
    }

    @Test func failedAuthenticationClosesWithTheGivenError() {
        var m = machine(in: .authenticating)
        let refusal = GridError(.unauthorized, "unknown token")
        #expect(m.authenticationFailed(refusal, id: 1) == .closeWithError(refusal, id: 1))
        #expect(m.state == .closed)
    }

    @Test(arguments: [Machine.State.awaitingHello, .awaitingRegister(ada), .active(ada), .closed])
    func authenticationResultsOutsideAuthenticatingAreIgnored(state: Machine.State) {
        var m = machine(in: state)
        #expect(m.authenticated(ada, id: 1) == .none)
        #expect(m.authenticationFailed(GridError(.unauthorized, "no"), id: 1) == .none)
        #expect(m.state == state)
    }

    @Test(arguments: [GridMessage.register(register), load, .jobStarted(Msg.JobStarted(job: JobRef(jobId: 1, attempt: 1))), .pong])
    func anyMessageBeforeHelloClosesWithNotAuthenticated(message: GridMessage) {
        var m = Machine(heartbeatSeconds: 5)
        let action = m.received(message, id: 4)
        #expect(closeCode(action) == .notAuthenticated)
        guard case .closeWithError(let error, let id) = action else { return }
        #expect(id == 4)
        #expect(error.message.contains(message.type))
        #expect(m.state == .closed)
    }

    @Test func aMessageWhileAuthenticatingClosesWithNotAuthenticated() {
        var m = machine(in: .authenticating)
        #expect(closeCode(m.received(.register(register), id: 2)) == .notAuthenticated)
        #expect(m.state == .closed)
    }

    // MARK: REGISTER

    @Test func registerAfterHelloOkRegistersAndActivates() {
        var m = machine(in: .awaitingRegister(ada))
        #expect(m.received(.register(register), id: 2) == .register(ada, register, id: 2))
        #expect(m.state == .active(ada))
    }

    @Test func messagesBeforeRegisterGetAnErrorButKeepTheConnection() {
        var m = machine(in: .awaitingRegister(ada))
        let action = m.received(load, id: 5)
        #expect(sentErrorCode(action) == .badRequest)
        guard case .send(.error(let e), let id) = action else { return }
        #expect(id == 5)
        #expect(e.message.contains("REGISTER"))
        #expect(m.state == .awaitingRegister(ada))
        #expect(m.received(.register(register), id: 6) == .register(ada, register, id: 6))
    }

    @Test func aSecondHelloBeforeRegisterGetsAnError() {
        var m = machine(in: .awaitingRegister(ada))
        #expect(sentErrorCode(m.received(.hello(hello), id: 5)) == .badRequest)
        #expect(m.state == .awaitingRegister(ada))
    }

    // MARK: Active

    @Test(arguments: [
        load, .jobStarted(Msg.JobStarted(job: JobRef(jobId: 1, attempt: 1))), .jobLog(Msg.JobLog(job: JobRef(jobId: 1, attempt: 1), offset: 0)),
        .pong, .error(Msg.Error(code: .internal, message: "oops")),
    ])
    func messagesAfterRegisterAreDelivered(message: GridMessage) {
        var m = machine(in: .active(ada))
        #expect(m.received(message, id: 9) == .deliver(ada, message, id: 9))
        #expect(m.state == .active(ada))
    }

    @Test(arguments: [GridMessage.hello(hello), .register(register)])
    func helloOrRegisterAgainGetsAnErrorButKeepsTheConnection(message: GridMessage) {
        var m = machine(in: .active(ada))
        let action = m.received(message, id: 9)
        #expect(sentErrorCode(action) == .badRequest)
        guard case .send(.error(let e), _) = action else { return }
        #expect(e.message.contains("already"))
        #expect(m.state == .active(ada))
    }

    // MARK: PING

    @Test(arguments: [Machine.State.awaitingHello, .authenticating, .awaitingRegister(ada), .active(ada)])
    func pingIsAnsweredWithPongInEveryOpenState(state: Machine.State) {
        var m = machine(in: state)
        #expect(m.received(.ping, id: 12) == .send(.pong, id: 12))
        #expect(m.state == state)
    }

    // MARK: Decoder errors

    /// Before `HELLO_OK` any input that is not a message closes the connection with the reason: a stranger's lines of
    /// garbage were each answered and logged until its deadline.
    @Test(arguments: [Machine.State.awaitingHello, .authenticating])
    func anyDecodingErrorBeforeAuthenticationCloses(state: Machine.State) {
        var m = machine(in: state)
        let error = GridError(.malformedMessage, "not a JSON object")
        #expect(m.invalid(error, id: 7, fatal: false) == .closeWithError(error, id: 7))
        #expect(m.state == .closed)
        #expect(m.invalid(error, id: 8, fatal: false) == .none, "once")
    }

    @Test(arguments: [Machine.State.awaitingRegister(ada), .active(ada)])
    func aNonFatalDecodingErrorIsSentAsErrorAndKeepsTheState(state: Machine.State) {
        var m = machine(in: state)
        let error = GridError(.malformedMessage, "not a JSON object")
        #expect(m.invalid(error, id: 7, fatal: false) == .send(.error(Msg.Error(error)), id: 7))
        #expect(m.state == state)
    }

    @Test(arguments: [Machine.State.awaitingHello, .authenticating, .awaitingRegister(ada), .active(ada)])
    func aFatalDecodingErrorCloses(state: Machine.State) {
        var m = machine(in: state)
        let error = GridError(.lineTooLong, "line longer than 1048576 bytes")
        #expect(m.invalid(error, id: nil, fatal: true) == .closeWithError(error, id: 0))
        #expect(m.state == .closed)
    }

    @Test func aDecodingErrorWithoutAnIdIsAnsweredWithIdZero() {
        var m = machine(in: .active(ada))
        let error = GridError(.malformedMessage, "bad")
        #expect(m.invalid(error, id: nil, fatal: false) == .send(.error(Msg.Error(error)), id: 0))
    }

    // MARK: Closed

    @Test(arguments: [GridMessage.hello(hello), .register(register), .ping, load])
    func aClosedSessionIgnoresEveryMessage(message: GridMessage) {
        var m = machine(in: .closed)
        #expect(m.received(message, id: 1) == .none)
        #expect(m.invalid(GridError(.malformedMessage, "x"), id: 1, fatal: false) == .none)
        #expect(m.invalid(GridError(.lineTooLong, "x"), id: 1, fatal: true) == .none)
        #expect(m.state == .closed)
    }

    @Test func aSessionClosedByAnErrorIgnoresWhatFollows() {
        var m = Machine(heartbeatSeconds: 5)
        _ = m.received(load, id: 1)
        #expect(m.received(.hello(hello), id: 2) == .none)
        #expect(m.received(.ping, id: 3) == .none)
    }

    @Test(arguments: [
        (Machine.State.active(ada), ada as WorkerSession.Identity?), (.awaitingRegister(ada), ada), (.authenticating, nil),
        (.awaitingHello, nil), (.closed, nil),
    ])
    func closedReturnsTheIdentityOnceKnown(state: Machine.State, identity: WorkerSession.Identity?) {
        var m = machine(in: state)
        #expect(m.closed() == identity)
        #expect(m.state == .closed)
        #expect(m.closed() == nil)
    }
}
