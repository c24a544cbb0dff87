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

    @Test func readingStopsAtThePackageLimit() throws {
        let many = (0...PythonRequirements.maxPackages).map { "pkg\($0)" }.joined(separator: "\n")
        do {
            _ = try PythonRequirements.parseFile(many)
            Issue.record("\(PythonRequirements.maxPackages + 1) requirements were read")
        } catch {
            #expect(error.message.contains("line \(PythonRequirements.maxPackages + 1)"), "\(error.message)")
        }
        #expect(try PythonRequirements.parseFile(many.split(separator: "\n").dropLast().joined(separator: "\n")).count == PythonRequirements.maxPackages)
    }
}
