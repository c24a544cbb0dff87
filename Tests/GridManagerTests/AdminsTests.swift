import GridCore
import Testing

@testable import GridManager

/// Who is an admin: the first account, and the usernames the operator named (any case).
@Suite struct AdminsTests {
    @Test func theFirstAccountIsAnAdmin() {
        let admins = Admins(named: [])
        #expect(admins.includes(id: 1, username: "first", firstUserId: 1))
        #expect(!admins.includes(id: 2, username: "second", firstUserId: 1))
        #expect(!admins.includes(id: 1, username: "first", firstUserId: nil))
    }

    @Test func namedUsersAreAdminsWhateverTheCase() {
        let admins = Admins(named: ["Carol", " dave ", ""])
        #expect(admins.named == ["carol", "dave"])
        #expect(admins.includes(id: 7, username: "carol", firstUserId: 1))
        #expect(admins.includes(id: 8, username: "DAVE", firstUserId: 1))
        #expect(!admins.includes(id: 9, username: "", firstUserId: 1), "an empty --admin names nobody")
    }

    @Test func theRefusalIsForbiddenAndSaysWhoIsAnAdmin() {
        let refusal = Admins.refusal("bob")
        #expect(refusal.code == .forbidden)
        #expect(refusal.message.contains("bob is not an admin"))
        #expect(refusal.message.contains("--admin USER"))
    }
}
