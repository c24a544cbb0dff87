/// Text made safe to put between HTML tags or in a quoted attribute: `&`, `<`, `>`, `"` and `'` become entities.
///
/// It works on UTF-8 bytes, so on Unicode scalars. Walking `Character`s (grapheme clusters), as swift-mustache's own
/// escaper and this project's worker page did, misses a `<` that a prepended mark (`"\u{D4E}<"`) or a `>` that a
/// combining mark (`">\u{301}"`) joins into one `Character`: a stranger's job or worker name came out as markup.
/// (Those characters are ASCII, and no byte of a multi-byte UTF-8 sequence is.)
public enum HTMLText {
    public static func escape(_ text: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "&"): out += amp
            case UInt8(ascii: "<"): out += lt
            case UInt8(ascii: ">"): out += gt
            case UInt8(ascii: "\""): out += quot
            case UInt8(ascii: "'"): out += apos
            default: out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    // Made once: every page escapes every value it shows.
    private static let amp = Array("&amp;".utf8), lt = Array("&lt;".utf8), gt = Array("&gt;".utf8)
    private static let quot = Array("&quot;".utf8), apos = Array("&#39;".utf8)
}
