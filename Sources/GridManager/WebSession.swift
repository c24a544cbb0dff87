import Crypto
import Foundation
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

    /// The CSRF token for forms on pages rendered for this request.
    var csrf: String { Self.csrf(for: anchor) }

    static func csrf(for anchor: String) -> String {
        SHA256.hash(data: Data(("campusgrid-csrf|" + anchor).utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// The user of a session token, unless it is older than `maxAge` (a session lasts a week from login, like its
    /// cookie, then the user logs in again).
    static func user(of token: String, db: GridDatabase, now: Double = Date().timeIntervalSince1970) async throws -> UserRecord? {
        try await db.tokenOwner(hash: Tokens.hash(token), issuedAfter: now - Double(maxAge))
    }

    /// Reads the session from the request's cookies.
    static func load(_ request: Request, db: GridDatabase) async throws -> WebSession {
        let cookies = request.cookies
        if let token = cookies[cookieName]?.value, !token.isEmpty, token.count <= 200, let user = try await user(of: token, db: db) {
            return WebSession(user: user, token: token, anchor: token)
        }
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

    static func cookie(_ name: String, _ value: String, maxAge: Int, request: Request) -> Cookie {
        Cookie(name: name, value: value, maxAge: maxAge, path: "/", secure: isSecure(request), httpOnly: true, sameSite: .lax)
    }
}
