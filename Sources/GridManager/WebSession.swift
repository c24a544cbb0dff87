import Crypto
import Foundation
import GridCore
import GridStore
import Hummingbird

/// The browser side of authentication: a session cookie that holds an API token, and CSRF tokens bound to it.
///
/// The cookie is HttpOnly and SameSite=Lax, and Secure when the request came over TLS (directly or through a proxy that
/// says so in `X-Forwarded-Proto`). Every form carries a CSRF token derived from the session token, or, before login,
/// from a random `cg_pre` cookie; a POST whose token does not match is refused.
struct WebSession: Sendable {
    static let cookieName = "cg_session"
    static let preCookieName = "cg_pre"
    static let maxAge = 7 * 24 * 3600
    /// A session not kept ("keep me signed in" not ticked) ends with the browser's session, and on the manager 12 hours
    /// after its login whatever the browser does (one that restores its session cookies on a lab's shared machine kept
    /// the last student signed in for the week). Its token says so (`tokenLifetime`).
    static let browserSessionMaxAge = 12 * 3600
    /// The prefix of a session token that is not kept; a kept one's is `cgs_` and hex, which this is not.
    static let browserSessionPrefix = "cgs_t_"

    /// How long session token `token` lasts from its login.
    static func tokenLifetime(_ token: String) -> Int {
        token.hasPrefix(browserSessionPrefix) ? browserSessionMaxAge : maxAge
    }
    /// Under TLS the cookies' names carry this prefix: a browser takes such a cookie only Secure, for the path `/` and
    /// with no `Domain`, so no other host of the same site (a student's page on another `*.uni.edu` host) can plant
    /// its own session or pre-session cookie beside ours (sign a victim in as the planter on one page, or a login
    /// CSRF). A server on another port of this very host still can: cookies know no ports.
    static let hostPrefix = "__Host-"

    /// The name a cookie has on this request's connection: `__Host-` when cookies are Secure.
    static func name(_ base: String, request: Request, tls: Bool) -> String {
        tls || isSecure(request) ? hostPrefix + base : base
    }

    /// The user behind the request's session cookie, if it is valid.
    var user: UserRecord?
    /// The session token (from the cookie), when there is a user.
    var token: String?
    /// What the CSRF token is derived from: the session token, or the pre-session cookie.
    var anchor: String
    /// A pre-session cookie to set on the response (first visit).
    var newPreCookie: String?
    /// The address the request came from (for login rate limits).
    var client = "?"
    /// Set when the request presented a worker join token (as its session cookie or a bearer token): every page
    /// answers with this refusal (401), since a join token never stands for a person.
    var refusal: GridError?
    /// The request carried its session or pre-session cookie more than once (one planted by another host of the site,
    /// on a longer path or a wider domain, comes first): it is served signed out, and its own cookie is cleared.
    var doubled = false

    /// The CSRF token for forms on pages rendered for this request.
    var csrf: String { Self.csrf(for: anchor) }

    static func csrf(for anchor: String) -> String {
        Hex.string(SHA256.hash(data: Data(("campusgrid-csrf|" + anchor).utf8)))
    }

    /// Reads the session from the request's cookies. A session token lasts `maxAge` from login, like its cookie, then
    /// the user logs in again. A worker join token, in the cookie or as a bearer token, makes a refused session.
    /// `tls`: the manager serves HTTPS (its cookies are `__Host-` ones). Only a session token is taken from the cookie.
    static func load(_ request: Request, api: APIController, tls: Bool = false) async throws -> WebSession {
        let (session, pre) = (name(cookieName, request: request, tls: tls), name(preCookieName, request: request, tls: tls))
        let cookies = Self.cookies(request)
        if (cookies[session]?.count ?? 0) > 1 || (cookies[pre]?.count ?? 0) > 1 {
            var doubled = anonymous(nil)
            doubled.doubled = true
            return doubled
        }
        do {
            // The dashboard does not log in by bearer token, but a join token presented that way is still refused.
            if let bearer = api.bearer(request), bearer.count <= 200 { _ = try await api.person(presenting: bearer) }
            if let token = cookies[session]?.first, !token.isEmpty, token.count <= 200,
                let user = try await api.person(presenting: token, asSession: true)
            {
                return WebSession(user: user, token: token, anchor: token)
            }
        } catch let refusal as GridError {
            var refused = anonymous(cookies[pre]?.first)
            refused.refusal = refusal
            return refused
        }
        return anonymous(cookies[pre]?.first)
    }

    /// Every value of each cookie the request carries, by name, in the order sent (pure reading of the `Cookie`
    /// headers; a browser sends a name twice when another host of the site planted one beside ours).
    static func cookies(_ request: Request) -> [String: [String]] {
        var out: [String: [String]] = [:]
        for header in request.headers[values: .cookie] {
            for pair in header.split(separator: ";") {
                let trimmed = pair.drop { $0 == " " }
                guard let eq = trimmed.firstIndex(of: "=") else { continue }
                out[String(trimmed[..<eq]), default: []].append(String(trimmed[trimmed.index(after: eq)...]))
            }
        }
        return out
    }

    /// A session without a user, its CSRF token anchored to the pre-session cookie `pre` (a new one on a first visit).
    static func anonymous(_ pre: String?) -> WebSession {
        if let pre, pre.count >= 16, pre.count <= 100 {
            return WebSession(user: nil, token: nil, anchor: pre)
        }
        let fresh = Tokens.generate(prefix: "p_")
        return WebSession(user: nil, token: nil, anchor: fresh, newPreCookie: fresh)
    }

    /// Whether `submitted` is this session's CSRF token (constant-time comparison).
    func checks(_ submitted: String?) -> Bool {
        guard let submitted else { return false }
        let a = Array(csrf.utf8)
        let b = Array(submitted.utf8)
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }

    /// Whether the request came over TLS, so cookies get the Secure attribute.
    static func isSecure(_ request: Request) -> Bool {
        request.uri.scheme?.rawValue == "https" || request.headers[.init("X-Forwarded-Proto")!]?.lowercased() == "https"
    }

    /// `tls`: the manager itself serves HTTPS, so every cookie is Secure. `base`: `cookieName` or `preCookieName`,
    /// named `__Host-…` when Secure. `maxAge` nil: a cookie the browser forgets when it closes.
    static func cookie(_ base: String, _ value: String, maxAge: Int?, request: Request, tls: Bool = false) -> Cookie {
        Cookie(
            name: name(base, request: request, tls: tls), value: value, maxAge: maxAge, path: "/", secure: tls || isSecure(request), httpOnly: true,
            sameSite: .lax)
    }
}
