import Crypto
import Foundation
import GridCore

/// API and worker tokens: random, shown once, stored only as a SHA-256 hash.
enum Tokens {
    static func generate(prefix: String) -> String {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<24).map { _ in UInt8.random(in: 0...255, using: &rng) }
        return prefix + Hex.string(bytes)
    }

    static func hash(_ token: String) -> String {
        Hex.string(SHA256.hash(data: Data(token.utf8)))
    }

    static func workerId() -> String {
        var rng = SystemRandomNumberGenerator()
        return "w-" + Hex.string((0..<5).map { _ in UInt8.random(in: 0...255, using: &rng) })
    }
}
