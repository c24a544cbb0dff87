/// Text from strangers made safe to show on a terminal: a job's log (written by a stranger's code, shipped by a
/// stranger's worker), another user's job name, a worker's name or reason.
///
/// A terminal obeys the controls it is sent: ESC sequences set the clipboard (OSC 52) or the window title, move the
/// cursor to rewrite lines already shown, hide text; C1 controls (U+0080–U+009F) do the same on some terminals; and the
/// bidirectional controls reorder what is shown (what a line shows is not what it says). Each becomes a visible stand-in:
/// C0 controls and DEL in caret notation (`^[`, `^?`), the others as `<U+202E>`. Everything else is left as it is, so
/// text without them comes back unchanged.
public enum TerminalText {
    /// The controls left as they are.
    public struct Kept: Sendable {
        let scalars: Set<Unicode.Scalar>
        /// Lines: newline and tab (names, reasons, messages).
        public static let lines = Kept(scalars: ["\n", "\t"])
        /// A program's output: newline, tab and carriage return (a progress bar redraws its line).
        public static let output = Kept(scalars: ["\n", "\t", "\r"])
        /// None: a field shown on one line (a name, a reason in a table), where a newline would forge the next line.
        public static let none = Kept(scalars: [])
    }

    public static func shown(_ text: String, keeping kept: Kept = .lines) -> String {
        guard text.unicodeScalars.contains(where: { isUnsafe($0) && !kept.scalars.contains($0) }) else { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            guard isUnsafe(scalar), !kept.scalars.contains(scalar) else {
                out.append(scalar)
                continue
            }
            switch scalar.value {
            case 0..<0x20: out.append(contentsOf: "^".unicodeScalars + [Unicode.Scalar(UInt8(scalar.value + 0x40))])
            case 0x7F: out.append(contentsOf: "^?".unicodeScalars)
            default:
                let hex = String(scalar.value, radix: 16, uppercase: true)
                out.append(contentsOf: ("<U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex + ">").unicodeScalars)
            }
        }
        return String(out)
    }

    /// A stranger's word as one field of a log line or a table: at most `maxCharacters` of it, every control shown
    /// (a newline would forge the next line).
    public static func field(_ text: some StringProtocol, maxCharacters: Int = 64) -> String {
        shown(String(text.prefix(max(0, maxCharacters))), keeping: .none)
    }

    /// C0 controls, DEL, C1 controls, the line and paragraph separators, and the bidirectional controls.
    public static func isUnsafe(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0..<0x20, 0x7F...0x9F: true
        case 0x061C, 0x200E, 0x200F, 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069: true
        default: false
        }
    }
}
