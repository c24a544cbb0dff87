/// PEP 723 inline script metadata: the `# /// script` … `# ///` block at the top of a script, the convention `uv run`
/// and `pipx run` follow, read for its `dependencies` and `requires-python`.
///
/// ```python
/// # /// script
/// # requires-python = ">=3.11"
/// # dependencies = [
/// #   "polars==1.*",
/// # ]
/// # ///
/// ```
///
/// The block's TOML is read as far as these two keys need (strings and arrays of strings, comments, tables such as
/// `[tool.x]` skipped); a second `script` block, an unclosed one, or a malformed value is an error.
public struct InlineScriptMetadata: Hashable, Sendable {
    public var dependencies: [String]
    public var requiresPython: String?

    public init(dependencies: [String] = [], requiresPython: String? = nil) {
        self.dependencies = dependencies
        self.requiresPython = requiresPython
    }

    /// The metadata of `script`, or nil when it has no `script` block.
    public static func parse(_ script: String) throws(GridError) -> InlineScriptMetadata? {
        guard let toml = try block(in: script) else { return nil }
        return try read(toml)
    }

    /// The largest `script` block read, in bytes (a real one lists a few dependencies).
    public static let maxBlockBytes = 64 << 10

    /// The TOML of the `script` block, without its comment prefixes.
    static func block(in script: String) throws(GridError) -> String? {
        var found: String?
        var content: [String]?
        var contentBytes = 0
        var type = ""
        // Only a `script` block's lines are kept, and at most `maxBlockBytes` of them: a script of millions of "#"
        // lines inside one made an array of them all.
        func keep(_ text: String) throws(GridError) {
            guard type == "script" else { return }
            contentBytes += text.utf8.count + 1
            guard contentBytes <= maxBlockBytes else {
                throw GridError(.invalidRequirements, "the script's '# /// script' block is over \(maxBlockBytes >> 10) KiB")
            }
            content?.append(text)
        }
        for raw in TextLines(script) {
            var line = raw
            if line.hasSuffix("\r") { line = line.dropLast() }
            // Appended in place: a copy of the block per line made a script of N comment lines cost N² (any account
            // could hold the manager for minutes with a megabyte of "#" lines).
            if content != nil {
                if line == "# ///" {
                    if type == "script" {
                        guard found == nil else { throw GridError(.invalidRequirements, "the script has more than one '# /// script' block") }
                        found = content?.joined(separator: "\n")
                    }
                    content = nil
                } else if line == "#" {
                    try keep("")
                } else if line.hasPrefix("# ") {
                    try keep(String(line.dropFirst(2)))
                } else {
                    // Not a comment line: the block never closed.
                    if type == "script" { throw GridError(.invalidRequirements, "the script's '# /// script' block has no closing '# ///' line") }
                    content = nil
                }
            } else if line.hasPrefix("# /// "), case let t = line.dropFirst(6), !t.isEmpty,
                t.allSatisfy({ $0.isLetterOrDigit || $0 == "-" })
            {
                type = String(t)
                content = []
                contentBytes = 0
            }
        }
        if content != nil, type == "script" {
            throw GridError(.invalidRequirements, "the script's '# /// script' block has no closing '# ///' line")
        }
        return found
    }

    /// Reads the root table's `dependencies` and `requires-python`.
    static func read(_ toml: String) throws(GridError) -> InlineScriptMetadata {
        var meta = InlineScriptMetadata()
        var reader = TOMLReader(text: Array(toml))
        var inRoot = true
        while let statement = try reader.nextStatement() {
            switch statement {
            case .table: inRoot = false
            case .pair(let key, let value):
                guard inRoot else { continue }
                switch key {
                case "dependencies":
                    guard case .array(let items) = value else {
                        throw GridError(.invalidRequirements, "script metadata: dependencies must be an array of strings")
                    }
                    meta.dependencies = items
                case "requires-python":
                    guard case .string(let s) = value else {
                        throw GridError(.invalidRequirements, "script metadata: requires-python must be a string")
                    }
                    meta.requiresPython = s
                default: continue
                }
            }
        }
        return meta
    }
}

/// The small part of TOML that script metadata needs: `key = "string"`, `key = ['a', "b",]` over several lines,
/// `[table]` headers and `#` comments. Values of other kinds (numbers, booleans, inline tables) are skipped when they
/// belong to keys nobody reads.
struct TOMLReader {
    enum Value { case string(String), array([String]), other }
    enum Statement { case table, pair(String, Value) }

    let text: [Character]
    var i = 0

    init(text: [Character]) { self.text = text }

    func fail(_ why: String) -> GridError {
        let line = text[..<min(i, text.count)].filter { $0 == "\n" }.count + 1
        return GridError(.invalidRequirements, "script metadata line \(line): \(why)")
    }

    mutating func skipSpaceAndComments(newlines: Bool) {
        while i < text.count {
            let c = text[i]
            if c == " " || c == "\t" || c == "\r" || (newlines && c == "\n") {
                i += 1
            } else if c == "#" {
                while i < text.count, text[i] != "\n" { i += 1 }
            } else {
                return
            }
        }
    }

    mutating func nextStatement() throws(GridError) -> Statement? {
        skipSpaceAndComments(newlines: true)
        guard i < text.count else { return nil }
        if text[i] == "[" {
            while i < text.count, text[i] != "\n" { i += 1 }
            return .table
        }
        let key = try readKey()
        skipSpaceAndComments(newlines: false)
        guard i < text.count, text[i] == "=" else { throw fail("expected '=' after \(String(reflecting: key))") }
        i += 1
        skipSpaceAndComments(newlines: false)
        let value = try readValue()
        skipSpaceAndComments(newlines: false)
        guard i >= text.count || text[i] == "\n" else { throw fail("unexpected text after the value of \(String(reflecting: key))") }
        return .pair(key, value)
    }

    mutating func readKey() throws(GridError) -> String {
        if i < text.count, text[i] == "\"" || text[i] == "'" { return try readString() }
        var key = ""
        while i < text.count, text[i].isLetterOrDigit || text[i] == "-" || text[i] == "_" || text[i] == "." {
            key.append(text[i])
            i += 1
        }
        guard !key.isEmpty else { throw fail("expected a key") }
        return key
    }

    /// How deeply arrays may nest: each level is a call, and a script is a stranger's text (the manager parses it at
    /// submit), so a line of a million `[` must be refused, not overflow the stack. No real metadata nests past 2.
    static let maxArrayDepth = 32

    mutating func readValue(depth: Int = 0) throws(GridError) -> Value {
        guard i < text.count else { throw fail("expected a value") }
        switch text[i] {
        case "\"", "'": return .string(try readString())
        case "[":
            guard depth < Self.maxArrayDepth else { throw fail("arrays are nested deeper than \(Self.maxArrayDepth) levels") }
            i += 1
            var items: [String] = []
            var onlyStrings = true
            while true {
                skipSpaceAndComments(newlines: true)
                guard i < text.count else { throw fail("an array is not closed with ']'") }
                if text[i] == "]" {
                    i += 1
                    return onlyStrings ? .array(items) : .other
                }
                switch try readValue(depth: depth + 1) {
                case .string(let s): items.append(s)
                default: onlyStrings = false
                }
                skipSpaceAndComments(newlines: true)
                guard i < text.count else { throw fail("an array is not closed with ']'") }
                if text[i] == "," { i += 1 } else if text[i] != "]" { throw fail("expected ',' or ']' in an array") }
            }
        case "{":
            var depth = 0
            while i < text.count {
                if text[i] == "{" { depth += 1 }
                if text[i] == "}" { depth -= 1 }
                i += 1
                if depth == 0 { return .other }
            }
            throw fail("an inline table is not closed with '}'")
        default:
            let start = i
            while i < text.count, text[i] != "\n", text[i] != ",", text[i] != "]", text[i] != "#", text[i] != " " { i += 1 }
            guard i > start else { throw fail("expected a value") }
            return .other
        }
    }

    mutating func readString() throws(GridError) -> String {
        let quote = text[i]
        if i + 2 < text.count, text[i + 1] == quote, text[i + 2] == quote { throw fail("multi-line strings are not supported here") }
        i += 1
        var out = ""
        while i < text.count {
            let c = text[i]
            if c == "\n" { break }
            if c == quote {
                i += 1
                return out
            }
            if c == "\\" && quote == "\"" {
                guard i + 1 < text.count else { break }
                let e = text[i + 1]
                switch e {
                case "\"", "\\": out.append(e)
                case "n": out.append("\n")
                case "t": out.append("\t")
                default: throw fail("unsupported escape \\\(e) in a string")
                }
                i += 2
                continue
            }
            out.append(c)
            i += 1
        }
        throw fail("a string is not closed")
    }
}
