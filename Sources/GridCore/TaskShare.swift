/// Whose share of a peer's function tasks a task runs in (pure): its queue turn and its interpreters. A user's own
/// tasks run in the user's share; a task a peer forwarded for the user runs in a share of that peer's alone, so it
/// neither reads what the user's own tasks left in their interpreters nor answers their later ones, and it waits its
/// own turn. The key is the user's name, then a unit separator (never in a user name) and the forwarding peer's.
public enum TaskShare {
    /// The share of `user`'s tasks, forwarded by `peer` (nil: sent by the user themselves).
    public static func key(user: String, via peer: String?) -> String {
        peer.map { user + "\u{1F}via:" + $0 } ?? user
    }

    /// The person a share belongs to (for a status page): the user, whoever forwarded.
    public static func person(ofKey key: String) -> String {
        key.split(separator: "\u{1F}", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? key
    }
}
