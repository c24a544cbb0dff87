public import Foundation

#if canImport(FoundationNetworking)
public import FoundationNetworking
#endif

/// The dashboard as a browser uses it, over real HTTP, for tests of a grid's web forms: keeps its own cookies and the
/// last page's CSRF token, and does not follow redirects (a test sees each answer, as the forms return them).
public final class DashboardBrowser: NSObject, URLSessionTaskDelegate, @unchecked Sendable {
    // Safe: one test drives one browser from one task; the session's delegate methods touch no state.
    public struct Page: Sendable {
        public var status: Int
        public var body: String
        public var location: String?
    }

    let base: String
    var cookies: [String: String] = [:]
    public private(set) var csrf = ""
    private lazy var session = URLSession(configuration: .ephemeral, delegate: self, delegateQueue: nil)

    public init(baseURL: String) { base = baseURL }

    @discardableResult
    public func get(_ path: String) async throws -> Page { try await send(path, method: "GET", body: nil) }

    /// Posts a form with this session's CSRF token (unless the fields name their own).
    @discardableResult
    public func post(_ path: String, _ fields: [String: String]) async throws -> Page {
        var fields = fields
        if fields["csrf"] == nil { fields["csrf"] = csrf }
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let body = fields.map { "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")" }.joined(separator: "&")
        return try await send(path, method: "POST", body: Data(body.utf8))
    }

    /// Logs in through the form, then opens `/account` (whose page carries the session's CSRF token).
    public func login(_ username: String, password: String = "correct horse battery") async throws {
        try await get("/login")
        let answer = try await post("/login", ["username": username, "password": password])
        guard answer.status == 303 else { throw TestGridError("the dashboard login of \(username) answered \(answer.status): \(answer.body.prefix(300))") }
        try await get("/account")
    }

    public func urlSession(
        _ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse, newRequest request: URLRequest,
        completionHandler: @escaping (URLRequest?) -> Void
    ) {
        completionHandler(nil)
    }

    private func send(_ path: String, method: String, body: Data?) async throws -> Page {
        guard let url = URL(string: base + path) else { throw TestGridError("bad dashboard path \(path)") }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.httpShouldHandleCookies = false
        if !cookies.isEmpty { request.setValue(cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; "), forHTTPHeaderField: "Cookie") }
        if let body {
            request.httpBody = body
            request.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await session.data(for: request)
        guard let http = response as? HTTPURLResponse else { throw TestGridError("no HTTP answer from \(path)") }
        for (name, value) in http.allHeaderFields {
            guard let name = name as? String, name.lowercased() == "set-cookie", let value = value as? String else { continue }
            // Folded headers come joined with ", "; a cookie's own attributes never hold "=" before their ";".
            for cookie in value.components(separatedBy: ", ") {
                let pair = cookie.split(separator: ";").first ?? ""
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard kv.count == 2 else { continue }
                let key = kv[0].trimmingCharacters(in: .whitespaces)
                if cookie.contains("Max-Age=0") || kv[1].isEmpty { cookies[key] = nil } else { cookies[key] = String(kv[1]) }
            }
        }
        let page = Page(status: http.statusCode, body: String(decoding: data, as: UTF8.self), location: http.value(forHTTPHeaderField: "Location"))
        if let r = page.body.range(of: #"name="csrf" value=""#) { csrf = String(page.body[r.upperBound...].prefix { $0 != "\"" }) }
        return page
    }
}
