import GridPeer
import Testing

/// Open uploads are counted per user: one user's uploads never block another's.
@Suite("UploadQuota")
struct UploadQuotaTests {
    let quota = UploadQuota(perUser: 3, perPeer: 5)

    @Test func aUserUnderTheirLimitMayUpload() {
        #expect(quota.refusal(user: "alice", openOwners: ["alice", "alice"]) == nil)
    }

    @Test func aUserAtTheirLimitIsRefusedWithAMessageTheyCanActOn() {
        let refusal = quota.refusal(user: "alice", openOwners: ["alice", "alice", "alice"])
        #expect(refusal?.contains("you have 3 uploads in progress") == true)
    }

    @Test func anotherUserIsNotBlockedBySomeoneAtTheirLimit() {
        #expect(quota.refusal(user: "bob", openOwners: ["alice", "alice", "alice"]) == nil)
    }

    @Test func thePeerWideBoundStillHolds() {
        #expect(quota.refusal(user: "carol", openOwners: ["a", "a", "b", "b", "c"]) != nil)
    }

    @Test func theDefaultsLetSixtyFourUsersUploadAtOnce() {
        let d = UploadQuota()
        let owners = (0..<63).flatMap { u in Array(repeating: "u\(u)", count: d.perUser) }
        #expect(d.refusal(user: "late", openOwners: owners) == nil)
    }
}
