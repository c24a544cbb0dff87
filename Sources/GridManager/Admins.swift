import Foundation
import GridCore

/// Who may use the admin routes (`/api/v1/admin/…`, `campusgrid admin …`): the first account ever registered, and
/// every username named by `manager --admin USER`. Everyone else gets 403.
struct Admins: Sendable, Hashable {
    /// Usernames named by the operator, lowercased (usernames are unique regardless of case).
    let named: Set<String>

    init(named: [String]) {
        self.named = Set(named.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }.filter { !$0.isEmpty })
    }

    /// Whether the account `id`/`username` is an admin, given the id of the first account (nil: none yet).
    func includes(id: UserID, username: String, firstUserId: UserID?) -> Bool {
        id == firstUserId || named.contains(username.lowercased())
    }

    /// Why `username` may not be registered from `client` (an address), or nil: a name the operator made an admin
    /// (`--admin`) before its account existed is kept for that operator, who registers it on the manager's own machine.
    /// From anywhere else, whoever came first would have had the admin routes. (Behind a reverse proxy on that machine
    /// every client is loopback: register the name before opening the grid.) A connection with no IP address at all
    /// (`"?"`: not TCP, such as a Unix socket or a router driven in process) is this machine's too.
    func registrationRefusal(username: String, client: String) -> GridError? {
        let name = username.trimmingCharacters(in: .whitespaces).lowercased()
        guard named.contains(name), client != "?", !RateLimit.isLoopback(client) else { return nil }
        return GridError(
            .forbidden,
            "the name \(name) is kept for an admin of this grid (`campusgrid manager --admin \(name)`): register it on the manager's own machine")
    }

    /// The refusal for `username`, who is not an admin.
    static func refusal(_ username: String) -> GridError {
        GridError(
            .forbidden,
            "\(username) is not an admin of this grid; admins are the first account registered and those named by `campusgrid manager --admin USER`")
    }
}
