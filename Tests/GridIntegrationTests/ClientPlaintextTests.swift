import GridClient
import Testing

/// The CLI's client sends a token or a password beyond loopback only encrypted: a bare `HOST:PORT` beyond loopback
/// means `https://`, and `http://` beyond loopback is refused before anything is sent unless the user says
/// `--insecure-plaintext`. (Pure: no request leaves this machine.)
@Suite struct ClientPlaintextTests {
    @Test(arguments: [
        ("127.0.0.1:5000", "http://127.0.0.1:5000"), ("localhost:5000/", "http://localhost:5000"), ("[::1]:5000", "http://[::1]:5000"),
        ("grid.example.edu:5000", "https://grid.example.edu:5000"), ("10.1.2.3:5000", "https://10.1.2.3:5000"),
        ("http://10.1.2.3:5000", "http://10.1.2.3:5000"), ("https://127.0.0.1:5000", "https://127.0.0.1:5000"),
    ])
    func aBareAddressBeyondLoopbackMeansHTTPS(given: String, url: String) {
        #expect(GridClient(baseURL: given).baseURL == url)
    }

    @Test func plainTextBeyondLoopbackIsRefusedUnlessAllowed() throws {
        let why = try #require(GridClient.plaintextRefusal("http://10.1.2.3:5000", allowsPlaintext: false))
        #expect(why.contains("--insecure-plaintext") && why.contains("http://10.1.2.3:5000"))
        #expect(GridClient.plaintextRefusal("HTTP://grid.example.edu", allowsPlaintext: false) != nil)
        #expect(GridClient.plaintextRefusal("http://10.1.2.3:5000", allowsPlaintext: true) == nil)
        for fine in ["http://127.0.0.1:5000", "http://localhost:5000", "http://[::1]:5000", "https://10.1.2.3:5000"] {
            #expect(GridClient.plaintextRefusal(fine, allowsPlaintext: false) == nil, "\(fine)")
        }
    }
}
