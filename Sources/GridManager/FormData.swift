import Foundation

/// A submitted HTML form: `application/x-www-form-urlencoded` or `multipart/form-data` (file uploads).
struct FormData: Sendable {
    /// An uploaded file.
    struct File: Sendable, Hashable {
        var filename: String
        var data: Data
    }

    private(set) var fields: [String: [String]] = [:]
    private(set) var files: [String: [File]] = [:]

    subscript(_ name: String) -> String? { fields[name]?.first }

    /// The largest url-encoded body read (no form of the dashboard's sends more: the one with files is multipart),
    /// and the most fields read from one. An 80 MB body of `a&a&…` took a minute of CPU and 2 GB to split.
    static let maxURLEncodedBytes = 64 << 10
    static let maxFields = 1_000

    /// Parses `body` according to `contentType`; anything else, or a url-encoded body over `maxURLEncodedBytes`,
    /// gives an empty form (which carries no CSRF token, so it is refused).
    init(contentType: String?, body: Data) {
        let type = contentType?.lowercased() ?? ""
        if type.hasPrefix("multipart/form-data"), let boundary = Self.boundary(contentType ?? "") {
            parseMultipart(body, boundary: boundary)
        } else if Self.isURLEncoded(contentType), body.count <= Self.maxURLEncodedBytes {
            parseURLEncoded(String(decoding: body, as: UTF8.self))
        }
    }

    static func isURLEncoded(_ contentType: String?) -> Bool {
        contentType?.lowercased().hasPrefix("application/x-www-form-urlencoded") == true
    }

    private mutating func parseURLEncoded(_ text: String) {
        for pair in text.split(separator: "&", maxSplits: Self.maxFields, omittingEmptySubsequences: true).prefix(Self.maxFields) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String {
                String(s).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s)
            }
            let name = decode(parts[0])
            let value = parts.count > 1 ? decode(parts[1]) : ""
            fields[name, default: []].append(value)
        }
    }

    static func boundary(_ contentType: String) -> String? {
        for part in contentType.split(separator: ";") {
            let p = part.trimmingCharacters(in: .whitespaces)
            if p.lowercased().hasPrefix("boundary=") {
                var b = String(p.dropFirst("boundary=".count))
                if b.hasPrefix("\""), b.hasSuffix("\""), b.count >= 2 { b = String(b.dropFirst().dropLast()) }
                return b.isEmpty || b.count > 200 ? nil : b
            }
        }
        return nil
    }

    private mutating func parseMultipart(_ body: Data, boundary: String) {
        let delimiter = Data(("--" + boundary).utf8)
        let headerEnd = Data("\r\n\r\n".utf8)
        var cursor = body.startIndex
        guard let first = body.range(of: delimiter, in: cursor..<body.endIndex) else { return }
        cursor = first.upperBound
        // Each part: CRLF headers CRLF CRLF content CRLF --boundary; bounded by the number of delimiters in the body.
        for _ in 0..<10_000 {
            if body[cursor...].starts(with: Data("--".utf8)) { return }
            guard let next = body.range(of: delimiter, in: cursor..<body.endIndex),
                let headers = body.range(of: headerEnd, in: cursor..<next.lowerBound)
            else { return }
            let headerText = String(decoding: body[cursor..<headers.lowerBound], as: UTF8.self)
            var contentEnd = next.lowerBound
            if contentEnd - headers.upperBound >= 2, body[contentEnd - 2] == 13, body[contentEnd - 1] == 10 { contentEnd -= 2 }
            let content = Data(body[headers.upperBound..<contentEnd])
            if let (name, filename) = Self.disposition(headerText) {
                if let filename {
                    if !filename.isEmpty || !content.isEmpty { files[name, default: []].append(File(filename: filename, data: content)) }
                } else {
                    fields[name, default: []].append(String(decoding: content, as: UTF8.self))
                }
            }
            cursor = next.upperBound
        }
    }

    /// `name` and `filename` of a part's Content-Disposition header.
    static func disposition(_ headers: String) -> (String, String?)? {
        for line in headers.components(separatedBy: "\r\n") where line.lowercased().hasPrefix("content-disposition:") {
            var name: String?
            var filename: String?
            for item in line.split(separator: ";").dropFirst() {
                let kv = item.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
                guard kv.count == 2 else { continue }
                var value = String(kv[1])
                if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
                switch kv[0].lowercased() {
                case "name": name = value
                case "filename": filename = value
                default: break
                }
            }
            if let name { return (name, filename) }
        }
        return nil
    }
}
