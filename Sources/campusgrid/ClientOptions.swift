import ArgumentParser
import Foundation
import GridClient
import GridCore
import GridProtocol

/// Options every client command takes.
struct ClientOptions: ParsableArguments {
    @Option(help: "The manager's URL, or every manager of the grid, URL,URL,… (env CAMPUSGRID_MANAGER; default http://127.0.0.1:5000).")
    var manager: String?

    @Option(help: "API token (env CAMPUSGRID_TOKEN; else the one stored by `login`).")
    var token: String?

    @Flag(help: "Print JSON for scripts instead of text.")
    var json = false

    @Option(help: "The manager's CA certificate (PEM; env CAMPUSGRID_CA): an https manager is trusted only if this CA issued its certificate. The manager keeps it as ca.pem in its data folder.")
    var ca: String?

    @Flag(help: "Send your token and password in plain text to an http:// manager beyond loopback (one started with --insecure-plaintext; env CAMPUSGRID_INSECURE_PLAINTEXT=1). Refused otherwise.")
    var insecurePlaintext = false

    /// `--insecure-plaintext`, or its environment variable.
    var allowsPlaintext: Bool { insecurePlaintext || Env.string("CAMPUSGRID_INSECURE_PLAINTEXT") == "1" }

    /// The CA file's text, when one was given, else the CA trusted on first use for this manager (`login`).
    func caPEM() throws -> String? {
        guard let path = ca ?? Env.string("CAMPUSGRID_CA") else {
            return GridClient(managers: managerURL).managers.lazy.compactMap { TrustStore.pem(for: $0) }.first
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read the CA file \(path)") }
        return String(decoding: data, as: UTF8.self)
    }

    var managerURL: String { Self.plainWhenAllowed(manager ?? Env.string("CAMPUSGRID_MANAGER") ?? "http://127.0.0.1:5000", allowsPlaintext) }

    /// A bare `HOST:PORT` means `https://` beyond loopback (`GridClient.normalise`), but `http://` when the user allows
    /// plain text (`--insecure-plaintext`: a manager started with it speaks no TLS).
    static func plainWhenAllowed(_ list: String, _ allowed: Bool) -> String {
        guard allowed else { return list }
        return list.split(separator: ",").map { item in
            let trimmed = item.trimmingCharacters(in: .whitespaces)
            return trimmed.contains("://") || trimmed.isEmpty ? trimmed : "http://" + trimmed
        }.joined(separator: ",")
    }

    /// The first manager of the list: `login` keeps the token (and trust on first use the CA) under it.
    var normalisedURL: String { GridClient(managers: managerURL).baseURL }

    /// Before a password goes to an `https` manager whose CA was not given (`--ca`): trust on first use. The chain it
    /// presents is read in a handshake that sends nothing; a first contact trusts its CA from now on and says which;
    /// a CA other than the one trusted before is refused, loudly, naming both (`FirstUse`).
    func settleTrust() async throws {
        let url = normalisedURL
        guard url.hasPrefix("https://"), ca == nil, Env.string("CAMPUSGRID_CA") == nil, let parts = URLComponents(string: url),
            let host = parts.host
        else { return }
        let chain = try await ManagerProbe.presentedChain(host: host, port: parts.port ?? 443)
        // Only the grid's own shape is trusted on first use: the manager's certificate and the root that signed it,
        // nothing else. Any other chain (an operator's `--tls-cert`, a public or campus CA that signs others too) is
        // checked by the system's roots and the host name, as a browser would: trusting its top would take anyone's
        // certificate for this manager, since the grid's trust checks no names.
        if TrustStore.pem(for: url) == nil, !ManagerTrust.isGridShape(chain) {
            complain(
                "\(url) presents a certificate chain that is not a grid's own CA (an operator's certificate): trusting nothing on first "
                    + "use; the system's roots and the host name must vouch for it (or pass --ca)")
            return
        }
        let trusted = TrustStore.pem(for: url).flatMap { FirstUse.fingerprint(pem: $0) }
        switch FirstUse.decide(trusted: trusted, presented: chain.map { ManagerTrust.fingerprint(der: $0) }) {
        case .same?:
            return
        case .trustNew(let fingerprint)?:
            try TrustStore.save(try ManagerProbe.authority(of: chain).pem, for: url)
            complain(
                "First contact with \(url): it presents the certificate authority \(fingerprint). Trusting it from now on "
                    + "(kept in \(TrustStore.path)). Check it against a join string (TOKEN@sha256:…) or ask the manager's operator.")
        case .changed(let old, let new)?:
            throw GridError(
                .unauthorized,
                """
                WARNING: THE MANAGER'S CERTIFICATE AUTHORITY HAS CHANGED.
                \(url) was trusted with \(old), but now presents \(new).
                Someone may be impersonating it; nothing was sent. If the manager really got a new CA, check the new
                fingerprint with its operator, then remove \(url) from \(TrustStore.path) (or pass --ca FILE).
                """)
        case nil:
            throw GridError(.unreachable, "\(url) presented no certificate")
        }
    }

    static let tokenOnCommandLine =
        "warning: --token puts your API token on the command line, where anyone on this machine sees it with `ps`; "
        + "use `campusgrid login` (it keeps the token in a private file) or CAMPUSGRID_TOKEN instead"

    /// A client with the token from the flag, the environment, or the credentials file.
    func client(needsToken: Bool = true) throws -> GridClient {
        let listed = GridClient(managers: managerURL)
        let url = listed.baseURL
        // Managers of one grid share accounts: a token stored for any manager of the list works on all of them.
        let t = token ?? Env.string("CAMPUSGRID_TOKEN") ?? listed.managers.lazy.compactMap { CredentialStore.token(for: $0) }.first
        if needsToken && t == nil {
            throw ValidationError("not logged in to \(url); run `campusgrid login` (or set CAMPUSGRID_TOKEN)")
        }
        if token != nil { complain(Self.tokenOnCommandLine) }
        var client = GridClient(managers: managerURL, token: t, caCertificatePEM: try caPEM())
        client.token = t
        client.allowsPlaintext = allowsPlaintext
        if allowsPlaintext, let why = GridClient.plaintextRefusal(url, allowsPlaintext: false) {
            complain("WARNING: " + why.replacingOccurrences(of: "refusing to send", with: "sending") + " (--insecure-plaintext)")
        }
        return client
    }

    /// Prints `value` as JSON when `--json` was given, else runs `text`.
    func output<T: Encodable>(_ value: T, text: () -> Void) throws {
        if json {
            let e = GridJSON.encoder()
            e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            sayJSON(String(decoding: try e.encode(value), as: UTF8.self))
        } else {
            text()
        }
    }
}

/// Turns client failures into a clean message and a non-zero exit.
func run(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let failure as GridClient.Failure {
        complain("error: \(failure.message)")
        throw ExitCode(failure.status == 0 ? 3 : 1)
    } catch let error as GridError {
        complain("error: \(error.message)")
        throw ExitCode(2)
    }
}

/// A JSON map of manager URL to text in `$XDG_CONFIG_HOME/campusgrid/` (default `~/.config/...`), folder 0700, file 0600.
struct ConfigMap {
    static var directory: String {
        let base = Env.string("XDG_CONFIG_HOME") ?? (Env.home + "/.config")
        return base + "/campusgrid"
    }

    let file: String
    var path: String { Self.directory + "/" + file }

    func all() -> [String: String] {
        guard let data = FileManager.default.contents(atPath: path), let map = try? JSONDecoder().decode([String: String].self, from: data)
        else { return [:] }
        return map
    }

    func save(_ value: String?, for url: String) throws {
        var map = all()
        map[url] = value
        try PrivateFile.write(try JSONEncoder().encode(map), to: path)
    }
}

/// Where `login` keeps tokens: `credentials.json`, one token per manager URL.
enum CredentialStore {
    static let map = ConfigMap(file: "credentials.json")
    static var directory: String { ConfigMap.directory }
    static var path: String { map.path }
    static func token(for url: String) -> String? { map.all()[url] }
    static func save(_ token: String?, for url: String) throws { try map.save(token, for: url) }
}

/// The CAs trusted on first use, per manager URL: `trusted-cas.json`, PEM each.
enum TrustStore {
    static let map = ConfigMap(file: "trusted-cas.json")
    static var path: String { map.path }
    static func pem(for url: String) -> String? { map.all()[url] }
    static func save(_ pem: String, for url: String) throws { try map.save(pem, for: url) }
}

/// The CLI's key for peers, per manager (`peer-keys.json`): made here, never sent anywhere, and kept with the
/// manager's last grant for it, so that sessions at peers open while no manager is reachable, until the
/// certificate expires (`PeerTrust.userCertificateSeconds`). The API token never goes to a peer.
enum PeerPassStore {
    static let map = ConfigMap(file: "peer-keys.json")

    struct Kept: Codable {
        /// The private key's raw bytes, base64.
        var key: String
        var grant: PeerTrust.Grant?
    }

    static func load(for url: String) -> (signer: PeerTrust.Signer, grant: PeerTrust.Grant?)? {
        guard let text = map.all()[url], let kept = try? GridJSON.decode(Kept.self, from: Data(text.utf8)),
            let raw = Data(base64Encoded: kept.key), let signer = try? PeerTrust.Signer(rawRepresentation: raw)
        else { return nil }
        return (signer, kept.grant)
    }

    /// Forgets the key and grant kept for `url` (`logout`): the next session at a peer starts from a new key.
    static func forget(_ url: String) throws { try map.save(nil, for: url) }

    static func save(signer: PeerTrust.Signer, grant: PeerTrust.Grant, for url: String) throws {
        let kept = Kept(key: signer.rawRepresentation.base64EncodedString(), grant: grant)
        try map.save(String(decoding: try GridJSON.encode(kept), as: UTF8.self), for: url)
    }

    /// Whether a failure to get a grant means no manager is reachable now (rather than a refusal).
    static func isOffline(_ failure: GridClient.Failure) -> Bool {
        ["unreachable", "not_leader", "timeout"].contains(failure.code) || (502...504).contains(failure.status)
    }

    /// The pass for a session at peer `worker`: this client's key with a fresh grant from the manager (kept for next
    /// time), or, while no manager is reachable, with the grant kept, as long as its certificate is valid (and without
    /// a forwarding ticket: with no manager, a peer forwards nothing). `delegationSeconds`: how long the peer may read
    /// the user's data from other peers (nil: not at all); `writeSeconds`, how long it may write it (nil: not at all).
    /// `forwards`: the peer is given the manager's forwarding ticket, which lets it send function tasks to other peers
    /// as this user for 15 minutes: only for a plain `cpu` task, the one thing it forwards. Every session used to carry
    /// it (memory, files, `--confidential`, both peers of `--verify`), so any peer a user read through could run tasks
    /// as them anywhere.
    static func source(manager: GridClient, delegationSeconds: Int64?, writeSeconds: Int64? = nil, forwards: Bool = false) -> PeerLink.GrantSource {
        let url = manager.baseURL
        return { worker in
            let kept = load(for: url)
            let signer = kept?.signer ?? PeerTrust.Signer()
            do {
                var grant = try await manager.peerGrant(key: signer.publicKey, worker: worker)
                try save(signer: signer, grant: grant, for: url)
                if !forwards { grant.forward = nil }
                return PeerTrust.Pass(grant: grant, signer: signer, delegationSeconds: delegationSeconds, writeSeconds: writeSeconds)
            } catch let failure as GridClient.Failure where isOffline(failure) {
                guard var grant = kept?.grant, grant.certificate.expires > Int64(Date().timeIntervalSince1970) else {
                    throw GridError(
                        .unreachable,
                        "\(failure.message); with no manager reachable, a peer takes only a certificate from it that is still valid, "
                            + "and this client has none (it gets one whenever it reaches the manager)")
                }
                grant.forward = nil
                return PeerTrust.Pass(grant: grant, signer: signer, delegationSeconds: delegationSeconds, writeSeconds: writeSeconds)
            } catch let failure as GridClient.Failure {
                throw GridError(GridError.Code(failure.code), "the manager granted no session at peer \(worker): \(failure.message)")
            }
        }
    }
}

/// Plain text tables for people.
enum Table {
    /// Each cell on one line, its controls shown (`TerminalText`): a name with a newline in it would forge a row.
    static func render(_ header: [String], _ rows: [[String]]) -> String {
        let rows = rows.map { $0.map { TerminalText.shown($0, keeping: .none) } }
        var widths = header.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(separator: "  ")
                .trimmingCharacters(in: .whitespaces)
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n")
    }
}

/// Times for people.
enum When {
    static func format(_ t: Double?) -> String {
        guard let t else { return "-" }
        let f = DateFormatter()
        f.dateFormat = "yyyy-MM-dd HH:mm:ss.SSS"
        return f.string(from: Date(timeIntervalSince1970: t))
    }

    static func duration(ms: Int64?) -> String {
        guard let ms else { return "-" }
        if ms < 1000 { return "\(ms) ms" }
        if ms < 60_000 { return String(format: "%.1f s", Double(ms) / 1000) }
        return String(format: "%dm%02ds", ms / 60_000, (ms / 1000) % 60)
    }
}

/// Reads a password: from standard input with `--password-stdin`, else from a prompt without echo.
func readPassword(stdin: Bool, confirm: Bool = false) throws -> String {
    if stdin {
        guard let line = readLine(strippingNewline: true), !line.isEmpty else {
            throw ValidationError("no password on standard input")
        }
        return line
    }
    guard let p = getpass("Password: ") else { throw ValidationError("no password given") }
    let password = String(cString: p)
    if confirm {
        guard let q = getpass("Repeat password: "), String(cString: q) == password else {
            throw ValidationError("the passwords do not match")
        }
    }
    return password
}
