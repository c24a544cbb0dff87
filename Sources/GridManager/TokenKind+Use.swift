import GridCore
import GridStore

/// The rule that keeps the two kinds of token apart: a worker join token only joins workers (`HELLO` on the grid
/// port); an API token (from `login`, `register`, `token create --api` or a dashboard session) only acts as its person
/// (the REST API and the dashboard). A join token sits on a worker's command line or in its data folder, so whoever
/// can read it must not get the account with it.
extension TokenKind {
    /// What a token is presented for.
    enum Use: Sendable, CaseIterable {
        /// Acting as a person: every REST route and dashboard page that takes a bearer token or a session.
        case person
        /// Joining a worker: `HELLO` on the manager's grid port.
        case joinWorker
    }

    /// Why a token of this kind cannot be used for `use`, or nil when it can. The message names the kind and says
    /// which token to use instead.
    func refusal(for use: Use) -> GridError? {
        switch (self, use) {
        case (.api, .person), (.session, .person), (.worker, .joinWorker):
            nil
        case (.worker, .person):
            GridError(.unauthorized, "this is a worker join token; it only joins workers — use an API token from `campusgrid login`")
        case (.api, .joinWorker):
            GridError(.unauthorized, "this is an API token; workers join with a worker join token (`campusgrid token create --worker`)")
        case (.session, .joinWorker):
            GridError(.unauthorized, "this is a dashboard session; workers join with a worker join token (`campusgrid token create --worker`)")
        }
    }
}
