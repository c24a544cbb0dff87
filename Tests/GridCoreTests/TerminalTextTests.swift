import Foundation
import GridCore
import Testing

/// `TerminalText.shown`: a stranger's text shows a terminal's controls, never sends them; other text is unchanged.
struct TerminalTextTests {
    @Test func controlsAreShownNotSent() {
        #expect(TerminalText.shown("\u{1B}]52;c;aGk=\u{7}paste me") == "^[]52;c;aGk=^Gpaste me", "OSC 52 sets the clipboard")
        #expect(TerminalText.shown("\u{1B}[2K\u{1B}[1Aall good") == "^[[2K^[[1Aall good", "a line rewritten")
        #expect(TerminalText.shown("a\u{0}b\u{7F}c") == "a^@b^?c")
        #expect(TerminalText.shown("\u{9B}2J") == "<U+009B>2J", "C1's CSI")
        #expect(TerminalText.shown("invoice\u{202E}fdp.exe") == "invoice<U+202E>fdp.exe", "a bidirectional override")
        #expect(TerminalText.shown("line\u{2028}next") == "line<U+2028>next")
    }

    @Test func linesKeepNewlinesAndTabsAndOutputKeepsCarriageReturnsToo() {
        #expect(TerminalText.shown("a\tb\nc\rd") == "a\tb\nc^Md")
        #expect(TerminalText.shown("a\tb\nc\rd", keeping: .output) == "a\tb\nc\rd", "a progress bar redraws its line")
        #expect(TerminalText.shown("50%\r\u{1B}[31m", keeping: .output) == "50%\r^[[31m")
    }

    @Test func textWithoutControlsComesBackUnchanged() {
        for text in ["", "plain", "ünïcode 名前 👨\u{200D}👩\u{200D}👧", "tabs\tand\nnewlines", String(repeating: "█", count: 1000)] {
            #expect(TerminalText.shown(text) == text)
        }
        for scalar in (0...0x2FFFF).lazy.compactMap(Unicode.Scalar.init) where !TerminalText.isUnsafe(scalar) {
            let shown = TerminalText.shown(String(scalar), keeping: .lines)
            if shown != String(scalar) { Issue.record("U+\(String(scalar.value, radix: 16)) changed"); break }
        }
    }

    @Test func whatIsShownHoldsNoControlAtAll() {
        var every = String.UnicodeScalarView()
        for v in Array(0...0x20) + Array(0x7F...0xA0) + [0x61C, 0x200E, 0x200F, 0x2028, 0x2029] + Array(0x202A...0x202E) + Array(0x2066...0x2069) {
            every.append(Unicode.Scalar(UInt32(v))!)
        }
        let shown = TerminalText.shown(String(every), keeping: .lines)
        #expect(!shown.unicodeScalars.contains { TerminalText.isUnsafe($0) && $0 != "\n" && $0 != "\t" })
        #expect(shown.unicodeScalars.allSatisfy { $0.isASCII || $0 == "\u{A0}" })
    }
}

/// `UTF8Cut.completePrefix`: a log read in pieces never splits a character.
struct UTF8CutTests {
    @Test func aCharacterBegunAtTheEndIsLeftForTheNextPiece() {
        let bar = Array("ab█".utf8)  // █ is E2 96 88
        #expect(UTF8Cut.completePrefix(bar) == bar.count)
        #expect(UTF8Cut.completePrefix(bar.dropLast()) == 2)
        #expect(UTF8Cut.completePrefix(bar.dropLast(2)) == 2)
        let face = Array("x😀".utf8)  // F0 9F 98 80
        for cut in 1...3 { #expect(UTF8Cut.completePrefix(face.dropLast(cut)) == 1, "\(cut)") }
        #expect(UTF8Cut.completePrefix(Array("é".utf8).dropLast()) == 0)
        #expect(UTF8Cut.completePrefix([UInt8]()) == 0)
    }

    @Test func bytesThatAreNotUTF8AreLeftIn() {
        #expect(UTF8Cut.completePrefix([0x61, 0xFF]) == 2)
        #expect(UTF8Cut.completePrefix([0x80, 0x80, 0x80, 0x80]) == 4, "continuations with no lead")
        #expect(UTF8Cut.completePrefix([0x61, 0xC3, 0xA9]) == 3)
    }

    @Test func aLogPieceWaitsForTheRestOfItsLastCharacterUnlessTheJobEnded() {
        let half = Array("ok █".utf8).dropLast()
        #expect(UTF8Cut.sendable(half, jobEnded: false, reachesEnd: true) == 3, "running: the rest is on its way")
        #expect(UTF8Cut.sendable(half, jobEnded: true, reachesEnd: false) == 3, "ended, more to read: the next read has the rest")
        #expect(UTF8Cut.sendable(half, jobEnded: true, reachesEnd: true) == half.count, "ended at the log's end: nothing will finish it")
        let lone = Array("█".utf8).dropLast()
        #expect(UTF8Cut.sendable(lone, jobEnded: false, reachesEnd: true) == 0, "running: wait")
        #expect(UTF8Cut.sendable(lone, jobEnded: true, reachesEnd: false) == lone.count, "an ended job's read is never empty")
    }

    @Test func piecesCutThereDecodeAsTheWhole() {
        let text = "tqdm █▉▊▋▌▍▎▏ 😀 naïve 名前 " + String(repeating: "█", count: 50)
        let bytes = Array(text.utf8)
        for size in 1...7 {
            var out = "", rest = bytes[...]
            while !rest.isEmpty {
                // As the manager reads: a piece that is all one unfinished character waits for more bytes.
                var piece = rest.prefix(size)
                while UTF8Cut.completePrefix(piece) == 0 && piece.count < rest.count { piece = rest.prefix(piece.count + 1) }
                let cut = UTF8Cut.completePrefix(piece)
                if cut > 0 { piece = piece.prefix(cut) }
                out += String(decoding: piece, as: UTF8.self)
                rest = rest.dropFirst(piece.count)
            }
            #expect(out == text, "pieces of \(size) bytes")
        }
    }
}

/// `API.LogChunk.follows`: `logs` prints only an answer that moves on from where it read.
struct LogChunkTests {
    func chunk(_ offset: Int64, _ next: Int64, _ text: String) -> API.LogChunk {
        API.LogChunk(offset: offset, next: next, text: text, state: .running, done: false)
    }

    @Test func anAnswerThatMovesOnFollows() {
        #expect(chunk(0, 6, "hello\n").follows(from: 0))
        #expect(chunk(6, 6, "").follows(from: 6), "nothing new yet")
        #expect(chunk(0, 1, "\u{FFFD}").follows(from: 0), "a byte that is not UTF-8 shows as three")
    }

    @Test func aHostileManagersAnswersDoNot() {
        #expect(!chunk(0, 0, "again\n").follows(from: 0), "text that never moves on: logs printed it for ever")
        #expect(!chunk(5, 11, "hello\n").follows(from: 0), "another place")
        #expect(!chunk(10, 4, "").follows(from: 10), "backwards")
        #expect(!chunk(0, 1 << 40, "x").follows(from: 0), "more bytes than text")
        #expect(!chunk(Int64.min, Int64.max, "x").follows(from: Int64.min))
        #expect(!chunk(-1, Int64.max, "x").follows(from: -1))
    }
}
