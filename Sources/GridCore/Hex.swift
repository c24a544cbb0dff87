/// Lower-case hex text of bytes. `String(format: "%02x")` a byte at a time went through Foundation's formatter for
/// each byte: a tenth of a memory SET's CPU went to writing two SHA-256 digests that way (profile of 270a6e20b4e4).
public enum Hex {
    public static func string(_ bytes: some Sequence<UInt8>) -> String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
