import Foundation
import GridCore
import GridProtocol
import GridStore
import Hummingbird
import Mustache

/// The web dashboard: server-rendered pages (swift-mustache templates shipped as resources), one script, one
/// stylesheet, and a Server-Sent Events stream that keeps the open page current.
///
/// Pages: overview `/`, `/register`, `/login`, `/logout`, `/submit`, `/jobs`, `/my-jobs`, `/jobs/:id`, `/workers`,
/// `/leaderboard`, `/account`; live updates at `/live`; the REST API's description at `/openapi.json`.
struct Dashboard: Sendable {
    let db: GridDatabase
    let core: ManagerCore
    let api: APIController
    let history: UtilisationHistory
    let assets: Assets
    /// Longest life of one event stream before the browser is asked to reconnect.
    var streamSeconds: Double = 300
    /// How often an event stream looks for changes.
    var tickMilliseconds: Int = 500
    /// On a follower manager (issue 16): the leader's URL, if known, for the notice every page shows.
    var followerOf: (@Sendable () -> String?)?
    /// The live streams open now (`StreamQuota`; `ManagerConfig.liveStreamsPerClient`, `liveStreamsTotal`).
    let liveStreams: LiveStreams

    /// Templates and static files, loaded once from the package resources.
    struct Assets: Sendable {
        let templates: MustacheLibrary
        let script: ByteBuffer
        let stylesheet: ByteBuffer
        let openAPI: ByteBuffer

        static func load() async throws -> Assets {
            // Every template names it first (`{{% CONTENT_TYPE: HTML_SCALARS }}`; a partial starts with the library's
            // own again): read when the templates are parsed, so registered before.
            MustacheContentTypes.register(ScalarEscapedHTML(), named: ScalarEscapedHTML.name)
            guard let web = Bundle.module.url(forResource: "Web", withExtension: nil) else {
                throw GridError(.internal, "the dashboard's resources are missing from the installation")
            }
            func read(_ path: String) throws -> ByteBuffer {
                ByteBuffer(bytes: try Data(contentsOf: web.appendingPathComponent(path)))
            }
            return Assets(
                templates: try await MustacheLibrary(directory: web.appendingPathComponent("templates").path),
                script: try read("static/app.js"), stylesheet: try read("static/app.css"), openAPI: try read("openapi.json"))
        }
    }

    static let pageSize = 20

    /// HTML whose `{{values}}` are escaped by Unicode scalar (`HTMLText`). The library's own escaper walks
    /// `Character`s, and let a `<` joined to a mark into one `Character` through: a stranger's job name as markup.
    struct ScalarEscapedHTML: MustacheContentType {
        static let name = "HTML_SCALARS"
        static let pragma = "{{% CONTENT_TYPE: \(name) }}"
        func escapeText(_ text: String) -> String { HTMLText.escape(text) }
    }

    func addRoutes(to router: Router<APIContext>) {
        router.get("/", use: html(readsTables: true, overview))
        router.get("/register", use: html(registerForm))
        router.post("/register", use: html(register))
        router.get("/login", use: html(loginForm))
        router.post("/login", use: html(login))
        router.post("/logout", use: html(logout))
        router.get("/submit", use: html(submitForm))
        router.post("/submit", use: html(submit))
        router.get("/submit/preview", use: html(costPreview))
        router.get("/jobs", use: html(readsTables: true) { try await jobList($0, $1, mine: false) })
        router.get("/my-jobs", use: html { try await jobList($0, $1, mine: true) })
        router.get("/jobs/:id", use: html(readsTables: true, jobDetail))
        router.post("/jobs/:id/cancel", use: html(cancelJob))
        router.get("/jobs/:id/outputs/**", use: html(download))
        router.get("/workers", use: html(readsTables: true, workersPage))
        router.get("/leaderboard", use: html(readsTables: true, leaderboardPage))
        router.get("/account", use: html(account))
        router.post("/account/tokens", use: html(createJoinToken))
        router.post("/account/tokens/revoke", use: html(revokeJoinToken))
        router.get("/live", use: html(readsTables: true, live))
        router.get("/static/app.js") { _, _ in asset(assets.script, type: "text/javascript; charset=utf-8") }
        router.get("/static/app.css") { _, _ in asset(assets.stylesheet, type: "text/css; charset=utf-8") }
        router.get("/openapi.json") { _, _ in asset(assets.openAPI, type: "application/json; charset=utf-8") }
    }

    // MARK: - Rendering

    /// A page handler: gets the session, returns a response; errors become an HTML error page.
    typealias PageHandler = @Sendable (Request, WebSession) async throws -> Response

    /// `readsTables`: the page reads whole tables (workers, the leaderboard, job counts, the job list): asked for by
    /// nobody signed in, it counts against the address's allowance (`APIController.admitAnonymousRead`), and by a
    /// person signed in, against theirs (`admitSignedInRead`). The sign-in and sign-up pages never do, so a limited
    /// address can always sign in.
    func html(readsTables: Bool = false, _ handler: @escaping PageHandler) -> @Sendable (Request, APIContext) async throws -> Response {
        { request, context in
            var session = try await WebSession.load(request, api: api, tls: api.config.caFingerprint != nil)
            session.client = context.clientAddress
            var response: Response
            if let refusal = session.refusal {
                // A worker join token: no page at all, and the browser forgets the cookie that carried it.
                response = try await errorPage(refusal, request: request, session: session)
                response.setCookie(WebSession.cookie(WebSession.cookieName, "", maxAge: 0, request: request, tls: api.config.caFingerprint != nil))
            } else {
                do {
                    if readsTables {
                        if let user = session.user { try api.admitSignedInRead(user: user.id) } else { try api.admitAnonymousRead(client: session.client) }
                    }
                    response = try await handler(request, session)
                } catch let error as GridError {
                    response = try await errorPage(error, request: request, session: session)
                } catch let limited as TooManyRequests {
                    response = try await errorPage(limited.error, request: request, session: session)
                    response.headers[.retryAfter] = String(limited.retryAfter)
                } catch let redirect as Redirect {
                    // Answered here, so its cookies (a cleared doubled one, a first pre-session one) go with it.
                    var headers = HTTPFields()
                    headers[.location] = redirect.location
                    response = Response(status: .seeOther, headers: headers)
                }
            }
            if session.doubled {
                // Its own cookies cleared (one planted by another host stays with that host's domain or path).
                for base in [WebSession.cookieName, WebSession.preCookieName] {
                    response.setCookie(WebSession.cookie(base, "", maxAge: 0, request: request, tls: api.config.caFingerprint != nil))
                }
            }
            if let pre = session.newPreCookie {
                response.setCookie(WebSession.cookie(WebSession.preCookieName, pre, maxAge: WebSession.maxAge, request: request, tls: api.config.caFingerprint != nil))
            }
            // Its security headers come from `SecurityHeadersMiddleware`, as every answer's do.
            return response
        }
    }

    /// Renders `template` inside the layout.
    func page(
        _ template: String, title: String, session: WebSession, request: Request, nav: String, live: String? = nil,
        status: HTTPResponse.Status = .ok, _ values: [String: Any] = [:]
    ) async throws -> Response {
        var ctx = values
        ctx["title"] = title
        ctx["csrf"] = session.csrf
        ctx["nav_" + nav] = true
        if let live { ctx["live"] = live }
        if let followerOf { ctx["follower"] = followerOf().map { ["leader": $0] } ?? ["unknown": true] }
        if let user = session.user {
            ctx["user"] = ["username": user.username, "balance": try await db.balance(of: .user(user.id))] as [String: Any]
        }
        guard let text = assets.templates.render(ctx, withTemplate: template) else {
            throw GridError(.internal, "no template named \(template)")
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/html; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// Renders a fragment (a live region) without the layout.
    func fragment(_ template: String, _ values: [String: Any]) -> String {
        assets.templates.render(values, withTemplate: template) ?? ""
    }

    func errorPage(_ error: GridError, request: Request, session: WebSession) async throws -> Response {
        try await page(
            "error", title: "\(error.status.code) \(error.status.reasonPhrase)", session: session, request: request, nav: "none",
            status: error.status, ["code": error.status.code, "reason": error.status.reasonPhrase, "message": error.message])
    }

    func redirect(_ location: String) -> Response {
        var headers = HTTPFields()
        headers[.location] = location
        return Response(status: .seeOther, headers: headers)
    }

    /// The signed-in user, or a redirect to the login page that comes back here.
    func requireUser(_ session: WebSession, _ request: Request) throws -> UserRecord {
        guard let user = session.user else {
            throw Redirect(location: "/login?next=" + (request.uri.path.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "/"))
        }
        return user
    }

    /// Thrown to send the browser elsewhere (a login page), answered as 303.
    struct Redirect: Error, HTTPResponseError {
        var location: String
        var status: HTTPResponse.Status { .seeOther }
        func response(from request: Request, context: some RequestContext) throws -> Response {
            var headers = HTTPFields()
            headers[.location] = location
            return Response(status: .seeOther, headers: headers)
        }
    }

    /// The form of a POST, refused (403) unless it carries this session's CSRF token.
    func form(_ request: Request, _ session: WebSession, limit: Int = 80 << 20) async throws -> FormData {
        // A url-encoded form is read no further than the parser reads it.
        let contentType = request.headers[.contentType]
        let body = try await request.body.collect(upTo: FormData.isURLEncoded(contentType) ? min(limit, FormData.maxURLEncodedBytes) : limit)
        let form = FormData(contentType: request.headers[.contentType], body: Data(body.readableBytesView))
        guard session.checks(form["csrf"]) else {
            throw GridError(.forbidden, "the form's security token is missing or stale; reload the page and try again")
        }
        return form
    }

    func wall() -> Double { Date().timeIntervalSince1970 }
}

func asset(_ buffer: ByteBuffer, type: String) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = type
    headers[.cacheControl] = "no-cache"
    return Response(status: .ok, headers: headers, body: .init(byteBuffer: buffer))
}
