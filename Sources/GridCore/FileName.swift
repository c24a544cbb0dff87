/// Rules for names of files that travel with jobs (scripts, inputs, outputs) and through peer storage.
public enum FileName {
    /// Checks that `name` is a plain relative path inside a job's folder: no `..`, no absolute path, no NUL, no
    /// control characters, at most 255 bytes a component and 1024 in all.
    public static func validate(_ name: String) throws(GridError) {
        let bad = { (why: String) in GridError(.badRequest, "invalid file name \(String(reflecting: name)): \(why)") }
        if name.isEmpty { throw bad("empty") }
        if name.utf8.count > 1024 { throw bad("longer than 1024 bytes") }
        if name.hasPrefix("/") { throw bad("absolute paths are not allowed") }
        if name.unicodeScalars.contains(where: isControlOrFormat) {
            throw bad("control characters and invisible formatting characters are not allowed")
        }
        for part in name.split(separator: "/", omittingEmptySubsequences: false) {
            if part.isEmpty || part == "." || part == ".." { throw bad("'.', '..' and empty path parts are not allowed") }
            if part.utf8.count > 255 { throw bad("a path part is longer than 255 bytes") }
        }
    }

    /// Control characters (C0, DEL, C1), invisible formatting characters (bidirectional overrides, zero-width
    /// joiners) and line or paragraph separators: they can hide what a name really is.
    static func isControlOrFormat(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .unassigned, .privateUse: true
        default: false
        }
    }
}
