import GridCore
import Testing

@Suite("LedgerAccount")
struct LedgerAccountTests {
    @Test(arguments: [LedgerAccount.mint, .user(1), .user(42), .hold(7), .hold(Int64.max), .user(0)])
    func descriptionRoundTrips(account: LedgerAccount) {
        #expect(LedgerAccount(account.description) == account)
    }

    @Test func descriptionsAreTheStoredNames() {
        #expect(LedgerAccount.mint.description == "mint")
        #expect(LedgerAccount.user(3).description == "user:3")
        #expect(LedgerAccount.hold(9).description == "hold:9")
    }

    @Test(arguments: ["", "MINT", "user:", "user:x", "hold:", "hold:1.5", "user:12x", "job:1", " mint", "user 1"])
    func unknownTextIsNotAnAccount(text: String) {
        #expect(LedgerAccount(text) == nil)
    }
}
