/// The Python packages a job needs and the Python versions it runs on: the union of `submit --requirements FILE`,
/// `submit --pip SPEC` and the script's PEP 723 metadata, normalised (sorted, without duplicates) so that equal needs
/// have equal digests however they were written.
public struct PythonRequirements: Hashable, Sendable {
    public private(set) var packages: [PythonRequirement]
    /// A PEP 440 specifier set such as `>=3.10,<3.13`; nil when any version will do.
    public private(set) var requiresPython: String?

    /// The most packages one job may declare.
    public static let maxPackages = 200
    /// The longest requirements file read, in bytes (a pip-compile file with its comments fits many times over).
    public static let maxFileBytes = 1 << 20

    public init() {
        packages = []
        requiresPython = nil
    }

    /// Parses and normalises `lines` (one requirement each) and `requiresPython`.
    public init(lines: [String], requiresPython: String? = nil) throws(GridError) {
        self.init()
        try add(lines)
        if let requiresPython { try require(python: requiresPython) }
    }

    public var isEmpty: Bool { packages.isEmpty && requiresPython == nil }

    /// The normalised lines, the form a `JobSpec` carries.
    public var lines: [String] { packages.map(\.description) }

    /// Adds requirement lines, keeping the set sorted and free of duplicates.
    public mutating func add(_ lines: [String]) throws(GridError) {
        // Refused before any is parsed: a block listing millions cost a parse each. (Duplicates are allowed up to a
        // point: they are dropped below.)
        guard lines.count <= Self.maxPackages * 4 else {
            throw GridError(.invalidRequirements, "at most \(Self.maxPackages) requirements per job (got \(lines.count) lines)")
        }
        var all = Set(packages)
        for line in lines { all.insert(try PythonRequirement.parse(line)) }
        guard all.count <= Self.maxPackages else {
            throw GridError(.invalidRequirements, "at most \(Self.maxPackages) requirements per job (got \(all.count))")
        }
        packages = all.sorted()
    }

    /// Narrows the Python versions accepted; two different non-empty sets are joined (both must hold).
    public mutating func require(python spec: String) throws(GridError) {
        let normalised = try PythonVersionSpec.normalise(spec)
        guard !normalised.isEmpty else { return }
        if let existing = requiresPython, existing != normalised {
            requiresPython = try PythonVersionSpec.normalise(existing + "," + normalised)
        } else {
            requiresPython = normalised
        }
    }

    /// What places and caches environments by: the SHA-256 of the normalised set, the same on every machine. A worker
    /// reports the digests it has built; the manager prefers those workers for jobs with the same digest.
    public var digest: String {
        var text = "campusgrid-requirements-v1\n"
        if let requiresPython { text += "requires-python " + requiresPython + "\n" }
        for line in lines { text += line + "\n" }
        return SHA256Digest.hex(of: Array(text.utf8))
    }

    /// The address of a built environment: the digest together with what else decides which files an install
    /// produces on this worker (its Python version, platform and installer options). Used as the folder name.
    public func environmentKey(python: String, platform: String, options: [String] = []) -> String {
        let text = (["campusgrid-env-v1", digest, "python " + python, "platform " + platform] + options.sorted()).joined(separator: "\n")
        return String(SHA256Digest.hex(of: Array(text.utf8)).prefix(32))
    }

    /// Parses a requirements file (`requirements.txt`): one requirement a line, `#` comments, `\` continuations.
    /// pip options (`-r`, `-e`, `--index-url`, …) are refused: the worker's owner, not a job, chooses where code comes
    /// from. The error names the file and the line.
    public static func parseFile(_ text: String, name: String = "requirements file") throws(GridError) -> [String] {
        // A file of requirements is short: one far longer is refused before it is read (a form's field may be 80 MB).
        guard text.utf8.count <= maxFileBytes else {
            throw GridError(.invalidRequirements, "\(name) is \(text.utf8.count) bytes; at most \(maxFileBytes) are read")
        }
        var out: [String] = []
        var pending = ""
        var pendingLine = 0
        for (index, rawLine) in TextLines(text).enumerated() {
            var line = String(rawLine)
            if line.hasSuffix("\r") { line.removeLast() }
            if pending.isEmpty { pendingLine = index + 1 }
            if line.hasSuffix("\\") {
                pending += line.dropLast() + " "
                continue
            }
            line = pending + line
            pending = ""
            // A comment starts a line or follows whitespace.
            if let hash = line.indices.first(where: { line[$0] == "#" && ($0 == line.startIndex || [" ", "\t"].contains(line[line.index(before: $0)])) }) {
                line = String(line[..<hash])
            }
            let trimmed = line.trimmingWhitespace
            if trimmed.isEmpty { continue }
            if trimmed.hasPrefix("-") {
                let option = trimmed.split(separator: " ").first.map(String.init) ?? trimmed
                throw GridError(
                    .invalidRequirements,
                    "\(name) line \(pendingLine): pip option \(option) is not accepted in a job's requirements; list package names only "
                        + "(the worker's owner chooses the index)")
            }
            // Duplicates are dropped later (`add`); reading stops well before a file could cost much.
            guard out.count < maxPackages * 4 else {
                throw GridError(.invalidRequirements, "\(name) line \(pendingLine): at most \(maxPackages) requirements per job")
            }
            do {
                out.append(try PythonRequirement.parse(trimmed).description)
            } catch {
                throw GridError(.invalidRequirements, "\(name) line \(pendingLine): \(error.message)")
            }
        }
        if !pending.isEmpty { throw GridError(.invalidRequirements, "\(name) line \(pendingLine): ends with a '\\' continuation and no next line") }
        return out
    }
}
