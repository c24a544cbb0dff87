public import GridCore

/// Where a user's memory keys and file names live in the peers' shared key space, and who may do what with them.
///
/// Every stored key starts with a control character that clients cannot type (`PeerNames.validateKey` refuses control
/// characters), so no client key can reach into another namespace:
/// * private: `\u{2}` USER `\u{1e}` KEY (memory) or `\u{2}` USER `\u{1f}` NAME (a file's manifest): only USER sees them;
/// * public: `\u{3}\u{1e}` KEY or `\u{3}\u{1f}` NAME, the value wrapped as `{"owner": USER, "value": …}`: everyone
///   reads them, only the owner changes or deletes them. Public names are first come, first served until deleted.
public enum PeerNamespace {
    public enum Kind: Sendable {
        case memory
        case file

        var mark: String { self == .memory ? "\u{1e}" : "\u{1f}" }
    }

    /// Usernames are 2–32 ASCII letters, digits, `_`, `-`, `.` (the manager's rule); anything else owns nothing.
    public static func isValidUser(_ user: String) -> Bool {
        (1...64).contains(user.utf8.count)
            && user.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-.".unicodeScalars.contains($0)) }
    }

    /// The prefix of `user`'s private keys of `kind` (nil: the public ones).
    public static func prefix(user: String?, kind: Kind) -> String {
        if let user { return "\u{2}" + user + kind.mark }
        return "\u{3}" + kind.mark
    }

    /// The stored key of `name`, private to `user` or (`user` nil) public.
    public static func stored(_ name: String, user: String?, kind: Kind) -> String { prefix(user: user, kind: kind) + name }

    /// The client's name of a stored key under `prefix(user:kind:)`, or nil when it lies elsewhere.
    public static func name(of stored: String, user: String?, kind: Kind) -> String? {
        let p = prefix(user: user, kind: kind)
        return stored.hasPrefix(p) ? String(stored.dropFirst(p.count)) : nil
    }

    /// The user whose private namespace stored key (or prefix) `stored` lies in; nil for a public or malformed one.
    public static func owner(of stored: String) -> String? {
        guard stored.hasPrefix("\u{2}"), let end = stored.unicodeScalars.firstIndex(where: { $0 == "\u{1e}" || $0 == "\u{1f}" }) else { return nil }
        let user = String(stored.unicodeScalars[stored.unicodeScalars.index(after: stored.unicodeScalars.startIndex)..<end])
        return isValidUser(user) ? user : nil
    }

    /// Whether a peer reading for `user` (nil: for nobody) may read stored key (or list prefix) `stored` on another
    /// peer: the public names, and `user`'s own; nothing else, whatever it asks. `files`: a job's read ticket names
    /// the only files of `user`'s it may read (no memory key, no listing).
    public static func mayRead(_ stored: String, for user: String?, files: [String]? = nil) -> Bool {
        for kind in [Kind.memory, .file] where stored.hasPrefix(prefix(user: nil, kind: kind)) { return true }
        guard let user, isValidUser(user) else { return false }
        if let files { return files.contains { self.stored($0, user: user, kind: .file) == stored } }
        return [Kind.memory, .file].contains { stored.hasPrefix(prefix(user: user, kind: $0)) }
    }

    /// Of the stored keys a listing found under a prefix the reader may read (`mayRead`), those it may read each: a
    /// job's read ticket names its files exactly, so a prefix that is one of them lists no longer name (the owner's
    /// other files, `in.txt.secret` beside `in.txt`, with their sizes and hashes). Any other reader reads the whole
    /// prefix.
    public static func listable(_ keys: [String], for user: String?, files: [String]?) -> [String] {
        guard files != nil else { return keys }
        return keys.filter { mayRead($0, for: user, files: files) }
    }

    /// Whether an entry sealed for `user` may be kept under stored key `stored` by a peer (`MEM_SYNC`, a replica read
    /// back), where that peer holds `current` (nil: nothing, or a deletion) and the entry holds `value` (nil: a
    /// deletion). `files`: the entry came under a write ticket, which covers only `user`'s files whose names start
    /// with it. `user`'s own keys; a public name whose value names `user` as its owner, and never one held here by
    /// another. Any other namespace is nobody's. Why not, or nil.
    /// `deletedBy`: the person whose deletion of the name is held here (its seal's), if one is: another person's
    /// deletion does not replace it (see `deletionBars`: it would bar only its own person's copies).
    public static func mayWrite(
        _ stored: String, value: JSONValue?, current: JSONValue?, user: String, files: String? = nil, deletedBy: String? = nil
    ) -> GridError? {
        guard isValidUser(user) else { return GridError(.forbidden, "a memory entry was sealed for no valid user") }
        if let files {
            guard !files.isEmpty else { return GridError(.forbidden, "a write ticket with an empty prefix covers nothing") }
            guard stored.hasPrefix(self.stored(files, user: user, kind: .file)) else {
                return GridError(.forbidden, "a job's write ticket of \(user) covers files named \(String(reflecting: files))…, not this entry")
            }
            return nil
        }
        if let owner = owner(of: stored) {
            return owner == user ? nil : GridError(.forbidden, "an entry sealed for \(user) cannot be kept under \(owner)'s key")
        }
        guard [Kind.memory, .file].contains(where: { stored.hasPrefix(prefix(user: nil, kind: $0)) }) else {
            return GridError(.forbidden, "a memory entry's key lies in no namespace")
        }
        if value == nil, current == nil, let deletedBy, deletedBy != user {
            return GridError(.forbidden, "a public name deleted here by \(deletedBy) cannot be deleted again by \(user)")
        }
        if let value {
            guard let (owner, _) = unwrap(value), owner == user else {
                return GridError(.forbidden, "a public value sealed for \(user) names another owner")
            }
        }
        if let current, unwrap(current)?.owner != user {
            return GridError(.forbidden, "a public name held by another cannot be changed by \(user)")
        }
        return nil
    }

    /// Whether a deletion of stored key `stored` held here, sealed for `deletedBy` (nil: unknown), stands against
    /// `value` by versions. A public name's deletion names no owner, and a peer that held nothing of the name keeps
    /// anyone's (a new owner during churn): it bars only its own person's copies. One sealed for another than the
    /// owner `value` names is a stranger's, and the value takes its place whatever the versions; the owner's own
    /// deletion still bars their stale copies. Private keys, and a deletion whose person is unknown: versions decide.
    public static func deletionBars(_ stored: String, deletedBy: String?, value: JSONValue) -> Bool {
        guard owner(of: stored) == nil, [Kind.memory, .file].contains(where: { stored.hasPrefix(prefix(user: nil, kind: $0)) }),
            let deletedBy, let claimant = unwrap(value)?.owner, isValidUser(claimant)
        else { return true }
        return claimant == deletedBy
    }

    /// What the live replicas a reader got say of a public name's owner (`owners`: the owner each names).
    public enum Claims: Hashable, Sendable {
        /// One owner (or none): the newest version is the name's.
        case agreed
        /// More than one, and most replicas name this one: its replicas are the name's.
        case majority(String)
        /// More than one, none named by most: nobody can tell which claim came first (versions are what each writer
        /// says, and a claim pushed to a replica that held nothing is as new as its writer likes).
        case disputed
    }

    /// Whose a public name is by its replicas (see `Claims`). Never the newest version across owners.
    public static func claims(_ owners: [String]) -> Claims {
        var count: [String: Int] = [:]
        for o in owners { count[o, default: 0] += 1 }
        guard count.count > 1 else { return .agreed }
        let top = count.values.max() ?? 0
        let leaders = count.filter { $0.value == top }.map(\.key)
        return leaders.count == 1 ? .majority(leaders[0]) : .disputed
    }

    /// A public value, with its owner.
    public static func wrap(_ value: JSONValue, owner: String) -> JSONValue { .object(["owner": .string(owner), "value": value]) }

    /// The owner and value of a stored public value; nil when it is not one (never written by a peer).
    public static func unwrap(_ stored: JSONValue) -> (owner: String, value: JSONValue)? {
        guard case .object(let o) = stored, case .string(let owner)? = o["owner"], let value = o["value"] else { return nil }
        return (owner, value)
    }

    /// Whether `user` may write (set, replace or delete) the public name whose current stored value is `current`
    /// (nil: none, or deleted): only when nobody holds it or `user` does.
    public static func mayWritePublic(current: JSONValue?, user: String, name: String) -> GridError? {
        guard let current else { return nil }
        guard let (owner, _) = unwrap(current) else {
            return GridError(.forbidden, "\(String(reflecting: name)) is public and has no owner; nobody may change it")
        }
        guard owner == user else {
            return GridError(.forbidden, "\(String(reflecting: name)) is published by \(owner); only \(owner) may change or delete it")
        }
        return nil
    }
}
