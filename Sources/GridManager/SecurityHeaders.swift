import Hummingbird
import Logging
import NIOHTTP1

/// The headers every answer of the manager's HTTP port carries, pages, API, assets and errors alike. Pure;
/// `SecurityHeadersMiddleware` carries it out.
enum SecurityHeaders {
    /// The dashboard's pages: its own scripts, styles and forms only, in no frame, with no `<base>` and no plugin.
    static let pagePolicy =
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
        + "form-action 'self'; base-uri 'none'; object-src 'none'"

    /// Everything else (JSON, scripts, style sheets, the event stream): nothing to run or load if a browser is made
    /// to open it as a document.
    static let otherPolicy = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"

    /// A day. Not `includeSubDomains`: the grid's host name says nothing of its campus's other hosts. Not longer: the
    /// manager's TLS is mostly its own CA's, and a browser that trusts that CA would be held to HTTPS past a CA made
    /// anew or a manager run without TLS, with no way to click through (review of this session's diff).
    static let transportSecurity = "max-age=86400"

    /// Adds what `headers` lacks: no sniffing of types, no framing, no referrer beyond the site; a policy by the content
    /// type (a route that sets its own keeps it); under TLS, that the browser come back only over TLS.
    static func add(to headers: inout HTTPFields, tls: Bool) {
        func setIfAbsent(_ name: String, _ value: String) {
            let field = HTTPFields.Element.Name(name)!
            if headers[field] == nil { headers[field] = value }
        }
        setIfAbsent("X-Content-Type-Options", "nosniff")
        setIfAbsent("X-Frame-Options", "DENY")
        setIfAbsent("Referrer-Policy", "same-origin")
        let isPage = headers[.contentType]?.lowercased().hasPrefix("text/html") == true
        setIfAbsent("Content-Security-Policy", isPage ? pagePolicy : otherPolicy)
        if tls { setIfAbsent("Strict-Transport-Security", transportSecurity) }
    }
}

/// Puts `SecurityHeaders` on every answer, errors included: added first, so an error any route or middleware throws
/// is answered here (as Hummingbird would) and carries them too.
struct SecurityHeadersMiddleware<Context: RequestContext>: RouterMiddleware {
    let tls: Bool

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: context)
        } catch let error as HTTPParserError {
            // A request the client garbled: Hummingbird answers 400 and closes the connection, as before.
            throw error
        } catch {
            // Any other error (a store that failed, say): answered 500 with no detail, as Hummingbird would, but with
            // the headers (before, such an answer went out with none). A cancelled request (the client left, the
            // manager stops) is no fault: logged at debug, as Hummingbird does.
            let level: Logger.Level = error is CancellationError ? .debug : .error
            context.logger.log(level: level, "request failed", metadata: ["grid.http.path": "\(request.uri.path)", "grid.error": "\(error)"])
            response = Response(status: .internalServerError)
        }
        SecurityHeaders.add(to: &response.headers, tls: tls)
        return response
    }
}
