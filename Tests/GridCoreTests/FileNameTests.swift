import GridCore
import Testing

@Suite("FileName")
struct FileNameTests {
    @Test(arguments: ["main.py", "data/input.csv", "a/b/c.txt", "..hidden", "x..y", ".env", "résumé.txt", "with space.txt"])
    func plainRelativeNamesAreAccepted(name: String) throws {
        try FileName.validate(name)
    }

    @Test(arguments: [
        "", "../x", "..", ".", "a/../b", "a/..", "./x", "/abs", "/", "a//b", "a/", "a/./b",
        "nul\u{0}byte", "new\nline", "tab\there", "esc\u{1b}[31m", "del\u{7f}",
    ])
    func unsafeNamesAreRejectedAsBadRequest(name: String) {
        let error = #expect(throws: GridError.self) { try FileName.validate(name) }
        #expect(error?.code == .badRequest)
        #expect(error?.message.contains("invalid file name") == true)
    }

    /// A "/" that is part of a larger character (after a combining mark's base, or before a prepended mark) is still a
    /// "/" to the file system: a check that split on characters saw no "..", and the worker wrote `authorized_keys`
    /// in the contributor's home. Each of these names climbs out of the job's folder on disk.
    @Test(arguments: [
        "\u{D4E}/../x",  // a prepended mark glued to the "/" after it
        "a/..\u{301}/../x",  // a combining mark glued to the "/" before it: "/\u{301}" is one character
        "\u{D4E}/../../" + String(repeating: "\u{301}\u{D4E}/../../", count: 3) + "\u{301}\u{D4E}/../.ssh/authorized_keys",
        "/\u{301}etc/passwd",  // absolute, its first character "/\u{301}"
        "x\u{D4E}/./y", "x/\u{301}",
    ])
    func aSlashInsideACharacterIsStillASlash(name: String) {
        let error = #expect(throws: GridError.self) { try FileName.validate(name) }
        #expect(error?.code == .badRequest)
    }

    @Test func partsAreSplitOnTheSlashByte() {
        #expect(FileName.parts("a/b/c.txt") == ["a", "b", "c.txt"])
        #expect(FileName.parts("\u{D4E}/x") == ["\u{D4E}", "x"])
        #expect(FileName.parts("a/\u{301}b") == ["a", "\u{301}b"])
    }

    @Test func absolutePathsSayWhy() {
        let error = #expect(throws: GridError.self) { try FileName.validate("/etc/passwd") }
        #expect(error?.message.contains("absolute") == true)
    }

    @Test(arguments: ["\u{202E}txt.exe", "a\u{200B}b", "c1\u{0085}x", "esc\u{009B}31m", "line\u{2028}sep"])
    func invisibleFormattingAndC1CharactersAreRejected(name: String) {
        #expect(throws: GridError.self) { try FileName.validate(name) }
    }

    @Test func controlCharactersSayWhy() {
        let error = #expect(throws: GridError.self) { try FileName.validate("a\u{0}b") }
        #expect(error?.message.contains("control characters") == true)
    }

    @Test func aPartOf255BytesIsAcceptedAnd256Rejected() throws {
        try FileName.validate(String(repeating: "a", count: 255))
        #expect(throws: GridError.self) { try FileName.validate(String(repeating: "a", count: 256)) }
    }

    @Test func partLengthIsCountedInUTF8Bytes() {
        // 128 × "é" is 128 characters but 256 bytes.
        #expect(throws: GridError.self) { try FileName.validate(String(repeating: "é", count: 128)) }
    }

    @Test func aNameOf1024BytesIsAcceptedAnd1025Rejected() throws {
        let part = String(repeating: "a", count: 200)
        let name1024 = [part, part, part, part, String(repeating: "b", count: 220)].joined(separator: "/")
        #expect(name1024.utf8.count == 1024)
        try FileName.validate(name1024)
        #expect(throws: GridError.self) { try FileName.validate(name1024 + "c") }
    }
}
