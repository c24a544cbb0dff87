import Foundation
import GridCore
import Testing

@Suite("JSONValue")
struct JSONValueTests {
    private func roundTrip(_ value: JSONValue) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(value))
    }

    @Test(arguments: [
        JSONValue.null, .bool(true), .bool(false), .number(0), .number(-3), .number(1.5), .number(1e300), .number(9.5e15),
        .string(""), .string("héllo \"world\"\n"), .array([]), .object([:]),
        .array([.null, .bool(true), .number(2), .string("x"), .array([.number(1)]), .object(["k": .null])]),
        .object(["a": .number(1), "b_c": .array([.bool(false)]), "nested": .object(["deep": .string("v")])]),
    ])
    func valueRoundTripsThroughJSON(value: JSONValue) throws {
        #expect(try roundTrip(value) == value)
    }

    @Test(arguments: [
        JSONValue.null, .bool(false), .number(-1.25e-300), .number(9.5e15), .string("héllo \"world\"\n\u{1}/\\"),
        .array([.null, .bool(true), .number(2), .string("x"), .array([.number(1)]), .object(["k\n": .null])]),
        .object(["a": .number(1), "b_c": .array([.bool(false)]), "nested": .object(["deep": .string(String(repeating: "\"", count: 50))])]),
    ])
    func theSizeBoundIsNeverBelowTheEncodedSize(value: JSONValue) throws {
        let encoded = try JSONEncoder().encode(value).count
        #expect(value.encodedSizeBound >= encoded, "\(value): bound \(value.encodedSizeBound) < \(encoded)")
        #expect(value.encodedSizeBound <= encoded * 6 + 24)
    }

    @Test func wholeNumbersAreWrittenWithoutAFraction() throws {
        let text = String(decoding: try JSONEncoder().encode(JSONValue.array([.number(3), .number(-7)])), as: UTF8.self)
        #expect(text == "[3,-7]")
    }

    @Test func decodesEveryKindFromText() throws {
        let text = #"{"n": null, "t": true, "i": 4, "f": 0.25, "s": "x", "a": [1, "y"], "o": {"k": false}}"#
        let value = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        #expect(
            value
                == .object([
                    "n": .null, "t": .bool(true), "i": .number(4), "f": .number(0.25), "s": .string("x"),
                    "a": .array([.number(1), .string("y")]), "o": .object(["k": .bool(false)]),
                ]))
    }

    @Test func numbersOneAndZeroAreNotBooleans() throws {
        let value = try JSONDecoder().decode(JSONValue.self, from: Data("[1, 0, true]".utf8))
        #expect(value == .array([.number(1), .number(0), .bool(true)]))
    }

    /// What a value takes in memory is counted, not only its text: an array of empty arrays is three bytes of text a
    /// value, and more than fifty in memory.
    @Test func theMemoryFootprintBoundsWhatTheTextUnderstates() {
        let nested = JSONValue.array(Array(repeating: .array([]), count: 10_000))
        #expect(nested.encodedSizeBound <= 30_001)
        #expect(nested.memoryFootprint >= 10_000 * 56)
        let object = JSONValue.object(Dictionary(uniqueKeysWithValues: (0..<1000).map { ("k\($0)", JSONValue.null) }))
        #expect(object.memoryFootprint > 5 * object.encodedSizeBound)
        // A long string is about its length either way.
        let text = JSONValue.string(String(repeating: "x", count: 100_000))
        #expect(text.memoryFootprint == 24 + 32 + 100_000 && text.encodedSizeBound == 100_002)
    }
}
