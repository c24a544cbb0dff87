import Hummingbird

/// How large a request body each route accepts. Routes that need no login (sign-up, login, logout, on the API and the
/// dashboard) take a small body: a stranger cannot make the manager hold megabytes before it knows who they are.
/// Everything else gets the upload limit (job bundles). Pure; `BodyLimitMiddleware` carries it out.
enum BodyLimit {
    /// The body limit of routes that need no login.
    static let anonymousBytes = 64 << 10

    /// Paths served without a login that take a body.
    static let anonymousPaths: Set<String> = [
        "/api/v1/register", "/api/v1/login", "/api/v1/logout", "/register", "/login", "/logout",
    ]

    /// The largest body `path` accepts; `uploadBytes` for routes that need a login.
    static func bytes(path: String, uploadBytes: Int) -> Int {
        var path = Substring(path)
        while path.count > 1, path.hasSuffix("/") { path = path.dropLast() }
        return anonymousPaths.contains(String(path)) ? anonymousBytes : uploadBytes
    }
}

/// Refuses a body over its route's `BodyLimit` with 413: at once from `Content-Length`, before a byte of it is read;
/// a body without a length is read only up to the limit.
struct BodyLimitMiddleware<Context: RequestContext>: RouterMiddleware {
    let uploadBytes: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // The route the router matched, not the path as sent: the router skips empty segments, so `/api/v1//login`
        // is the login route, and a limit chosen by the raw path gave it the upload limit.
        let limit = BodyLimit.bytes(path: context.endpointPath ?? request.uri.path, uploadBytes: uploadBytes)
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit {
            throw HTTPError(.contentTooLarge, message: "this request's body is \(length) bytes; \(request.uri.path) accepts at most \(limit)")
        }
        guard limit < uploadBytes else { return try await next(request, context) }
        var request = request
        do {
            _ = try await request.collectBody(upTo: limit)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw HTTPError(.contentTooLarge, message: "\(request.uri.path) accepts a body of at most \(limit) bytes")
        }
        return try await next(request, context)
    }
}
