/// One package a job needs, as a PEP 508 requirement (`polars==1.*`, `scikit-learn[alldeps]>=1.4; python_version>"3.9"`),
/// parsed and normalised so that the same need always reads the same: the name in PEP 503 form (lower case, runs of
/// `-`, `_`, `.` as one `-`), extras sorted, version clauses without spaces and sorted, the marker's spaces collapsed.
///
/// Only names from the index are accepted: a direct reference (`name @ https://…`, a path, a VCS URL) or a pip option
/// (`--index-url`, `-e`) is refused, because a job must not choose where the worker downloads code from.
public struct PythonRequirement: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The PEP 503 normalised project name.
    public var name: String
    public var extras: [String]
    /// Version clauses such as `>=1.4`, `==1.*`, sorted.
    public var specifiers: [String]
    /// The environment marker after `;`, spaces collapsed; nil when there is none.
    public var marker: String?

    /// The longest requirement line accepted.
    public static let maxLength = 300

    /// The normalised text, the form stored in a `JobSpec` and hashed into an environment's address.
    public var description: String {
        var s = name
        if !extras.isEmpty { s += "[" + extras.joined(separator: ",") + "]" }
        s += specifiers.joined(separator: ",")
        if let marker { s += "; " + marker }
        return s
    }

    public static func < (a: Self, b: Self) -> Bool { a.description < b.description }

    /// Version comparison operators, longest first so that `===` is not read as `==`.
    static let operators = ["===", "~=", "==", "!=", "<=", ">=", "<", ">"]

    /// Parses one requirement; the error says what is wrong with it, quoting it.
    public static func parse(_ text: String) throws(GridError) -> PythonRequirement {
        let line = text.trimmingWhitespace
        func fail(_ why: String) -> GridError {
            GridError(.invalidRequirements, "requirement \(String(reflecting: String(line.prefix(80)))): \(why)")
        }
        guard !line.isEmpty else { throw fail("is empty") }
        guard line.count <= maxLength else { throw fail("is longer than \(maxLength) characters") }
        guard line.unicodeScalars.allSatisfy({ $0.isASCII && $0.value >= 0x20 && $0.value != 0x7F }) else {
            throw fail("has characters outside printable ASCII")
        }
        // pip reads every word of a requirements line that starts with `-` as an option, anywhere in the line: a marker
        // that ended in `--no-binary=NAME` (or `--global-option`) switched off the worker's wheels-only rule, and the
        // stranger's own package was built from source, its setup code run on the worker.
        if line.split(whereSeparator: { $0 == " " || $0 == "\t" }).contains(where: { $0.hasPrefix("-") }) {
            throw fail("pip options are not accepted in a job's requirements; the worker's owner chooses the index")
        }
        var body = Substring(line)
        var marker: String?
        if let semi = body.firstIndex(of: ";") {
            let m = body[body.index(after: semi)...].split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
            guard !m.isEmpty else { throw fail("has an empty marker after ';'") }
            let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.<>=!~'\"() ,-*+")
            guard m.allSatisfy({ allowed.contains($0) }) else { throw fail("has a marker with characters a marker cannot contain") }
            marker = m
            body = body[..<semi]
        }
        if body.contains("://") || body.contains("@") || body.hasPrefix(".") || body.hasPrefix("/") || body.hasPrefix("~") {
            throw fail("direct references (URLs, paths, name @ URL) are not accepted; name a package from the index")
        }
        // The project name.
        var i = body.startIndex
        while i < body.endIndex, body[i].isNameCharacter { i = body.index(after: i) }
        let rawName = body[body.startIndex..<i]
        guard let first = rawName.first, let last = rawName.last else { throw fail("does not start with a package name") }
        guard first.isLetterOrDigit, last.isLetterOrDigit else { throw fail("has a package name that does not start and end with a letter or digit") }
        var rest = body[i...].drop(while: { $0 == " " || $0 == "\t" })
        // Extras.
        var extras: [String] = []
        if rest.first == "[" {
            guard let close = rest.firstIndex(of: "]") else { throw fail("has '[' without ']'") }
            for part in rest[rest.index(after: rest.startIndex)..<close].split(separator: ",") {
                let extra = part.trimmingWhitespace
                guard !extra.isEmpty, extra.allSatisfy(\.isNameCharacter), extra.first!.isLetterOrDigit, extra.last!.isLetterOrDigit else {
                    throw fail("has an extra that is not a name: \(String(reflecting: extra))")
                }
                extras.append(Self.normalise(name: Substring(extra)))
            }
            rest = rest[rest.index(after: close)...]
        }
        // Version clauses, optionally in parentheses.
        var versions = String(rest.filter { $0 != " " && $0 != "\t" })
        if versions.hasPrefix("(") {
            guard versions.hasSuffix(")") else { throw fail("has '(' without ')'") }
            versions = String(versions.dropFirst().dropLast())
        }
        var specifiers: [String] = []
        if !versions.isEmpty {
            for clause in versions.split(separator: ",", omittingEmptySubsequences: false) {
                guard let op = operators.first(where: { clause.hasPrefix($0) }) else {
                    throw fail("has a version clause \(String(reflecting: String(clause))) without an operator (==, >=, <=, !=, ~=, <, >)")
                }
                let version = clause.dropFirst(op.count).lowercased()
                let versionCharacters = Set("abcdefghijklmnopqrstuvwxyz0123456789.*+!_-")
                guard !version.isEmpty, version.allSatisfy({ versionCharacters.contains($0) }), version.first != "." else {
                    throw fail("has a version clause \(String(reflecting: String(clause))) whose version is not a version")
                }
                if version.contains("*") {
                    guard op == "==" || op == "!=", version.hasSuffix(".*"), version.dropLast(2).allSatisfy({ $0 != "*" }) else {
                        throw fail("uses '*' in \(String(reflecting: String(clause))); only ==X.* and !=X.* may")
                    }
                }
                specifiers.append(op + version)
            }
        }
        return PythonRequirement(
            name: normalise(name: rawName), extras: Array(Set(extras)).sorted(), specifiers: Array(Set(specifiers)).sorted(), marker: marker)
    }

    /// PEP 503: lower case, every run of `-`, `_` and `.` as one `-`.
    public static func normalise(name: Substring) -> String {
        var out = ""
        var inRun = false
        for c in name.lowercased() {
            if c == "-" || c == "_" || c == "." {
                if !inRun { out.append("-") }
                inRun = true
            } else {
                out.append(c)
                inRun = false
            }
        }
        return out
    }
}

extension Character {
    var isNameCharacter: Bool { isLetterOrDigit || self == "-" || self == "_" || self == "." }
    var isLetterOrDigit: Bool { isASCII && (isLetter || isNumber) }
}

extension StringProtocol {
    /// Without leading and trailing spaces, tabs and line ends (GridCore imports no Foundation).
    var trimmingWhitespace: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let start = firstIndex(where: { !isSpace($0) }), let end = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[start...end])
    }
}
