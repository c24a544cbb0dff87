import Hummingbird
import Synchronization

/// The HTTP listener's responder, swapped at each change of role (issue 16): a leader serves the router of its term
/// (its core, the fenced store), a follower serves reads and refuses writes. The listener itself stays bound.
final class SwitchingResponder: HTTPResponder, Sendable {
    typealias Context = APIContext
    private let current: Mutex<RouterResponder<APIContext>>

    init(_ initial: RouterResponder<APIContext>) { current = Mutex(initial) }

    func set(_ responder: RouterResponder<APIContext>) { current.withLock { $0 = responder } }

    func respond(to request: Request, context: APIContext) async throws -> Response {
        let responder = current.withLock { $0 }
        return try await responder.respond(to: request, context: context)
    }
}

/// Builds the switching responder for `Application(router:)`.
struct SwitchingRouter: HTTPResponderBuilder {
    let responder: SwitchingResponder
    func buildResponder() -> SwitchingResponder { responder }
}
