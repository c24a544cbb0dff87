import GridCore
import GridPeer
import GridProtocol
import Testing

@testable import GridWorker

/// What a peer answers a `MEM_FETCH` with (pure): each key once, within one line, and any value a writer may store.
@Suite struct FetchAnswerTests {
    static func table(_ values: [String: JSONValue]) -> (String) -> MemoryTable.Entry? {
        { key in values[key].map { MemoryTable.Entry(value: $0, version: 1, origin: "w", seal: String(repeating: "s", count: 2_000)) } }
    }

    @Test func eachKeyIsAnsweredOnceAndTheAnswerFitsALine() throws {
        let big = JSONValue.string(String(repeating: "b", count: 200_000))
        let lookup = Self.table(["a": big, "b": big, "c": big, "d": big, "e": big, "f": big])
        #expect(try PeerService.fetchAnswer(keys: Array(repeating: "a", count: 1_000), lookup: lookup).count == 1)
        #expect(try PeerService.fetchAnswer(keys: ["a", "b", "nothing"], lookup: lookup).map(\.key) == ["a", "b"])
        #expect(throws: GridError.self) { try PeerService.fetchAnswer(keys: ["a", "b", "c", "d", "e", "f"], lookup: lookup) }
        #expect(try PeerService.fetchAnswer(keys: [], lookup: lookup).isEmpty)
    }

    /// A value whose size bound is far over its JSON (numbers are bounded at 24 bytes each): 100,000 zeros are 200 KB,
    /// a value any writer may store, bounded at 2.5 MB. It is measured, and answered.
    @Test func aValueOfManySmallNumbersIsMeasuredNotRefusedByItsBound() throws {
        let zeros = JSONValue.array(Array(repeating: .number(0), count: 100_000))
        #expect(zeros.encodedSizeBound > Msg.replyBudgetBytes)
        let answer = try PeerService.fetchAnswer(keys: ["zeros"], lookup: Self.table(["zeros": zeros]))
        #expect(answer.count == 1 && answer.first?.value == zeros)
        let line = try GridMessage.memEntries(Msg.MemEntries(entries: answer)).encodeLine(id: 1, bulkBytes: nil)
        #expect(line.count < 1 << 20)
    }
}
