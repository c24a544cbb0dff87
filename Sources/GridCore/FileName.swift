/// Rules for names of files that travel with jobs (scripts, inputs, outputs) and through peer storage.
public enum FileName {
    /// Checks that `name` is a plain relative path inside a job's folder: no `..`, no absolute path, no NUL, no
    /// control characters, at most 255 bytes a component and 1024 in all.
    public static func validate(_ name: String) throws(GridError) {
        let bad = { (why: String) in GridError(.badRequest, "invalid file name \(String(reflecting: name)): \(why)") }
        if name.isEmpty { throw bad("empty") }
        if name.utf8.count > 1024 { throw bad("longer than 1024 bytes") }
        if name.hasPrefix("/") { throw bad("absolute paths are not allowed") }
        if name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) { throw bad("control characters are not allowed") }
        for part in name.split(separator: "/", omittingEmptySubsequences: false) {
            if part.isEmpty || part == "." || part == ".." { throw bad("'.', '..' and empty path parts are not allowed") }
            if part.utf8.count > 255 { throw bad("a path part is longer than 255 bytes") }
        }
    }
}
