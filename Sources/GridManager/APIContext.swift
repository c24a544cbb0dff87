public import Foundation
public import GridCore
import GridProtocol
public import Hummingbird

/// The request context of the manager's HTTP server: snake_case JSON both ways, larger uploads for job bundles.
public struct APIContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The address the request came from ("?" when unknown, as in in-process tests).
    public let clientAddress: String

    public init(source: Source) {
        self.coreContext = .init(source: source)
        self.clientAddress = source.channel.remoteAddress?.ipAddress ?? "?"
    }

    /// The largest body a logged-in route accepts (job bundles, as base64 in JSON or as a form's files).
    static let uploadBytes = 96 << 20
    public var maxUploadSize: Int { Self.uploadBytes }
    public var requestDecoder: JSONDecoder { GridJSON.decoder() }
    public var responseEncoder: JSONEncoder { GridJSON.encoder() }
}

/// Errors become `{"error": {"code": …, "message": …}}` with a fitting status, at the HTTP edge only.
extension GridError: ResponseGenerator {}
extension GridError: HTTPResponseError {
    public var status: HTTPResponse.Status {
        switch code {
        case .badRequest, .invalidResources, .invalidRequirements, .malformedMessage: .badRequest
        case .notAuthenticated, .unauthorized: .unauthorized
        case .forbidden: .forbidden
        case .notFound: .notFound
        case .conflict: .conflict
        case .insufficientCredits: .init(code: 402, reasonPhrase: "Payment Required")
        case .rateLimited: .tooManyRequests
        default: .internalServerError
        }
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = API.ErrorBody(error: .init(code: code.rawValue, message: message))
        let data = try GridJSON.encode(body)
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        if code == .notAuthenticated || code == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

extension API.TokenResponse: ResponseEncodable {}
extension API.Me: ResponseEncodable {}
extension API.Credits: ResponseEncodable {}
extension API.SubmitResponse: ResponseEncodable {}
extension API.PeerAuthority: ResponseEncodable {}
extension PeerTrust.Grant: ResponseEncodable {}
extension API.JobStatus: ResponseEncodable {}
extension API.JobList: ResponseEncodable {}
extension API.LogChunk: ResponseEncodable {}
extension API.WorkerList: ResponseEncodable {}
extension API.WorkerInfo: ResponseEncodable {}
extension API.Leaderboard: ResponseEncodable {}
extension LedgerCheckResponse: ResponseEncodable {}

/// The ledger invariant as the API reports it.
struct LedgerCheckResponse: Codable, Sendable {
    var minted: Int
    /// Everything not in the mint: balances + holds + escrow + fund.
    var held: Int
    /// Of `held`: job holds, escrowed earnings of runs under check, the verification fund.
    var holds: Int
    var escrow: Int
    var fund: Int
    var negativeAccounts: [String]
    var stuckHolds: [String]
    var ok: Bool
}
