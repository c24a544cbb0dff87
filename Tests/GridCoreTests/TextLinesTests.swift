import GridCore
import Testing

/// `TextLines` splits as `split(omittingEmptySubsequences: false)` at "\n" and "\r\n" does, one line at a time.
@Suite struct TextLinesTests {
    @Test(arguments: ["", "a", "a\n", "\n", "\n\n", "a\nb", "a\r\nb\r\n", "a\rb", "é\u{301}\nx", "# /// script\n# x\n# ///"])
    func linesAreThoseOfSplit(text: String) {
        let split = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).map(String.init)
        #expect(TextLines(text).map(String.init) == split)
    }

    @Test func aMillionEmptyLinesAreCountedOneByOne() {
        var n = 0
        for line in TextLines(String(repeating: "\n", count: 1_000_000)) where line.isEmpty { n += 1 }
        #expect(n == 1_000_001)
    }
}

/// A requirements file is short: a long one is refused before it is read, and reading stops at the package limit.
@Suite struct RequirementsFileBoundsTests {
    @Test func aFileOverTheLimitIsRefusedUnread() throws {
        let text = String(repeating: "#\n", count: PythonRequirements.maxFileBytes / 2 + 1)
        #expect(throws: GridError.self) { try PythonRequirements.parseFile(text) }
        #expect(try PythonRequirements.parseFile(String(repeating: "#\n", count: 1000)).isEmpty)
    }

    @Test func readingStopsWellPastThePackageLimit() throws {
        let lines = PythonRequirements.maxPackages * 4
        let many = (0...lines).map { "pkg\($0 % 3)" }.joined(separator: "\n")
        do {
            _ = try PythonRequirements.parseFile(many)
            Issue.record("\(lines + 1) requirement lines were read")
        } catch {
            #expect(error.message.contains("line \(lines + 1)"), "\(error.message)")
        }
        // Repeats up to that point are read, and dropped when added.
        let read = try PythonRequirements.parseFile(many.split(separator: "\n").dropLast().joined(separator: "\n"))
        var requirements = PythonRequirements()
        try requirements.add(read)
        #expect(requirements.lines == ["pkg0", "pkg1", "pkg2"])
    }

    /// A script's `# /// script` block is read to 64 KiB: past that it is refused, not gathered line by line.
    @Test func aHugeScriptBlockIsRefusedAndOtherBlocksAreNotKept() throws {
        let huge = "# /// script\n" + String(repeating: "#\n", count: InlineScriptMetadata.maxBlockBytes + 1) + "# ///\n"
        #expect(throws: GridError.self) { try InlineScriptMetadata.parse(huge) }
        let other = "# /// other\n" + String(repeating: "#\n", count: InlineScriptMetadata.maxBlockBytes) + "# ///\n"
        #expect(try InlineScriptMetadata.parse(other) == nil)
        let many = "# /// script\n# dependencies = [\n" + String(repeating: "#   \"a\",\n", count: 1_000) + "# ]\n# ///\n"
        var requirements = PythonRequirements()
        #expect(throws: GridError.self) { try requirements.add(try InlineScriptMetadata.parse(many)?.dependencies ?? []) }
    }
}
