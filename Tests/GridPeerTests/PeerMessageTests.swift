import Foundation
import GridCore
import GridProtocol
import NIOCore
import Testing

@Suite struct PeerMessageTests {
    func parse(_ text: String) -> InboundFrame? {
        var parser = FrameParser()
        var buffer = ByteBuffer(string: text)
        return parser.next(&buffer)
    }

    @Test func theSeedsMessagesDecodeAsWritten() throws {
        let task = #"{"type": "CPU_TASK", "task_id": "T123", "program": "def main(x): return x*x", "function": "main", "args": [5], "confidential": false}"#
        guard case .frame(let f)? = parse(task + "\n"), case .cpuTask(let t) = f.message else {
            Issue.record("CPU_TASK did not decode")
            return
        }
        #expect(t.taskId == "T123" && t.args == .array([.number(5)]) && t.confidential == false && t.function == "main")
        guard case .frame(let s)? = parse(#"{"type": "SET_MEM", "key": "my_variable", "value": 12345}"# + "\n"), case .setMem(let m) = s.message else {
            Issue.record("SET_MEM did not decode")
            return
        }
        #expect(m.key == "my_variable" && m.value == .number(12345))
        guard case .frame(let p)? = parse(#"{"type": "PUT_FILE", "filename": "document.txt", "data": "aGk="}"# + "\n"), case .putFile(let pf) = p.message
        else {
            Issue.record("PUT_FILE did not decode")
            return
        }
        #expect(pf.filename == "document.txt" && pf.data == "aGk=")
        guard case .frame(let g)? = parse(#"{"type": "GET_MEM", "key": "my_variable"}"# + "\n"), case .getMem = g.message else {
            Issue.record("GET_MEM did not decode")
            return
        }
        guard case .frame(let gf)? = parse(#"{"type": "GET_FILE", "filename": "document.txt"}"# + "\n"), case .getFile = gf.message else {
            Issue.record("GET_FILE did not decode")
            return
        }
    }

    @Test func aChunkTravelsAsRawBulkBytes() throws {
        var out = ByteBuffer()
        try GridFrame(id: 3, .putFileChunk(Msg.PutFileChunk(uploadId: "u", index: 0)), payload: ByteBuffer(bytes: [0, 1, 2, 10, 255])).write(to: &out)
        let text = String(decoding: out.readableBytesView, as: UTF8.self)
        #expect(text.hasPrefix(#"{"bytes":5,"id":3,"index":0,"type":"PUT_FILE_CHUNK","upload_id":"u"}"# + "\n"))
        var parser = FrameParser()
        guard case .frame(let f)? = parser.next(&out) else {
            Issue.record("did not round-trip")
            return
        }
        #expect(f.payload.map { Array($0.readableBytesView) } == [0, 1, 2, 10, 255])
    }

    @Test func missingFieldsAreAClearErrorNotACrash() {
        guard case .invalid(let e, let id, let fatal)? = parse(#"{"type":"CPU_TASK","id":9,"program":"x"}"# + "\n") else {
            Issue.record("accepted")
            return
        }
        #expect(e.code == .malformedMessage, "\(e.message)")
        #expect(e.message.lowercased().contains("task") && id == 9 && !fatal)
    }
}
