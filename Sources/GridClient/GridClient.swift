import AsyncHTTPClient
public import Foundation
public import GridCore
public import GridProtocol
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL
import Synchronization

/// A typed client for the manager's REST API (`/api/v1`), used by the CLI, `up` and the tests.
public struct GridClient: Sendable {
    /// The manager's base URL, e.g. `http://127.0.0.1:5000`.
    public var baseURL: String
    public var token: String?
    /// The manager's CA certificate (PEM): an `https` manager is trusted only if that CA issued its certificate
    /// (host names are not checked: the grid's own CA is the identity). nil: the system's roots.
    public var caCertificatePEM: String?

    /// The grid's other managers' base URLs (issue 16: `CAMPUSGRID_MANAGER=url1,url2,…`), after `baseURL`. A request
    /// goes to the first that answers; a write a follower refuses is retried once, on the leader it names if that one
    /// is in this list, else on the next. They share one identity (CA, accounts, tokens) with `baseURL`.
    public var alternates: [String] = []
    /// Whether requests may go in plain text (`http://`) to a manager beyond loopback (`--insecure-plaintext`): by
    /// default they are refused before anything is sent (`plaintextRefusal`).
    public var allowsPlaintext = false

    public init(baseURL: String, token: String? = nil, caCertificatePEM: String? = nil) {
        self.baseURL = Self.normalise(baseURL)
        self.token = token
        self.caCertificatePEM = caCertificatePEM
    }

    /// A client for a comma-separated list of managers: the first is `baseURL` (credentials and trust are kept under it).
    public init(managers list: String, token: String? = nil, caCertificatePEM: String? = nil) {
        let urls = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.map(Self.normalise)
        self.init(baseURL: urls.first ?? list, token: token, caCertificatePEM: caCertificatePEM)
        alternates = Array(urls.dropFirst()).filter { $0 != baseURL }
    }

    /// A manager's URL: a bare `HOST:PORT` is `http://` on loopback and `https://` beyond it (a password or token
    /// goes beyond this machine only encrypted, unless the user says `--insecure-plaintext`).
    static func normalise(_ text: String) -> String {
        var url = text
        while url.hasSuffix("/") { url.removeLast() }
        if !url.contains("://") {
            let host = URLComponents(string: "http://" + url)?.host ?? url
            url = (TransportChoice.isLoopback(host) ? "http://" : "https://") + url
        }
        return url
    }

    /// Why a request to `base` is not sent, or nil: plain text beyond loopback, unless `allowsPlaintext`. Every request
    /// may carry a token or a password (login, register), and a manager beyond loopback speaks TLS unless its operator
    /// chose `--insecure-plaintext`.
    public static func plaintextRefusal(_ base: String, allowsPlaintext: Bool) -> String? {
        guard !allowsPlaintext, base.lowercased().hasPrefix("http://"), let host = URLComponents(string: base)?.host,
            !TransportChoice.isLoopback(host)
        else { return nil }
        return "refusing to send a token or password in plain text to \(base): use https:// (a manager beyond loopback speaks TLS), "
            + "or --insecure-plaintext (env CAMPUSGRID_INSECURE_PLAINTEXT=1) for a manager started with --insecure-plaintext"
    }

    /// Every manager this client knows, `baseURL` first.
    public var managers: [String] { [baseURL] + alternates }

    /// The HTTP client for this manager: the one that trusts the system's roots, or the one for its CA that trusts only
    /// that CA (`TrustedClients`, kept for the process's life: a CLI talks to one manager).
    var http: HTTPClient {
        get throws { try TrustedClients.client(caPEM: caCertificatePEM) }
    }

    /// An error the manager returned, or a failure to reach it.
    public struct Failure: Error, CustomStringConvertible {
        public var status: Int
        public var code: String
        public var message: String
        public var description: String { message }
        /// `not_leader`: the leader's URL the follower named, if any.
        public var leader: String?
        /// `unreachable`: the connection was refused, so the request never left.
        public var nothingSent = false
        public init(status: Int, code: String, message: String) {
            self.status = status
            self.code = code
            self.message = message
        }
    }

    struct NotLeaderBody: Decodable { var leader: String? }

    // MARK: - Accounts

    public func register(_ username: String, password: String) async throws -> API.TokenResponse {
        try await send(.POST, "/api/v1/register", body: API.Credentials(username: username, password: password))
    }

    public func login(_ username: String, password: String) async throws -> API.TokenResponse {
        try await send(.POST, "/api/v1/login", body: API.Credentials(username: username, password: password))
    }

    public func logout() async throws {
        _ = try await raw(.POST, "/api/v1/logout", body: nil)
    }

    public func me() async throws -> API.Me { try await send(.GET, "/api/v1/me") }

    public func credits() async throws -> API.Credits { try await send(.GET, "/api/v1/credits") }

    public func createToken(kind: String = "worker") async throws -> API.TokenResponse {
        try await send(.POST, "/api/v1/tokens?kind=\(kind)", body: Optional<API.Me>.none)
    }

    // MARK: - Jobs

    /// Submits a job. `key` (`SubmitKey`) names this submission: a new one is made if nil. The same key is sent with
    /// every attempt, so the submission may go to the next manager after an answer was lost (the leader died after
    /// committing it) without making a second job; pass your own key to make retries across calls safe too.
    public func submit(_ request: API.SubmitRequest, key: String? = nil) async throws -> API.SubmitResponse {
        let key = key ?? UUID().uuidString
        let bytes = try await raw(
            .POST, "/api/v1/jobs", body: try GridJSON.encode(request), headers: [("Idempotency-Key", key)], idempotent: true)
        return try decode(API.SubmitResponse.self, bytes, path: "/api/v1/jobs")
    }

    public func jobs(mine: Bool = false, state: String? = nil, limit: Int = 100, offset: Int = 0) async throws -> API.JobList {
        var q = "?limit=\(limit)"
        if offset > 0 { q += "&offset=\(offset)" }
        if mine { q += "&mine=1" }
        if let state { q += "&state=\(state.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? state)" }
        return try await send(.GET, "/api/v1/jobs" + q)
    }

    public func job(_ id: JobID) async throws -> API.JobStatus { try await send(.GET, "/api/v1/jobs/\(id)") }

    public func logs(_ id: JobID, from offset: Int64, wait: Double = 0) async throws -> API.LogChunk {
        try await send(.GET, "/api/v1/jobs/\(id)/logs?offset=\(offset)&wait=\(wait)")
    }

    public func cancel(_ id: JobID) async throws -> API.JobStatus {
        try await send(.POST, "/api/v1/jobs/\(id)/cancel", body: Optional<API.Me>.none)
    }

    public func output(_ id: JobID, name: String) async throws -> Data {
        let escaped = name.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? name
        return try await raw(.GET, "/api/v1/jobs/\(id)/outputs/\(escaped)", body: nil)
    }

    // MARK: - Cluster

    public func workers() async throws -> API.WorkerList { try await send(.GET, "/api/v1/workers") }

    public func leaderboard() async throws -> API.Leaderboard { try await send(.GET, "/api/v1/leaderboard") }

    /// The CA of the grid's peer ports (PEM), as this manager (trusted with `caCertificatePEM`) names it.
    public func peerAuthority() async throws -> String { try await (send(.GET, "/api/v1/peer-ca") as API.PeerAuthority).peerCa }

    /// The manager's certificate for `key` (this user's, raw, base64) and a forwarding ticket for online peer `worker`
    /// when one is named (see `PeerLink.connect(host:port:grant:)`): what the client proves itself to peers with, in
    /// place of its token.
    public func peerGrant(key: String, worker: String? = nil) async throws -> PeerTrust.Grant {
        try await send(.POST, "/api/v1/peer-tickets", body: API.PeerTicketRequest(key: key, worker: worker))
    }

    /// A pass per link, as `PeerLink.connect` asks for one: a fresh key, certified by the manager with a forwarding
    /// ticket for the peer. A refusal is thrown as a `GridError` with the manager's code.
    public var grantSource: PeerLink.GrantSource {
        { [self] worker in
            let signer = PeerTrust.Signer()
            do {
                return PeerTrust.Pass(grant: try await peerGrant(key: signer.publicKey, worker: worker), signer: signer)
            } catch let failure as Failure {
                throw GridError(GridError.Code(failure.code), "the manager granted no session at peer \(worker): \(failure.message)")
            }
        }
    }

    public func ledgerCheck() async throws -> [String: JSONValue] { try await send(.GET, "/api/v1/admin/ledger-check") }

    /// An admin lifts a worker's quarantine (verification).
    public func liftQuarantine(worker: WorkerID) async throws -> API.WorkerInfo {
        let escaped = worker.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? worker
        return try await send(.POST, "/api/v1/admin/workers/\(escaped)/lift-quarantine", body: Optional<API.Me>.none)
    }

    // MARK: - Transport

    func send<T: Decodable>(_ method: HTTPMethod, _ path: String) async throws -> T {
        try await send(method, path, body: Optional<API.Me>.none)
    }

    func send<T: Decodable, B: Encodable>(_ method: HTTPMethod, _ path: String, body: B?) async throws -> T {
        let data = try body.map { try GridJSON.encode($0) }
        return try decode(T.self, try await raw(method, path, body: data), path: path)
    }

    private func decode<T: Decodable>(_ type: T.Type, _ bytes: Data, path: String) throws -> T {
        do {
            return try GridJSON.decode(T.self, from: bytes)
        } catch {
            throw Failure(status: 0, code: "bad_response", message: "the manager's answer to \(path) could not be read: \(error)")
        }
    }

    /// `idempotent`: a write the manager deduplicates (it carries a key), so it may be sent again after an answer
    /// was lost, like a read.
    func raw(
        _ method: HTTPMethod, _ path: String, body: Data?, headers: [(String, String)] = [], idempotent: Bool = false
    ) async throws -> Data {
        let urls = managers
        var plan = ManagerFailover(count: urls.count, safe: idempotent || method == .GET || method == .HEAD)
        var index = 0
        while true {
            do {
                if urls.count > 1, !(await ManagerProbe.accepts(urls[index])) {
                    var failure = Failure(status: 0, code: "unreachable", message: "cannot reach the manager at \(urls[index]); is it running?")
                    failure.nothingSent = true
                    throw failure
                }
                return try await raw(at: urls[index], method, path, body: body, headers: headers)
            } catch let failure as Failure {
                let next: Int?
                if failure.code == "not_leader" {
                    next = plan.notLeader(at: index, leader: failure.leader.flatMap { leader in urls.firstIndex(of: Self.normalise(leader)) })
                } else if failure.status == 0 && failure.code == "unreachable" {
                    next = plan.unreachable(at: index, nothingSent: failure.nothingSent)
                } else {
                    next = nil
                }
                guard let next else { throw failure }
                index = next
            }
        }
    }

    private func raw(at base: String, _ method: HTTPMethod, _ path: String, body: Data?, headers: [(String, String)]) async throws -> Data {
        if let why = Self.plaintextRefusal(base, allowsPlaintext: allowsPlaintext) {
            var failure = Failure(status: 0, code: "unauthorized", message: why)
            failure.nothingSent = true
            throw failure
        }
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: body))
        }
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: .seconds(60))
        } catch let error as NIOSSLError {
            // The handshake failed: nothing was sent, and trying again cannot help until the user says whom to trust.
            var failure = Failure(status: 0, code: "unreachable", message: Self.handshakeFailureMessage(base, error, caGiven: caCertificatePEM != nil))
            failure.nothingSent = true
            throw failure
        } catch {
            var failure = Failure(
                status: 0, code: "unreachable",
                message: "cannot reach the manager at \(base) (\(error)); is it running? Start a local grid with `campusgrid up`")
            // A refused connection sent nothing: even a write may go to the next manager.
            failure.nothingSent = "\(error)".contains("refused") || (error as? HTTPClientError) == .connectTimeout
            throw failure
        }
        let data = Data(buffer: try await Self.body(of: response, from: base))
        guard (200..<300).contains(response.status.code) else {
            if let e = try? GridJSON.decode(API.ErrorBody.self, from: data) {
                var failure = Failure(status: Int(response.status.code), code: e.error.code, message: e.error.message)
                if e.error.code == "not_leader" { failure.leader = try? GridJSON.decode(NotLeaderBody.self, from: data).leader }
                throw failure
            }
            throw Failure(status: Int(response.status.code), code: "http_\(response.status.code)", message: "the manager answered \(response.status)")
        }
        return data
    }
}

extension GridClient {
    /// A reply's body may pause this long between bytes, and take `bodyTotalSeconds` in all (a reply trickled a byte a
    /// minute would pass any idle bound): then the command fails saying so, rather than wait for ever.
    static let bodyIdleSeconds: Int64 = 60
    static let bodyTotalSeconds: Int64 = 600

    static func body(of response: HTTPClientResponse, from base: String) async throws -> ByteBuffer {
        try await withThrowingTaskGroup(of: ByteBuffer?.self) { group in
            group.addTask {
                do {
                    return try await response.body.collect(upTo: 256 << 20)
                } catch let error as NIOTooManyBytesError {
                    throw Failure(status: 0, code: "malformed_message", message: "the manager at \(base) sent over 256 MiB in one answer (\(error)); stopped")
                } catch let error as HTTPClientError where error == .readTimeout {
                    throw Failure(status: 0, code: "timeout", message: "the manager at \(base) stopped sending its answer for \(bodyIdleSeconds) s; stopped")
                }
            }
            group.addTask {
                try await Task.sleep(for: .seconds(bodyTotalSeconds))
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let body = first else {
                throw Failure(status: 0, code: "timeout", message: "the manager at \(base) took over \(bodyTotalSeconds) s to send its answer; stopped")
            }
            return body
        }
    }
}

extension GridClient {
    /// What a user reads when the TLS handshake with a manager fails: a certificate this client does not trust, or
    /// something that is not a TLS manager at all (an `https://` URL for a manager without `--tls`).
    static func handshakeFailureMessage(_ base: String, _ error: NIOSSLError, caGiven: Bool) -> String {
        guard "\(error)".contains("CERTIFICATE_VERIFY_FAILED") else {
            return "the TLS handshake with the manager at \(base) failed (\(error)). Is it a manager started with --tls? "
                + "A manager without TLS takes an http:// URL"
        }
        let how =
            caGiven
            ? "the CA this client was given (--ca, CAMPUSGRID_CA or the one `login` stored) did not issue it"
            : "no CA was given, and the system's roots do not know the grid's own CA"
        return "the manager at \(base) presented a certificate this client does not trust: \(how) (CERTIFICATE_VERIFY_FAILED). "
            + "Pass --ca with the grid's CA (the manager keeps it as ca.pem in its data folder), or run `campusgrid login`, "
            + "which shows the CA's fingerprint and trusts it from then on"
    }
}

/// The HTTP clients of this process: one that trusts the system's roots (nil), and one per grid CA that trusts only
/// that CA; each made once.
///
/// None retries a failed connection: AsyncHTTPClient's pool would try again with backoff until the request's
/// deadline, so a manager that is down, or a certificate that is not trusted, kept a CLI command waiting a whole
/// minute before it said so. The grid's own failover (`ManagerFailover`) decides where to try next.
enum TrustedClients {
    private static let clients = Mutex<[String?: HTTPClient]>([:])

    static func client(caPEM: String?) throws -> HTTPClient {
        try clients.withLock { map in
            if let c = map[caPEM] { return c }
            var tls = TLSConfiguration.makeClientConfiguration()
            if let caPEM {
                tls.minimumTLSVersion = .tlsv13
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8)))
                tls.certificateVerification = .noHostnameVerification
            }
            var config = HTTPClient.Configuration()
            config.tlsConfiguration = tls
            config.connectionPool.retryConnectionEstablishment = false
            config.timeout.connect = .seconds(10)
            // A reply that stops coming ends the command (the request's own deadline ends at the reply's head).
            config.timeout.read = .seconds(GridClient.bodyIdleSeconds)
            // The API never redirects: a redirect would take a request (a login's password) to a host the user never
            // named, maybe in plain text.
            config.redirectConfiguration = .disallow
            let c = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
            map[caPEM] = c
            return c
        }
    }
}
