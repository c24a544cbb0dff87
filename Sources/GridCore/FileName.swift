/// Rules for names of files that travel with jobs (scripts, inputs, outputs) and through peer storage.
public enum FileName {
    /// Checks that `name` is a plain relative path inside a job's folder: no `..`, no absolute path, no NUL, no
    /// control characters, at most 255 bytes a component and 1024 in all.
    public static func validate(_ name: String) throws(GridError) {
        let bad = { (why: String) in GridError(.badRequest, "invalid file name \(String(reflecting: name)): \(why)") }
        // Checked on the bytes the file system sees, never on Swift's characters: a "/" can be part of a character
        // (after a combining mark's base, or before a prepended one), and a split on characters missed the ".." that
        // the file system would climb ("\u{D4E}/../" is one character, a slash and a "..").
        let slash = UInt8(ascii: "/")
        let dot = UInt8(ascii: ".")
        let bytes = Array(name.utf8)
        if bytes.isEmpty { throw bad("empty") }
        if bytes.count > 1024 { throw bad("longer than 1024 bytes") }
        if bytes.first == slash { throw bad("absolute paths are not allowed") }
        if name.unicodeScalars.contains(where: isControlOrFormat) {
            throw bad("control characters and invisible formatting characters are not allowed")
        }
        for part in bytes.split(separator: slash, omittingEmptySubsequences: false) {
            if part.isEmpty || part.elementsEqual([dot]) || part.elementsEqual([dot, dot]) {
                throw bad("'.', '..' and empty path parts are not allowed")
            }
            if part.count > 255 { throw bad("a path part is longer than 255 bytes") }
        }
        // Nor may a "/" be joined to a neighbouring mark: what such a name shows is not the path it is.
        if name.contains(where: { $0 != "/" && $0.unicodeScalars.contains("/") }) {
            throw bad("a '/' joined to a combining or prepended mark is not allowed")
        }
    }

    /// The parts of a name `validate` accepted, split on the "/" byte as the file system splits it.
    public static func parts(_ name: String) -> [String] {
        name.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Control characters (C0, DEL, C1), invisible formatting characters (bidirectional overrides, zero-width
    /// joiners) and line or paragraph separators: they can hide what a name really is.
    public static func isControlOrFormat(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .unassigned, .privateUse: true
        default: false
        }
    }
}
