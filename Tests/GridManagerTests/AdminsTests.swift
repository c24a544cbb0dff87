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

    /// A name given with `--admin` before its account exists is kept for the operator: from anywhere but the manager's
    /// own machine its registration is refused (whoever came first would have been an admin); other names register
    /// from anywhere.
    @Test func anAdminsNameIsRegisteredOnlyOnTheManagersOwnMachine() {
        let admins = Admins(named: ["Carol"])
        for client in ["10.0.0.7", "192.168.1.2", "2001:db8::1", "::ffff:10.0.0.7", "", "??", "localhost"] {
            #expect(admins.registrationRefusal(username: "carol", client: client)?.code == .forbidden, "\(client)")
            #expect(admins.registrationRefusal(username: " CAROL ", client: client)?.code == .forbidden, "\(client)")
            #expect(admins.registrationRefusal(username: "bob", client: client) == nil, "\(client)")
        }
        for client in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "?"] {
            #expect(admins.registrationRefusal(username: "carol", client: client) == nil, "\(client)")
        }
        #expect(admins.registrationRefusal(username: "carol", client: "10.0.0.7")?.message.contains("manager's own machine") == true)
    }
}
