import GridCore
import GridProtocol
import Hummingbird

/// A request refused by a rate limit: 429 in the API's error shape (`rate_limited`), with `Retry-After`.
struct TooManyRequests: Error, HTTPResponseError, Sendable {
    /// What was limited and what to do, for the person.
    var message: String
    /// Seconds until a request from the same client may go ahead (the `Retry-After` value).
    var retryAfter: Int

    var status: HTTPResponse.Status { .tooManyRequests }
    var error: GridError { GridError(.rateLimited, message) }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = try error.response(from: request, context: context)
        response.headers[.retryAfter] = String(retryAfter)
        return response
    }
}
