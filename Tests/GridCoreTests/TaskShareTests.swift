import GridCore
import Testing

/// The share a function task runs in: a user's own, or one per forwarding peer (pure).
@Suite struct TaskShareTests {
    @Test func aForwardedTaskHasAShareOfItsOwnPerPeerThatStillNamesItsUser() {
        let own = TaskShare.key(user: "alice", via: nil)
        let viaP = TaskShare.key(user: "alice", via: "peer-1")
        let viaQ = TaskShare.key(user: "alice", via: "peer-2")
        #expect(own == "alice")
        #expect(Set([own, viaP, viaQ]).count == 3)
        // Not another user's share, even one named like the key.
        #expect(viaP != TaskShare.key(user: "alice via:peer-1", via: nil))
        for key in [own, viaP, viaQ] { #expect(TaskShare.person(ofKey: key) == "alice") }
        // A peer id with the separator in it still names its user.
        #expect(TaskShare.person(ofKey: TaskShare.key(user: "bob", via: "x\u{1F}y")) == "bob")
        #expect(TaskShare.person(ofKey: "") == "")
    }
}
