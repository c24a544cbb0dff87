/// Which peers a peer counts as members when the manager announces the online ones (`PEERS`), pure (issue 14).
///
/// The members are the announced peers, each once, and this peer itself (once it knows its id) even when the
/// announcement leaves it out: it holds replicas whatever the manager's view. Links to peers no longer announced are
/// closed; a change of the set (not of its order) starts a repair pass, which re-places the replicas.
public enum Membership {
    public struct Change: Hashable, Sendable {
        /// Every member, in the announced order, this peer last if it was not announced.
        public var members: [String]
        /// Peers this one has a link to that are no longer announced: their links are closed.
        public var departed: [String]
        /// The set of announced peers changed: re-place replicas.
        public var changed: Bool
    }

    public static func change(previous: [String], announced: [String], selfId: String?, linked: [String]) -> Change {
        var seen: Set<String> = []
        var members = announced.filter { !$0.isEmpty && seen.insert($0).inserted }
        let announcedSet = seen
        if let selfId, !selfId.isEmpty, !announcedSet.contains(selfId) { members.append(selfId) }
        let departed = Set(linked).subtracting(announcedSet).sorted()
        return Change(members: members, departed: departed, changed: Set(previous) != announcedSet)
    }
}
