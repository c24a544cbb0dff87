import Foundation
import GridCore
import NIOCore
import Testing

@testable import GridProtocol

/// The hand-written hot path (`WireJSON`, `GridMessage+Fast`) must agree with `Codable` byte for byte and value for
/// value, and must leave everything it does not accept to `Codable`.
@Suite("Wire JSON fast path")
struct WireJSONTests {
    static let tricky: [JSONValue] = [
        .null, .bool(true), .number(0), .number(-3), .number(1.5), .number(-2.25e-8), .number(1e300), .number(9.5e15), .number(8_999_999_999_999_999),
        .string(""), .string("héllo \"world\"\n\t\r\u{8}\u{c}\u{1}\u{1f}/\\ 日本 😀 \u{7f}"),
        .array([]), .object([:]),
        .array([.null, .bool(false), .number(2), .string("x"), .array([.number(1)]), .object(["k": .null])]),
        .object(["b": .number(1), "a_b": .array([.bool(false)]), "Z": .string("z"), "nested": .object(["deep\n": .string("v")])]),
    ]

    static var hotMessages: [GridMessage] {
        var out: [GridMessage] = [
            .getMem(Msg.MemKey(key: "user:id")), .delMem(Msg.MemKey(key: "a \"quoted\" key\u{1}")),
            .memResult(Msg.MemResult(key: "k", owners: [])), .memResult(Msg.MemResult(key: "k", value: .number(101), owners: ["w-1", "w-2"])),
            .memResult(Msg.MemResult(key: "k", value: .string("v"), owners: ["w-1"], publishedBy: "mallory")),
            .memSync(Msg.MemEntries(entries: [])), .ok(Msg.Ok()), .ok(Msg.Ok(detail: "deleted \"x\"")),
            .memSync(
                Msg.MemEntries(entries: [
                    Msg.MemEntry(key: "k", value: nil, version: 1_700_000_000_000, origin: "w-1"),
                    Msg.MemEntry(key: "k2", value: .string("v"), version: 2, origin: "w-2"),
                ])),
            .memEntries(Msg.MemEntries(entries: [Msg.MemEntry(key: "k", value: .object(["a": .number(1)]), version: 3, origin: "w-3")])),
            .memFetch(Msg.MemFetch(keys: [])), .memFetch(Msg.MemFetch(keys: ["\u{2}alice\u{1e}k", "\u{3}\u{1e}n\"x"])),
            .memFetch(Msg.MemFetch(keys: ["k"], mandateRef: "d:c2ln+/=:Y2VydA==")),
        ]
        for v in tricky {
            out.append(.setMem(Msg.SetMem(key: "k", value: v)))
            out.append(.memResult(Msg.MemResult(key: "k", value: v, owners: ["w-1"])))
            out.append(.cpuTask(Msg.CPUTask(taskId: "t-1", program: "def main(x):\n    return x", args: .array([v]))))
            out.append(.cpuResult(Msg.CPUResult(taskId: "t-1", ok: true, result: v, output: "", peer: "w-1", runtimeMs: 3, startOrder: 9)))
        }
        out += [
            .cpuTask(Msg.CPUTask(taskId: "t", program: "", function: nil, confidential: nil)),
            .cpuTask(
                Msg.CPUTask(
                    taskId: "t \"2\"/", program: "def f(**kw):\n    return kw\n", function: "f", args: .object(["a": .number(1)]),
                    argsLiteral: "{'a': (1, 2)}", confidential: true, timeout: 0.25, priority: -10, user: "ada", requirements: ["numpy>=1.26", "a/b"])),
            .cpuTask(Msg.CPUTask(taskId: "t", program: "x", timeout: 600, priority: 10, requirements: [])),
            .cpuResult(Msg.CPUResult(taskId: "t", ok: false, peer: "w", runtimeMs: 0)),
            .cpuResult(
                Msg.CPUResult(
                    taskId: "t", ok: false, error: "exception", message: "ValueError: \"bad\"", traceback: "Traceback…\n  line 1\n",
                    output: "printed\n\t日本", peer: "w-2", runtimeMs: 9_007_199_254_740_992, startOrder: 0)),
        ]
        return out
    }

    func fastLine(_ m: GridMessage, id: Int) -> String? {
        var b = ByteBuffer()
        guard m.writeFastLine(id: id, into: &b) else { return nil }
        return String(buffer: b)
    }

    @Test(arguments: hotMessages)
    func aHotMessageIsWrittenByteForByteAsCodableWritesIt(message: GridMessage) throws {
        let codable = String(decoding: try message.encodeLine(id: 12, bulkBytes: nil), as: UTF8.self)
        #expect(fastLine(message, id: 12) == codable)
    }

    @Test(arguments: hotMessages)
    func aLineCodableWroteIsReadBackByTheFastPathAsCodableReadsIt(message: GridMessage) throws {
        let line = try message.encodeLine(id: 7, bulkBytes: nil)
        let codable = try GridMessage.decode(type: message.type, from: line)
        let frame = FrameParser.fastFrame(ByteBuffer(bytes: line).readableBytesView)
        guard case .frame(let f)? = frame else {
            Issue.record("the fast path refused \(String(decoding: line, as: UTF8.self))")
            return
        }
        // (Codable reads an optional `null` as absent: so does the fast path.)
        #expect(f.id == 7 && f.message == codable && f.payload == nil)
    }

    @Test func otherMessagesAndBulkFramesAreLeftToCodable() throws {
        #expect(fastLine(.ping, id: 1) == nil)
        #expect(fastLine(.listMem(Msg.ListMem(prefix: "a")), id: 1) == nil)
        // A mandate itself (once per peer and person) goes the general way; its reference does not.
        let mandate = PeerTrust.Mandate(ticket: PeerTrust.Ticket(user: "alice", holder: "w-1", expires: 1, signature: "c2ln"))
        #expect(fastLine(.memFetch(Msg.MemFetch(keys: ["k"], mandate: mandate)), id: 1) == nil)
        #expect(fastLine(.setMem(Msg.SetMem(key: "k", value: .number(.infinity))), id: 1) == nil)
        #expect(fastLine(.cpuTask(Msg.CPUTask(taskId: "t", program: "x", timeout: .nan)), id: 1) == nil)
        // A forwarded task carries a ticket and a signature: the general way.
        #expect(fastLine(.cpuTask(Msg.CPUTask(taskId: "t", program: "x", signature: "c2ln")), id: 1) == nil)
        for line in [
            #"{"type":"PING","id":1}"#, #"{"type":"SET_MEM","id":1,"key":"k"}"#, #"{"type":"GET_MEM","id":1,"key":5}"#,
            #"{"type":"GET_MEM","id":1.5,"key":"k"}"#, #"{"type":"GET_MEM","id":1,"key":"k","bytes":3}"#,
            #"{"type":"MEM_SYNC","id":1,"entries":[{"key":"k","origin":"o","version":1.5}]}"#,
            #"{"type":"MEM_FETCH","id":1,"keys":["k"],"mandate":{"ticket":{}}}"#, #"{"type":"MEM_FETCH","id":1,"keys":["k",1]}"#,
            #"{"type":"MEM_FETCH","id":1,"keys":["k"],"mandate_ref":5}"#,
            #"{"type":"CPU_TASK","id":1,"task_id":"t","program":"x","priority":1.5}"#,
            #"{"type":"CPU_TASK","id":1,"task_id":"t","program":"x","ticket":{}}"#,
            #"{"type":"CPU_TASK","id":1,"task_id":"t","program":"x","requirements":["a",1]}"#,
            #"{"type":"CPU_TASK","id":1,"task_id":"t","program":"x","timeout":"30"}"#,
            #"{"type":"CPU_TASK","id":1,"program":"x"}"#,
            #"{"type":"CPU_RESULT","id":1,"task_id":"t","ok":true,"peer":"w","runtime_ms":1e300}"#,
            #"{"type":"CPU_RESULT","id":1,"task_id":"t","ok":"yes","peer":"w","runtime_ms":1}"#,
        ] {
            #expect(FrameParser.fastFrame(ByteBuffer(string: line).readableBytesView) == nil, "\(line)")
        }
        // …and Codable words the error as it always did.
        var buffer = ByteBuffer(string: #"{"type":"SET_MEM","id":4,"key":"k"}"# + "\n")
        var parser = FrameParser()
        guard case .invalid(let error, let id, let fatal)? = parser.next(&buffer) else {
            Issue.record("a SET_MEM without a value was accepted")
            return
        }
        #expect(id == 4 && !fatal && error.message.contains("missing field \"value\""), "\(error)")
    }

    @Test(arguments: tricky)
    func theReaderAgreesWithJSONDecoder(value: JSONValue) throws {
        let data = try JSONEncoder().encode(value)
        let fast = data.withUnsafeBytes { WireJSON.parse($0) }
        #expect(fast == (try JSONDecoder().decode(JSONValue.self, from: data)))
    }

    @Test(arguments: [
        "", " ", "{", "{\"a\":1,}", "[1,]", "01", "-", "1.", ".5", "1e", "+1", "1e999", "NaN", "tru", "nul", "\"a", "\"\u{1}\"",
        "\"\\x\"", "\"\\ud800\"", "{\"a\" 1}", "{1:2}", "[1 2]", "1 2", "\"\\u12G4\"",
        String(repeating: "[", count: 65) + String(repeating: "]", count: 65),
    ])
    func theReaderRefusesWhatIsNotPlainJSON(text: String) {
        let parsed = Array(text.utf8).withUnsafeBytes { WireJSON.parse($0) }
        #expect(parsed == nil, "\(String(reflecting: text)) was read as \(String(describing: parsed))")
    }

    @Test func theReaderRefusesInvalidUTF8AndAcceptsDeepButBoundedNesting() {
        let bad: [UInt8] = [0x22, 0xFF, 0xFE, 0x22]
        #expect(bad.withUnsafeBytes { WireJSON.parse($0) } == nil)
        let deep = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(Array(deep.utf8).withUnsafeBytes { WireJSON.parse($0) } != nil)
    }
}

/// The one table of wire names: every name in it decodes as its own kind (or fails on its fields, never as unknown),
/// every message encodes its kind's name, and a name not in it is refused as unknown.
@Suite struct MessageTypeTableTests {
    @Test func everyWireNameIsKnownToTheDecoderAndNamesAreUnique() {
        #expect(Set(MessageType.allCases.map(\.rawValue)).count == MessageType.allCases.count)
        for kind in MessageType.allCases {
            do {
                let m = try GridMessage.decode(type: kind.rawValue, from: Data("{}".utf8))
                #expect(m.kind == kind && m.type == kind.rawValue)
            } catch let e as GridError {
                #expect(e.code != .unknownMessage, "\(kind.rawValue) is in the table but unknown to the decoder")
            } catch {}
        }
        for unknown in ["", "hello", "HELLO ", "NOT_A_TYPE", String(repeating: "X", count: 10_000)] {
            #expect(throws: GridError.self) { try GridMessage.decode(type: unknown, from: Data("{}".utf8)) }
        }
    }
}
