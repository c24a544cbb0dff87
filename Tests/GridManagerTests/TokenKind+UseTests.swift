import GridCore
import GridStore
import Testing

@testable import GridManager

/// The token-kind rule, every pair: a join token only joins workers, an API token only acts as its person.
@Suite struct TokenKindUseTests {
    @Test func eachKindIsAcceptedForItsOwnUseOnly() {
        #expect(TokenKind.api.refusal(for: .person) == nil)
        #expect(TokenKind.worker.refusal(for: .joinWorker) == nil)
        #expect(TokenKind.worker.refusal(for: .person) != nil)
        #expect(TokenKind.api.refusal(for: .joinWorker) != nil)
        // A dashboard session acts as its person, and joins no worker.
        #expect(TokenKind.session.refusal(for: .person) == nil)
        #expect(TokenKind.session.refusal(for: .joinWorker)?.message.contains("this is a dashboard session") == true)
    }

    @Test func aJoinTokenActingAsAPersonIsRefusedByNameWithTheWayOut() throws {
        let refusal = try #require(TokenKind.worker.refusal(for: .person))
        #expect(refusal.code == .unauthorized)
        #expect(refusal.message.contains("this is a worker join token; it only joins workers"))
        #expect(refusal.message.contains("campusgrid login"))
    }

    @Test func anAPITokenJoiningAsAWorkerIsRefusedByNameWithTheWayOut() throws {
        let refusal = try #require(TokenKind.api.refusal(for: .joinWorker))
        #expect(refusal.code == .unauthorized)
        #expect(refusal.message.contains("this is an API token"))
        #expect(refusal.message.contains("campusgrid token create --worker"))
    }

    @Test func everyRefusalIsUnauthorizedSoClientsStopRatherThanRetry() {
        for kind in [TokenKind.api, .worker] {
            for use in TokenKind.Use.allCases {
                if let refusal = kind.refusal(for: use) { #expect(refusal.code == .unauthorized, "\(kind) for \(use)") }
            }
        }
    }
}
