import Foundation
import GridCore
import GridProtocol
import GridScheduler
import Hummingbird

/// On a follower manager (issue 16): reads are served from the shared store, every write is refused with
/// 503 and the leader's URL, `{"error": {"code": "not_leader", "message": "not the leader: write to URL"}, "leader": URL}`
/// (the API's one error shape, plus `leader`; `leader` is null while no leader is known). Clients retry there.
struct FollowerGate<Context: RequestContext>: RouterMiddleware {
    let leader: @Sendable () -> String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        switch request.method {
        case .get, .head, .options: return try await next(request, context)
        default: return Self.refusal(leader: leader())
        }
    }

    struct Body: Encodable {
        struct Detail: Encodable {
            var code: String
            var message: String
        }
        var error: Detail
        var leader: String?
    }

    static func refusal(leader: String?) -> Response {
        let message = leader.map { "not the leader: write to \($0)" } ?? "not the leader, and no leader is known right now: retry in a few seconds"
        let body = Body(error: .init(code: "not_leader", message: message), leader: leader)
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        headers[.retryAfter] = "1"
        let data = (try? GridJSON.encode(body)) ?? Data(#"{"error":{"code":"not_leader","message":"not the leader"}}"#.utf8)
        return Response(status: .serviceUnavailable, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// `GET /api/v1/leader`: which manager leads, as this one sees it. No login: it says nothing a worker list does not.
struct LeaderEndpoint: Sendable {
    let state: LeaderState

    struct Answer: Encodable {
        var role: String
        var epoch: Int64?
        var leader: String?
        var leaderWorkerAddress: String?
        var manager: String
    }

    func addRoutes(to router: Router<APIContext>) {
        router.get("/api/v1/leader") { _, _ -> Response in
            let s = state.snapshot
            let me = s.me?.apiURL ?? ""
            let answer: Answer
            if let term = s.term {
                answer = Answer(role: "leader", epoch: term.epoch, leader: me, leaderWorkerAddress: s.me?.workerAddress, manager: me)
            } else {
                answer = Answer(role: "follower", epoch: s.leader?.epoch, leader: s.leader?.apiURL, leaderWorkerAddress: s.leader?.workerAddress, manager: me)
            }
            var headers = HTTPFields()
            headers[.contentType] = "application/json; charset=utf-8"
            headers[.cacheControl] = "no-store"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try GridJSON.encode(answer))))
        }
    }
}
