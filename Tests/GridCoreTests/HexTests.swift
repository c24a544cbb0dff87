import Foundation
import GridCore
import Testing

/// `Hex.string` writes what `String(format: "%02x")` a byte at a time wrote (digests, token hashes and chunk names
/// are compared as text, and stored).
@Suite struct HexTests {
    @Test func hexIsWhatTheFormatterWrote() {
        let all = (0...255).map { UInt8($0) }
        #expect(Hex.string(all) == all.map { String(format: "%02x", $0) }.joined())
        #expect(Hex.string([UInt8]()) == "")
        #expect(Hex.string([0x00, 0xff, 0x0a]) == "00ff0a")
    }
}
