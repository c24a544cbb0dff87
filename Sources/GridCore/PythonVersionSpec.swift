/// PEP 440 version specifier sets for `requires-python` (`>=3.10,<3.13`, `==3.11.*`, `~=3.11`), checked against a
/// worker's interpreter version. Pure; only release numbers are compared (pre-releases of Python are not run here).
public enum PythonVersionSpec {
    /// The specifier set without spaces, clauses sorted and unique; throws for anything that is not one.
    public static func normalise(_ spec: String) throws(GridError) -> String {
        let compact = spec.filter { $0 != " " && $0 != "\t" }
        if compact.isEmpty { return "" }
        guard compact.count <= 100 else { throw GridError(.invalidRequirements, "requires-python is longer than 100 characters") }
        var clauses: Set<String> = []
        for clause in compact.split(separator: ",", omittingEmptySubsequences: false) {
            guard let (op, release, wildcard) = parse(clause) else {
                throw GridError(
                    .invalidRequirements,
                    "requires-python \(String(reflecting: spec)): \(String(reflecting: String(clause))) is not a version clause such as >=3.10")
            }
            clauses.insert(op + release.map(String.init).joined(separator: ".") + (wildcard ? ".*" : ""))
        }
        return clauses.sorted().joined(separator: ",")
    }

    /// Whether `version` (`3.11.7`) satisfies every clause of `spec`; false for a spec or version that does not parse.
    public static func allows(_ spec: String, version: String) -> Bool {
        let v = version.split(separator: ".").prefix(3).compactMap { Int($0) }
        guard !v.isEmpty else { return false }
        let compact = spec.filter { $0 != " " && $0 != "\t" }
        if compact.isEmpty { return true }
        for clause in compact.split(separator: ",", omittingEmptySubsequences: false) {
            guard let (op, release, wildcard) = parse(clause), check(op, release, wildcard, v) else { return false }
        }
        return true
    }

    static func parse(_ clause: Substring) -> (op: String, release: [Int], wildcard: Bool)? {
        guard let op = ["~=", "==", "!=", "<=", ">=", "<", ">"].first(where: { clause.hasPrefix($0) }) else { return nil }
        var body = clause.dropFirst(op.count)
        var wildcard = false
        if body.hasSuffix(".*") {
            guard op == "==" || op == "!=" else { return nil }
            wildcard = true
            body = body.dropLast(2)
        }
        let parts = body.split(separator: ".", omittingEmptySubsequences: false)
        guard !parts.isEmpty, parts.count <= 4 else { return nil }
        var release: [Int] = []
        for p in parts {
            guard !p.isEmpty, p.count <= 6, p.allSatisfy(\.isNumber), p.allSatisfy(\.isASCII), let n = Int(p) else { return nil }
            release.append(n)
        }
        if op == "~=" && release.count < 2 { return nil }
        return (op, release, wildcard)
    }

    /// Compares release numbers padded with zeros.
    static func compare(_ a: [Int], _ b: [Int]) -> Int {
        for i in 0..<max(a.count, b.count) {
            let x = i < a.count ? a[i] : 0
            let y = i < b.count ? b[i] : 0
            if x != y { return x < y ? -1 : 1 }
        }
        return 0
    }

    static func check(_ op: String, _ release: [Int], _ wildcard: Bool, _ v: [Int]) -> Bool {
        let prefixMatch = Array(v.prefix(release.count)) + Array(repeating: 0, count: max(0, release.count - v.count)) == release
        switch op {
        case "==": return wildcard ? prefixMatch : compare(v, release) == 0
        case "!=": return wildcard ? !prefixMatch : compare(v, release) != 0
        case ">=": return compare(v, release) >= 0
        case "<=": return compare(v, release) <= 0
        case ">": return compare(v, release) > 0
        case "<": return compare(v, release) < 0
        case "~=":
            let stem = Array(release.dropLast())
            return compare(v, release) >= 0 && Array(v.prefix(stem.count)) == stem
        default: return false
        }
    }
}
