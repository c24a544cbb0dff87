import Foundation
import Testing

@testable import GridManager

/// The dashboard's form parser: urlencoded and multipart bodies, including malformed ones.
@Suite struct FormDataTests {
    @Test func urlencodedFieldsAreDecoded() {
        let form = FormData(contentType: "application/x-www-form-urlencoded", body: Data("a=1&name=x+y%3Cz%3E&a=2&empty=&flag".utf8))
        #expect(form["name"] == "x y<z>")
        #expect(form.fields["a"] == ["1", "2"])
        #expect(form["empty"] == "")
        #expect(form["flag"] == "")
    }

    /// A logged-in user's 80 MB `a&a&…` took a minute of the manager's CPU and 2 GB to split: url-encoded bodies are
    /// read to 64 KiB and 1,000 fields.
    @Test func aURLEncodedBodyIsReadToItsLimitsOnly() {
        let type = "application/x-www-form-urlencoded"
        let many = (0..<5_000).map { "f\($0)=1" }.joined(separator: "&")
        let capped = FormData(contentType: type, body: Data(many.utf8))
        #expect(capped.fields.count == FormData.maxFields && capped["f0"] == "1" && capped["f999"] == "1" && capped["f1000"] == nil)
        let big = Data(("csrf=abc&" + String(repeating: "a&", count: FormData.maxURLEncodedBytes / 2)).utf8)
        #expect(FormData(contentType: type, body: big).fields.isEmpty, "a body over the limit gives an empty form (refused: no CSRF token)")
        let fits = Data(("csrf=abc&" + String(repeating: "a", count: FormData.maxURLEncodedBytes - 9)).utf8)
        #expect(fits.count == FormData.maxURLEncodedBytes && FormData(contentType: type, body: fits)["csrf"] == "abc")
        #expect(FormData(contentType: "Application/X-WWW-Form-Urlencoded; charset=utf-8", body: Data("a=1".utf8))["a"] == "1")
    }

    @Test func multipartCarriesFieldsAndFiles() {
        let body =
            "--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nabc\r\n"
            + "--XyZ\r\nContent-Disposition: form-data; name=\"script_file\"; filename=\"run.py\"\r\nContent-Type: text/x-python\r\n\r\nprint(1)\r\n\r\n"
            + "--XyZ\r\nContent-Disposition: form-data; name=\"inputs\"; filename=\"\"\r\n\r\n\r\n"
            + "--XyZ--\r\n"
        let form = FormData(contentType: "multipart/form-data; boundary=XyZ", body: Data(body.utf8))
        #expect(form["csrf"] == "abc")
        #expect(form.files["script_file"] == [FormData.File(filename: "run.py", data: Data("print(1)\r\n".utf8))])
        #expect(form.files["inputs"] == nil, "an empty file input is no file")
    }

    @Test func malformedBodiesGiveWhatCanBeRead() {
        for (type, body) in [
            ("multipart/form-data; boundary=B", "--B\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nno end"),
            ("multipart/form-data; boundary=B", "garbage"),
            ("multipart/form-data", "--B--"),
            ("multipart/form-data; boundary=\"\"", "--\r\n"),
            ("text/plain", "a=1"),
            ("application/x-www-form-urlencoded", "%ZZ=%&&=="),
        ] {
            let form = FormData(contentType: type, body: Data(body.utf8))
            #expect(form["csrf"] == nil)
        }
    }
}

/// The utilisation ring buffer behind the overview chart.
@Suite struct UtilisationHistoryTests {
    @Test func keepsTheNewestSamplesUpToItsCapacity() {
        let history = UtilisationHistory(capacity: 3)
        for i in 0..<5 { history.append(.init(at: Double(i), cpusTotal: 4, cpusUsed: i % 5, workersOnline: 2, running: i)) }
        #expect(history.since(0).map(\.at) == [2, 3, 4])
        #expect(history.since(3.5).map(\.running) == [4])
        #expect(UtilisationHistory.Sample(at: 0, cpusTotal: 0, cpusUsed: 3, workersOnline: 0, running: 0).percent == 0)
        #expect(UtilisationHistory.Sample(at: 0, cpusTotal: 4, cpusUsed: 3, workersOnline: 1, running: 1).percent == 75)
    }
}
