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

    /// The CSRF token for forms on pages rendered for this request.
    var csrf: String { Self.csrf(for: anchor) }

    static func csrf(for anchor: String) -> String {
        Hex.string(SHA256.hash(data: Data(("campusgrid-csrf|" + anchor).utf8)))
    }

    /// Reads the session from the request's cookies. A session token lasts `maxAge` from login, like its cookie, then
    /// the user logs in again. A worker join token, in the cookie or as a bearer token, makes a refused session.
    static func load(_ request: Request, api: APIController) async throws -> WebSession {
        let cookies = request.cookies
        do {
            // The dashboard does not log in by bearer token, but a join token presented that way is still refused.
            if let bearer = api.bearer(request), bearer.count <= 200 { _ = try await api.person(presenting: bearer) }
            if let token = cookies[cookieName]?.value, !token.isEmpty, token.count <= 200,
                let user = try await api.person(presenting: token, asSession: true)
            {
                return WebSession(user: user, token: token, anchor: token)
            }
        } catch let refusal as GridError {
            var session = anonymous(cookies)
            session.refusal = refusal
            return session
        }
        return anonymous(cookies)
    }

    /// A session without a user, its CSRF token anchored to the pre-session cookie (a new one on a first visit).
    static func anonymous(_ cookies: Cookies) -> WebSession {
        if let pre = cookies[preCookieName]?.value, pre.count >= 16, pre.count <= 100 {
            return WebSession(user: nil, token: nil, anchor: pre)
        }
        let pre = Tokens.generate(prefix: "p_")
        return WebSession(user: nil, token: nil, anchor: pre, newPreCookie: pre)
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

    /// `tls`: the manager itself serves HTTPS, so every cookie is Secure.
    static func cookie(_ name: String, _ value: String, maxAge: Int, request: Request, tls: Bool = false) -> Cookie {
        Cookie(name: name, value: value, maxAge: maxAge, path: "/", secure: tls || isSecure(request), httpOnly: true, sameSite: .lax)
    }
}
