import Testing

@testable import GridManager

/// What the HTTPS port says to a client speaking plain HTTP: a redirect for a well-formed GET or HEAD, a 400 for
/// anything it cannot safely redirect, silence for what is not HTTP at all.
@Suite struct PlainHTTPAnswerTests {
    func answer(_ text: String) -> PlainHTTPAnswer { PlainHTTPAnswer.decide(Array(text.utf8)) }

    func location(_ answer: PlainHTTPAnswer) -> String? {
        guard case .respond(let text) = answer else { return nil }
        return text.split(separator: "\r\n").first { $0.hasPrefix("Location: ") }.map { String($0.dropFirst("Location: ".count)) }
    }

    @Test func aGETOrHEADIsRedirectedToTheSamePathOverHTTPS() {
        let get = answer("GET /jobs/7?tab=log HTTP/1.1\r\nHost: grid.campus.edu:5000\r\nUser-Agent: x\r\n\r\n")
        #expect(location(get) == "https://grid.campus.edu:5000/jobs/7?tab=log")
        guard case .respond(let text) = get else { Issue.record("no answer"); return }
        #expect(text.hasPrefix("HTTP/1.1 308 Permanent Redirect\r\n"))
        #expect(text.contains("Connection: close"))
        #expect(location(answer("HEAD / HTTP/1.0\r\nhost: [::1]:5000\r\n\r\n")) == "https://[::1]:5000/")
    }

    @Test func whatCannotBeRedirectedSafelyGetsA400() {
        for hostile in [
            "POST /api/v1/jobs HTTP/1.1\r\nHost: a\r\n\r\n",  // a body we will not read
            "GET / HTTP/1.1\r\n\r\n",  // no Host
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",  // two
            "GET / HTTP/1.1\r\nHost: evil.example/x?\r\n\r\n",  // not a plain host
            "GET / HTTP/1.1\r\nHost: user@evil.example\r\n\r\n",
            "GET //evil.example/ HTTP/1.1\r\nHost: a\r\n\r\n",  // scheme-relative
            "GET http://evil.example/ HTTP/1.1\r\nHost: a\r\n\r\n",  // absolute form
            "GET / SPDY/3\r\nHost: a\r\n\r\n",
            "GET /\u{7f} HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: \r\n\r\n",
        ] {
            guard case .respond(let text) = answer(hostile) else {
                Issue.record("no answer to \(hostile.debugDescription)")
                continue
            }
            #expect(text.hasPrefix("HTTP/1.1 400 "), "\(hostile.debugDescription)")
            #expect(!text.contains("evil"))
        }
    }

    @Test func aPartialHeadWaitsAndAnEndlessOneIsCutOff() {
        #expect(answer("") == .needMore)
        #expect(answer("GE") == .needMore)
        #expect(answer("GET / HTTP/1.1\r\nHost: a\r\n") == .needMore)
        let endless = "GET /" + String(repeating: "a", count: PlainHTTPAnswer.maxHeadBytes)
        guard case .respond(let text) = answer(endless) else {
            Issue.record("no answer to an endless head")
            return
        }
        #expect(text.hasPrefix("HTTP/1.1 400 "))
    }

    @Test func whatIsNotHTTPGetsNoAnswer() {
        #expect(PlainHTTPAnswer.decide([0x00, 0x01, 0x02]) == .close)
        #expect(answer("get / HTTP/1.1\r\n\r\n") == .close)
        #expect(answer("GETTING_A_VERY_LONG_METHOD_NAME / HTTP/1.1\r\n\r\n") == .close)
        #expect(answer("GET\t/ HTTP/1.1\r\n\r\n") == .close)
        #expect(answer("{\"type\":\"HELLO\"}\n") == .close)
    }
}
