import Foundation
import GridCore
import GridProtocol
import Hummingbird
import Logging

/// Gives every error under `/api/` the API's one error shape, `{"error": {"code", "message"}}`, keeping the status:
/// Hummingbird's own errors (a body that does not decode, an upload over the limit, no such route) and anything
/// unexpected (500). Added to the whole router, before any route, so that it also sees requests no route matched.
struct APIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.uri.path.hasPrefix("/api/") else { return try await next(request, context) }
        do {
            return try await next(request, context)
        } catch let error as GridError {
            throw error
        } catch let error as TooManyRequests {
            throw error
        } catch let error as any HTTPResponseError {
            let status = error.status
            let code: GridError.Code =
                switch status.code {
                case 401: .notAuthenticated
                case 403: .forbidden
                case 404: .notFound
                case 409: .conflict
                case 429: .rateLimited
                case 400..<500: .badRequest
                default: .internal
                }
            return Self.response(status, code, (error as? HTTPError)?.body ?? status.reasonPhrase)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            context.logger.error("unexpected error in the API", metadata: ["grid.error": "\(error)"])
            return Self.response(.internalServerError, .internal, "the manager hit an unexpected error; it was logged")
        }
    }

    static func response(_ status: HTTPResponse.Status, _ code: GridError.Code, _ message: String) -> Response {
        let body = API.ErrorBody(error: .init(code: code.rawValue, message: message))
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        let data = (try? GridJSON.encode(body)) ?? Array(#"{"error":{"code":"internal","message":"error"}}"#.utf8).withUnsafeBytes { Data($0) }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
