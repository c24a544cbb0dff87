import Foundation
import Hummingbird
import HummingbirdTesting

/// A tiny cookie-keeping client over the in-process router: remembers cookies and the last page's CSRF token, the way
/// a browser would carry them.
final class Browser: @unchecked Sendable {
    // Safe: one test drives one Browser from one task.
    struct Page: Sendable {
        var status: HTTPResponse.Status
        var body: String
        var location: String?
        var setCookies: [String]
    }

    let client: any TestClientProtocol
    let extraHeaders: HTTPFields
    var cookies: [String: String] = [:]
    var csrf = ""
    var last = Page(status: .ok, body: "", location: nil, setCookies: [])

    init(_ client: any TestClientProtocol, extraHeaders: HTTPFields = [:]) {
        self.client = client
        self.extraHeaders = extraHeaders
    }

    @discardableResult
    func get(_ uri: String) async throws -> Page {
        try await send(uri, .get, body: nil, contentType: nil)
    }

    /// Posts a form with this session's CSRF token (unless the fields name their own), urlencoded or multipart.
    @discardableResult
    func post(_ uri: String, _ fields: [String: String], multipart: Bool = false, files: [(field: String, name: String, content: String)] = []) async throws -> Page {
        var fields = fields
        if fields["csrf"] == nil { fields["csrf"] = csrf }
        if multipart {
            let boundary = "----cgtest\(UUID().uuidString.prefix(8))"
            var body = ""
            for (k, v) in fields.sorted(by: { $0.key < $1.key }) {
                body += "--\(boundary)\r\nContent-Disposition: form-data; name=\"\(k)\"\r\n\r\n\(v)\r\n"
            }
            for f in files {
                body += "--\(boundary)\r\nContent-Disposition: form-data; name=\"\(f.field)\"; filename=\"\(f.name)\"\r\nContent-Type: application/octet-stream\r\n\r\n\(f.content)\r\n"
            }
            body += "--\(boundary)\r\nContent-Disposition: form-data; name=\"script_file\"; filename=\"\"\r\nContent-Type: application/octet-stream\r\n\r\n\r\n"
            body += "--\(boundary)--\r\n"
            return try await send(uri, .post, body: body, contentType: "multipart/form-data; boundary=\(boundary)")
        }
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let body = fields.map { "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: allowed)!)" }.joined(separator: "&")
        return try await send(uri, .post, body: body, contentType: "application/x-www-form-urlencoded")
    }

    /// Registers (and so logs in) `name` through the forms.
    @discardableResult
    func register(_ name: String, password: String = "correct horse battery") async throws -> Page {
        try await get("/register")
        let page = try await post("/register", ["username": name, "password": password, "password2": password])
        precondition(page.status == .seeOther, "registration of \(name) failed: \(page.status) \(page.body.prefix(500))")
        // Follow the redirect, as a browser does: the new page carries the session's CSRF token.
        try await get(page.location ?? "/")
        return page
    }

    private func send(_ uri: String, _ method: HTTPRequest.Method, body: String?, contentType: String?) async throws -> Page {
        var headers = extraHeaders
        if !cookies.isEmpty { headers[.cookie] = cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; ") }
        if let contentType { headers[.contentType] = contentType }
        let page = try await client.execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) }) { r in
            Page(status: r.status, body: String(buffer: r.body), location: r.headers[.location], setCookies: r.headers[values: .setCookie])
        }
        for c in page.setCookies {
            let pair = c.split(separator: ";").first ?? ""
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv.count == 2 else { continue }
            if c.contains("Max-Age=0") || kv[1].isEmpty { cookies[String(kv[0])] = nil } else { cookies[String(kv[0])] = String(kv[1]) }
        }
        if let r = page.body.range(of: #"name="csrf" value=""#) {
            csrf = String(page.body[r.upperBound...].prefix { $0 != "\"" })
        }
        last = page
        return page
    }
}
