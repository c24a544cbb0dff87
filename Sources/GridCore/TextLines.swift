/// The lines of a text one at a time, split at "\n" and "\r\n" as `split(omittingEmptySubsequences: false)` splits
/// them, without an array of them all: a submitted script of 48 million empty lines made an array of 48 million
/// substrings (over a gigabyte) before anything looked at them.
public struct TextLines: Sequence, IteratorProtocol {
    private var rest: Substring?

    public init(_ text: String) { rest = Substring(text) }

    public mutating func next() -> Substring? {
        guard let r = rest else { return nil }
        guard let end = r.firstIndex(where: { $0 == "\n" || $0 == "\r\n" }) else {
            rest = nil
            return r
        }
        rest = r[r.index(after: end)...]
        return r[..<end]
    }
}
