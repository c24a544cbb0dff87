import ArgumentParser
import Foundation
import GridClient
import GridCore

struct Register: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create an account (starts with 100 credits) and log in.")
    @OptionGroup var options: ClientOptions
    @Option(help: "The username to create.") var username: String
    @Flag(help: "Read the password from standard input instead of a prompt.") var passwordStdin = false

    func run() async throws {
        try await CampusGrid.run {
            let password = try readPassword(stdin: passwordStdin, confirm: true)
            try await options.settleTrust()
            let client = try options.client(needsToken: false)
            let answer = try await client.register(username, password: password)
            try CredentialStore.save(answer.token, for: client.baseURL)
            try options.output(answer) { say("Registered \(answer.username) and logged in to \(client.baseURL).") }
        }
    }
}

struct Login: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Log in and store an API token in ~/.config/campusgrid/.")
    @OptionGroup var options: ClientOptions
    @Option(help: "Your username.") var username: String
    @Flag(help: "Read the password from standard input instead of a prompt.") var passwordStdin = false

    func run() async throws {
        try await CampusGrid.run {
            let password = try readPassword(stdin: passwordStdin)
            try await options.settleTrust()
            let client = try options.client(needsToken: false)
            let answer = try await client.login(username, password: password)
            try CredentialStore.save(answer.token, for: client.baseURL)
            try options.output(answer) { say("Logged in to \(client.baseURL) as \(answer.username).") }
        }
    }
}

struct Logout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Revoke the stored token and forget it.")
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await CampusGrid.run {
            let client = try options.client()
            // Forgotten only once the manager has revoked it: a token forgotten here but valid there could not be
            // revoked by running logout again.
            do {
                try await client.logout()
            } catch {
                throw GridError(
                    .unreachable,
                    "the manager did not revoke the token (\(error)); it is still valid, and still stored here: run `campusgrid logout` again")
            }
            // Only the token revoked is forgotten (one from --token or CAMPUSGRID_TOKEN leaves the stored ones alone).
            for url in client.managers where CredentialStore.token(for: url) == client.token {
                try CredentialStore.save(nil, for: url)
                try PeerPassStore.forget(url)
            }
            try options.output(["logged_out": true]) { say("Logged out of \(client.baseURL).") }
        }
    }
}

struct WhoAmI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "whoami", abstract: "Show who you are logged in as, and your balance.")
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await CampusGrid.run {
            let me = try await options.client().me()
            try options.output(me) { say("\(me.username) (balance \(me.balance) credits)") }
        }
    }
}

struct Credits: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Your balance and ledger history.")
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await CampusGrid.run {
            let c = try await options.client().credits()
            try options.output(c) {
                say("Balance: \(c.balance) credits   held for running jobs: \(c.held)   earned by your workers: \(c.earned)")
                let rows = c.ledger.map { r in
                    [When.format(r.at), (r.amount > 0 ? "+" : "") + String(r.amount), r.reason, r.jobId.map { "job \($0)" } ?? "", r.counterparty]
                }
                say(Table.render(["TIME", "AMOUNT", "REASON", "JOB", "ACCOUNT"], rows))
            }
        }
    }
}

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "token", abstract: "Create tokens.", subcommands: [Create.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a worker join token (workers earn for you) or an API token.")
        @OptionGroup var options: ClientOptions
        @Flag(help: "A worker join token (the default).") var worker = false
        @Flag(help: "An API token for scripts.") var api = false

        func run() async throws {
            try await CampusGrid.run {
                let t = try await options.client().createToken(kind: api ? "api" : "worker")
                try options.output(t) {
                    // The join string pins the manager's CA (TLS); a manager on plain-text loopback has none.
                    say(t.join ?? t.token)
                    if t.kind == "worker" {
                        complain(
                            "Save it in a file only you can read and start a worker with it (it only joins workers): "
                                + "(umask 077; campusgrid token create --worker > join-token) && campusgrid worker -m MANAGER_HOST --token-file join-token")
                    }
                }
            }
        }
    }
}

struct Admin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Checks for the people who run the manager.", subcommands: [CheckLedger.self, LiftQuarantine.self])

    struct LiftQuarantine: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "lift-quarantine", abstract: "Let a worker quarantined by verification take other users' jobs again.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The worker's id (see `campusgrid workers --json`).") var worker: String

        func run() async throws {
            try await CampusGrid.run {
                let info = try await options.client().liftQuarantine(worker: worker)
                try options.output(info) { say("Quarantine of worker \(info.name) (\(info.id)) lifted; it takes other users' jobs again.") }
            }
        }
    }

    struct CheckLedger: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check-ledger", abstract: "Check that all balances add up to the credits minted by sign-ups.")
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await CampusGrid.run {
                let c = try await options.client().ledgerCheck()
                let ok = c["ok"] == .bool(true)
                try options.output(c) {
                    say(
                        ok
                            ? "Ledger OK: \(c["minted"].map { "\($0)" } ?? "?") minted, all accounted for"
                                + " (holds \(c["holds"].map { "\($0)" } ?? "?"), escrow \(c["escrow"].map { "\($0)" } ?? "?"),"
                                + " verification fund \(c["fund"].map { "\($0)" } ?? "?"))."
                            : "Ledger MISMATCH: \(c)")
                }
                if !ok { throw ExitCode(1) }
            }
        }
    }
}

extension CampusGrid {
    static func run(_ body: () async throws -> Void) async throws { try await campusgrid.run(body) }
}
