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

    func held(_ pairs: (String, Int)...) -> [(user: String, bytes: Int)] { pairs.map { (user: $0.0, bytes: $0.1) } }

    @Test func chunksAheadOfTheirTurnAreBoundedPerUserAndPerPeer() {
        let q = UploadQuota(perUser: 3, perPeer: 5, earlyBytesPerUser: 10, earlyBytesPerPeer: 25)
        #expect(q.earlyRefusal(user: "mallory", bytes: 4, held: held(("mallory", 6))) == nil, "exactly at the limit")
        #expect(q.earlyRefusal(user: "mallory", bytes: 5, held: held(("mallory", 6)))?.contains("send each upload's chunks in order") == true)
        // Another user is not held back by Mallory's, until the whole peer is full.
        #expect(q.earlyRefusal(user: "bob", bytes: 10, held: held(("mallory", 10), ("eve", 5))) == nil)
        #expect(q.earlyRefusal(user: "bob", bytes: 1, held: held(("mallory", 10), ("eve", 10), ("trent", 5))) != nil)
        // No arithmetic traps, whatever the sizes.
        #expect(q.earlyRefusal(user: "m", bytes: Int.max, held: held(("m", Int.max), ("x", Int.max))) != nil)
        #expect(q.earlyRefusal(user: "m", bytes: 1, held: held(("x", Int.max), ("y", Int.max))) != nil, "a wrapped sum would pass")
        #expect(q.earlyRefusal(user: "m", bytes: Int.min, held: held(("m", Int.min), ("m", 11))) != nil)
    }
}
