import Testing

@testable import GridSandbox

@Suite struct EngineHTTPTests {
    @Test func headParsesStatusAndHeaders() throws {
        let bytes = Array("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello".utf8)
        let head = try #require(try EngineHTTP.parseHead(bytes))
        #expect(head.status == 201 && head.contentLength == 5 && !head.chunked)
        #expect(Array(bytes[head.length...]) == Array("hello".utf8))
    }

    @Test func anIncompleteHeadWaitsForMore() throws {
        #expect(try EngineHTTP.parseHead(Array("HTTP/1.1 200 OK\r\nContent-".utf8)) == nil)
    }

    @Test func aMalformedStatusLineIsAnError() {
        #expect(throws: EngineError.self) { try EngineHTTP.parseHead(Array("SSH-2.0-OpenSSH\r\n\r\n".utf8)) }
        #expect(throws: EngineError.self) { try EngineHTTP.parseHead(Array("HTTP/1.1 abc OK\r\n\r\n".utf8)) }
    }

    @Test func chunkedBodiesDecodeWhateverTheSplit() throws {
        let wire = Array("4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n\r\n".utf8)
        for split in 0...wire.count {
            var d = EngineHTTP.ChunkedDecoder()
            let out = try d.feed(Array(wire[..<split])) + d.feed(Array(wire[split...]))
            #expect(String(decoding: out, as: UTF8.self) == "Wikipedia in \r\n\r\nchunks.")
            #expect(d.finished)
        }
    }

    @Test func badChunkSizesAreErrors() {
        var d = EngineHTTP.ChunkedDecoder()
        #expect(throws: EngineError.self) { try d.feed(Array("zz\r\nabc\r\n".utf8)) }
        var e = EngineHTTP.ChunkedDecoder()
        #expect(throws: EngineError.self) { try e.feed(Array("3\r\nabcXX".utf8)) }
    }

    @Test func logFramesDemultiplexAcrossReads() throws {
        let frames: [UInt8] = [1, 0, 0, 0, 0, 0, 0, 3] + Array("out".utf8) + [2, 0, 0, 0, 0, 0, 0, 4] + Array("err\n".utf8)
        for split in 0...frames.count {
            var d = EngineHTTP.LogDemux()
            let out = try d.feed(Array(frames[..<split])) + d.feed(Array(frames[split...]))
            #expect(String(decoding: out, as: UTF8.self) == "outerr\n")
        }
    }

    @Test func aLogStreamThatIsNotMultiplexedIsAnError() {
        var d = EngineHTTP.LogDemux()
        #expect(throws: EngineError.self) { try d.feed(Array("plain text output".utf8)) }
    }
}
