import ArgumentParser
import Foundation
import GridClient
import GridCore
import GridProtocol

/// Options of the seed 003 client commands: which peer to talk to, and as whom.
struct PeerOptions: ParsableArguments {
    @Option(help: "The peer's address.") var host = "127.0.0.1"
    @Option(help: "The peer's port (a worker's peer port; `campusgrid up` prints them).") var port = 9000
    @Option(help: "API token (env CAMPUSGRID_TOKEN; else the one `login` stored for --manager).") var token: String?
    @Option(help: "The manager whose stored login to use (env CAMPUSGRID_MANAGER; default http://127.0.0.1:5000).") var manager: String?
    @Flag(help: "Print the peer's whole answer as JSON.") var json = false
    @Option(help: "The manager's CA certificate (PEM; env CAMPUSGRID_CA; the manager keeps it as ca.pem): speak TLS to the peer, and trust it only with a certificate from the grid's peer CA, which that manager names. The peer CA itself (peer-ca.pem) is taken as it is.")
    var ca: String?
    @Flag(help: "Allow plain text to a peer beyond loopback (your data crosses the network unencrypted; your token never goes to a peer), and to an http:// manager beyond loopback (env CAMPUSGRID_INSECURE_PLAINTEXT=1).")
    var insecurePlaintext = false

    /// `--insecure-plaintext`, or its environment variable: one rule for the peer and the manager.
    var plaintext: Bool { insecurePlaintext || Env.string("CAMPUSGRID_INSECURE_PLAINTEXT") == "1" }

    /// A link to the peer, opened with this client's certificate (the user's token goes only to the manager).
    /// `delegate`: the command reads the user's data, which the peer may then fetch from other peers for ten minutes.
    /// `write`: the command writes the user's data, which the peer then seals with the user's write grant for an hour.
    func link(delegate: Bool = false, write: Bool = false, forwards: Bool = false) async throws -> PeerLink {
        try await link(host: host, port: port, delegate: delegate, write: write, forwards: forwards)
    }

    /// How long a peer the CLI reads through may read the user's data from other peers (`PeerTrust.Delegation`).
    static let delegationSeconds: Int64 = 600

    /// A link to the peer at `host:port` (this one, or another the manager named): TLS with `--ca`; plain text only on
    /// loopback, or beyond it with `--insecure-plaintext`. The peer first proves which worker it is; the manager then
    /// grants tickets for one session there, which the peer is shown in place of the API token (`PeerLink.connect`).
    /// `forwards`: the session gives the peer the user's forwarding ticket (`PeerPassStore.source`): a plain `cpu` task only.
    /// `expecting`: the worker meant (`PeerLink.connect`).
    func link(host: String, port: Int, delegate: Bool = false, write: Bool = false, forwards: Bool = false, expecting: String? = nil) async throws -> PeerLink {
        guard (1...65535).contains(port) else { throw ValidationError("--port must be 1–65535") }
        let manager = try managerClient()
        var tls: PeerTLS?
        if let path = ca ?? Env.string("CAMPUSGRID_CA") {
            guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read the CA file \(path)") }
            tls = try PeerTLS(caPEM: try await Self.peerAuthority(given: String(decoding: data, as: UTF8.self), manager: manager))
        } else if manager.baseURL.hasPrefix("https://"), let stored = manager.caCertificatePEM {
            // The manager's CA trusted at `login` (first use): that manager names the peer CA.
            tls = try PeerTLS(caPEM: try await Self.peerAuthority(given: stored, manager: manager))
        } else if !TransportChoice.isLoopback(host) && !plaintext {
            throw ValidationError(
                "the peer at \(host) is beyond loopback: pass --ca with the grid's CA (the manager's ca.pem) so the link is encrypted "
                    + "and the peer verified, or --insecure-plaintext to let your data cross the network in clear text")
        }
        do {
            return try await PeerLink.connect(
                host: host, port: port,
                grant: PeerPassStore.source(
                    manager: manager, delegationSeconds: delegate ? Self.delegationSeconds : nil, writeSeconds: write ? PeerTrust.writeGrantSeconds : nil,
                    forwards: forwards),
                tls: tls, expecting: expecting)
        } catch let e as GridError where tls == nil && ![.unauthorized, .forbidden, .notAuthenticated, .notFound].contains(e.code) {
            // A TLS peer port answers a plain-text HELLO with a TLS alert (not a line) or nothing at all.
            throw GridError(e.code, "\(e.message) (if the grid speaks TLS, pass --ca with its CA, the manager's ca.pem)")
        }
    }

    /// The CA to trust peer ports with: `pem` when it is the grid's peer CA, else (the manager's CA) the peer CA the
    /// manager names, asked over TLS trusting `pem`. Never the manager's CA itself: a worker's peer certificate is not
    /// the manager's, and the manager's certificate is not a peer's.
    static func peerAuthority(given pem: String, manager: GridClient) async throws -> String {
        if ManagerTrust.isPeerAuthority(pem: pem) { return pem }
        do {
            var asked = manager
            asked.caCertificatePEM = pem
            return try await asked.peerAuthority()
        } catch {
            throw GridError(
                .unreachable,
                "could not get the grid's peer CA from the manager at \(manager.baseURL) (\(error)); pass --ca with the peer CA itself "
                    + "(peer-ca.pem in the manager's data folder)")
        }
    }

    /// A client of the manager, with the user's token: it grants the tickets for peers. Trusted with `--ca` when that
    /// is the manager's CA, else with the CA trusted at `login` (a peer CA given to `--ca` vouches for peers only).
    func managerClient() throws -> GridClient {
        let listed = GridClient(managers: ClientOptions.plainWhenAllowed(manager ?? Env.string("CAMPUSGRID_MANAGER") ?? "http://127.0.0.1:5000", plaintext))
        guard let t = token ?? Env.string("CAMPUSGRID_TOKEN") ?? listed.managers.lazy.compactMap({ CredentialStore.token(for: $0) }).first else {
            throw ValidationError("not logged in to \(listed.baseURL); run `campusgrid login` (or set CAMPUSGRID_TOKEN)")
        }
        var given: String?
        var peerCAGiven = false
        if let path = ca ?? Env.string("CAMPUSGRID_CA"), let data = FileManager.default.contents(atPath: path) {
            let pem = String(decoding: data, as: UTF8.self)
            peerCAGiven = ManagerTrust.isPeerAuthority(pem: pem)
            if !peerCAGiven { given = pem }
        }
        if token != nil { complain(ClientOptions.tokenOnCommandLine) }
        var client = listed
        client.token = t
        // `--insecure-plaintext` lets the user's data cross to the peer in clear text; the token too, to the manager.
        client.allowsPlaintext = plaintext
        if plaintext, let why = GridClient.plaintextRefusal(client.baseURL, allowsPlaintext: false) {
            complain("WARNING: " + why.replacingOccurrences(of: "refusing to send", with: "sending") + " (--insecure-plaintext)")
        }
        client.caCertificatePEM = given ?? listed.managers.lazy.compactMap({ TrustStore.pem(for: $0) }).first
        if peerCAGiven, client.caCertificatePEM == nil, client.baseURL.hasPrefix("https://") {
            throw ValidationError(
                "--ca names the grid's peer CA, which vouches for peers only; the manager, which grants your session at the peer, "
                    + "is trusted with its own CA: pass its ca.pem with --ca, or run `campusgrid login` first")
        }
        return client
    }

    /// Sends one request on a fresh link and returns the part of the answer `extract` takes out; the link is always
    /// closed, and an answer of another kind is an error naming what was expected (a peer `ERROR` is thrown as itself).
    func ask<T>(
        _ message: GridMessage, timeout: Double = 120, expecting what: String, _ extract: (GridMessage) -> T?
    ) async throws -> T {
        let link = try await link(delegate: Self.reads(message), write: Self.writes(message), forwards: Self.forwards(message))
        do {
            let reply = try await link.request(message, timeout: timeout)
            await link.close()
            guard let value = extract(reply.message) else {
                throw GridError(.badRequest, "the peer answered \(reply.message.type) where \(what) was expected")
            }
            return value
        } catch {
            await link.close()
            throw error
        }
    }

    /// Whether `message` writes the user's data (the peer seals it with the user's write grant).
    static func writes(_ message: GridMessage) -> Bool {
        switch message {
        case .setMem, .delMem, .putFile, .putFileChunk, .putFileEnd, .deleteFile: true
        default: false
        }
    }

    /// Whether the peer asked may hand `message` on to another peer as the user (it needs the forwarding ticket): a
    /// function task that is not confidential, and nothing else.
    static func forwards(_ message: GridMessage) -> Bool {
        if case .cpuTask(let task) = message { return task.confidential != true }
        return false
    }

    /// Whether `message` reads the user's data (which may be held by other peers than the one asked).
    static func reads(_ message: GridMessage) -> Bool {
        switch message {
        case .getMem, .delMem, .listMem, .getFile, .getFileChunk, .listFiles, .deleteFile: true
        default: false
        }
    }

    func printJSON<T: Encodable>(_ value: T) throws {
        sayJSON(String(decoding: try GridJSON.encode(value), as: UTF8.self))
    }
}

/// A JSON value as the seed's client prints it: strings bare, whole numbers without a decimal point.
func render(_ value: JSONValue?) -> String {
    switch value {
    case nil, .null?: return "None"
    case .string(let s)?: return s
    case let v?: return String(decoding: (try? GridJSON.encode(v)) ?? Data(), as: UTF8.self)
    }
}

/// Parses `--args`/`--value`: JSON if it is JSON, else nil.
func parseJSON(_ text: String) -> JSONValue? {
    try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
}

struct CPUCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cpu", abstract: "Run a Python function on the least-loaded peer (or, with --confidential, on this peer only).")

    @OptionGroup var peer: PeerOptions
    @Option(help: "Python source that defines the function.") var program: String
    @Option(help: "The function to call.") var function = "main"
    @Option(help: "Arguments: a JSON or Python list (spread), object (keywords) or single value.") var args = "[]"
    @Flag(help: "Run only on the peer at --port; the manager never hears of the task.") var confidential = false
    @Flag(help: "Run the task on two peers of different owners and print the result only if they agree.") var verify = false
    @Option(help: "Seconds before the task is stopped (default 30).") var timeout: Double?
    @Option(help: "Priority (higher first).") var priority: Int?
    @Option(help: "A requirements file of Python packages the function needs.") var requirements: String?
    @Option(help: "A Python package the function needs, as pip names it (repeatable); PEP 723 metadata in the program counts too.")
    var pip: [String] = []

    func run() async throws {
        try await GridCLI.run {
            // A peer takes at most 600 s; said here, before anything is sent (a huge one trapped in the request's label).
            if let timeout, !(timeout.isFinite && timeout > 0 && timeout <= 600) {
                throw ValidationError("--timeout must be more than 0 and at most 600 seconds (got \(timeout))")
            }
            let parsed = parseJSON(args)
            let packages = try declaredPackages(file: requirements, pip: pip, script: program)
            let task = Msg.CPUTask(
                taskId: "t-" + UUID().uuidString.prefix(12).lowercased(), program: program, function: function, args: parsed,
                argsLiteral: parsed == nil ? args : nil, confidential: confidential, timeout: timeout, priority: priority,
                requirements: packages.lines.isEmpty ? nil : packages.lines)
            let wait = (timeout ?? 30) + 90
            if verify {
                guard !confidential else { throw ValidationError("--verify runs the task on two peers; --confidential keeps it on one") }
                try await VerifiedTask(options: peer, task: task, timeout: wait).run()
                return
            }
            let r = try await peer.ask(.cpuTask(task), timeout: wait, expecting: "CPU_RESULT") {
                if case .cpuResult(let r) = $0 { r } else { nil }
            }
            if peer.json { try peer.printJSON(r) }
            if let output = r.output, !output.isEmpty, !peer.json { writeOutput(output, to: .standardError) }
            guard r.ok else {
                if !peer.json {
                    // The peer's words on one line: a message with a newline printed a forged `Result:` line after it.
                    complain("Error (\(TerminalText.field(r.error ?? "failed"))): \(TerminalText.field(r.message ?? "", maxCharacters: 2_000))")
                    // Indented, each line: a traceback (the peer's text) cannot pass for the command's own `Result:` line.
                    if let tb = r.traceback, r.error == "exception" {
                        complain(tb.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + TerminalText.field($0, maxCharacters: 2_000) }.joined(separator: "\n"))
                    }
                }
                throw ExitCode(1)
            }
            if !peer.json { sayData("Result: \(render(r.result))") }
        }
    }
}

struct SetMemCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set-mem", abstract: "Store a value in the grid's distributed memory.")
    @OptionGroup var peer: PeerOptions
    @Option(help: "The key.") var key: String
    @Option(help: "The value (JSON if it parses as JSON, else a string).") var value: String
    @Flag(name: .customLong("public"), help: "Publish it read-only to every user (only you may change or delete it).") var isPublic = false

    func run() async throws {
        try await GridCLI.run {
            let r = try await peer.ask(.setMem(Msg.SetMem(key: key, value: parseJSON(value) ?? .string(value), isPublic: isPublic ? true : nil)), expecting: "MEM_RESULT") {
                if case .memResult(let r) = $0 { r } else { nil }
            }
            if peer.json { try peer.printJSON(r) } else { say("Stored \(key) (on \(r.owners.joined(separator: ", ")))") }
        }
    }
}

struct GetMemCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get-mem", abstract: "Read a value from the grid's distributed memory.")
    @OptionGroup var peer: PeerOptions
    @Option(help: "The key.") var key: String

    func run() async throws {
        try await GridCLI.run {
            let r = try await peer.ask(.getMem(Msg.MemKey(key: key)), expecting: "MEM_RESULT") {
                if case .memResult(let r) = $0 { r } else { nil }
            }
            if peer.json { try peer.printJSON(r) } else { sayData("Memory value: \(render(r.value))") }
            if let publisher = r.publishedBy { complain(PublicStandIn.note(key, publishedBy: publisher, kind: "value")) }
        }
    }
}

struct DelMemCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "del-mem", abstract: "Delete a key from the distributed memory.")
    @OptionGroup var peer: PeerOptions
    @Option(help: "The key.") var key: String

    func run() async throws {
        try await GridCLI.run {
            let link = try await peer.link(delegate: true, write: true)
            _ = try await link.request(.delMem(Msg.MemKey(key: key)))
            await link.close()
            say("Deleted \(key)")
        }
    }
}

struct ListMemCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list-mem", abstract: "List the distributed memory's keys.")
    @OptionGroup var peer: PeerOptions
    @Option(help: "Only keys starting with this.") var prefix = ""

    func run() async throws {
        try await GridCLI.run {
            let r = try await peer.ask(.listMem(Msg.ListMem(prefix: prefix)), expecting: "MEM_KEYS") {
                if case .memKeys(let r) = $0 { r } else { nil }
            }
            if peer.json { try peer.printJSON(r) } else { for k in r.keys { sayData(k) } }
            if r.truncated == true, !peer.json { complain("(more keys than one answer holds: these are the first \(r.keys.count); list under a longer --prefix)") }
        }
    }
}

struct PutFileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "put-file", abstract: "Store a file in the grid (chunked, replicated).")
    @OptionGroup var peer: PeerOptions
    @Option(help: "The name to store it under.") var filename: String
    @Option(help: "The local file to upload.") var filepath: String
    @Flag(name: .customLong("public"), help: "Publish it read-only to every user (only you may replace or delete it).") var isPublic = false

    func run() async throws {
        try await GridCLI.run {
            let link = try await peer.link(write: true)
            let m = try await link.upload(path: filepath, as: filename, isPublic: isPublic)
            await link.close()
            if peer.json { try peer.printJSON(m) } else { say("Stored \(m.filename) (\(m.size) bytes, sha256 \(m.sha256))") }
        }
    }
}

struct GetFileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get-file", abstract: "Download a file stored in the grid.")
    @OptionGroup var peer: PeerOptions
    @Option(help: "The stored file's name.") var filename: String
    @Option(help: "Where to save it.") var save: String

    func run() async throws {
        try await GridCLI.run {
            let link = try await peer.link(delegate: true)
            let info = try await link.download(filename, to: save)
            await link.close()
            if peer.json { try peer.printJSON(info) } else { say("Saved \(info.filename) to \(save) (\(info.size) bytes)") }
            if let publisher = info.publishedBy { complain(PublicStandIn.note(filename, publishedBy: publisher, kind: "file")) }
        }
    }
}

struct ListFilesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list-files", abstract: "List the files stored in the grid.")
    @OptionGroup var peer: PeerOptions
    @Option(help: "Only names starting with this.") var prefix = ""

    func run() async throws {
        try await GridCLI.run {
            let r = try await peer.ask(.listFiles(Msg.ListFiles(prefix: prefix)), expecting: "FILE_LIST") {
                if case .fileList(let r) = $0 { r } else { nil }
            }
            if peer.json { try peer.printJSON(r) } else { for f in r.files { sayData("\(f.filename)\t\(f.size)\t\(f.sha256)") } }
            if r.truncated == true, !peer.json { complain("(more files than one answer holds: these are the first \(r.files.count); list under a longer --prefix)") }
        }
    }
}

struct DeleteFileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete-file", abstract: "Delete a file stored in the grid.")
    @OptionGroup var peer: PeerOptions
    @Option(help: "The stored file's name.") var filename: String

    func run() async throws {
        try await GridCLI.run {
            let link = try await peer.link(delegate: true, write: true)
            _ = try await link.request(.deleteFile(Msg.FileRef(filename: filename)))
            await link.close()
            say("Deleted \(filename)")
        }
    }
}

enum GridCLI {
    /// Runs a peer command: grid errors become one line on standard error and exit status 2.
    static func run(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let e as GridError {
            complain("error: \(e.message)")
            throw ExitCode(2)
        }
    }
}

/// What a read says when the public item of a name answered it: the reader has none of their own of that name, and
/// another user published this one (first come, first served), so it is said, never taken silently for theirs.
enum PublicStandIn {
    static func note(_ name: String, publishedBy: String, kind: String) -> String {
        "note: you store no \(kind) named \(TerminalText.field(name, maxCharacters: 256)); this is the public one, published by \(TerminalText.field(publishedBy))"
    }
}
