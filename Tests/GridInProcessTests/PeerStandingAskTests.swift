import Foundation
import GridCore
import GridProtocol
@testable import GridWorker
import GridTestSupport
import Logging
import Synchronization
import Testing

/// A peer asks the manager whether a person's certificate still stands (`PeerService.standing(of:)`): once per token
/// at a time, however many of that person's sessions and requests need the answer at once.
@Suite struct PeerStandingAskTests {
    @Test(arguments: [false, true])
    func concurrentRequestsOfOneTokenAskTheManagerOnceAndAllHearItsAnswer(revoked: Bool) async throws {
        let root = NSTemporaryDirectory() + "campusgrid-standing-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let service = try PeerService(
            config: PeerConfig(dataDirectory: root, token: "join", slots: 1), functions: ScriptedFunctions(peer: "p"), logger: Logger(label: "test"))
        let asks = Mutex(0)
        let released = Mutex(false)
        await service.connect(
            manager: { message in
                guard case .authCheck(let check) = message, check.certificate != nil else { throw GridError(.badRequest, "unexpected \(message.type)") }
                asks.withLock { $0 += 1 }
                // Held until the test lets it go (bounded: 30 s).
                let until = ContinuousClock.now + .seconds(30)
                while !released.withLock({ $0 }), ContinuousClock.now < until { try await Task.sleep(for: .milliseconds(5)) }
                if revoked { throw GridError(.unauthorized, "the token this certificate was granted under was revoked") }
                return .authOk(Msg.AuthOk(user: "alice", kind: "api"))
            }, onLoadChange: {})
        let certificate = PeerTrust.UserCertificate(
            user: "alice", key: "k", expires: Int64(Date().timeIntervalSince1970) + 3600, signature: "s", tokenHash: String(repeating: "ab", count: 32))
        let answers = try await withThrowingTaskGroup(of: GridError?.self) { group in
            for _ in 0..<10 { group.addTask { await service.standing(of: certificate) } }
            // One ask in flight, nine requests waiting on it (bounded: 30 s).
            let deadline = ContinuousClock.now + .seconds(30)
            while await service.waitingOnStanding(token: certificate.tokenHash!) != 9, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(await service.waitingOnStanding(token: certificate.tokenHash!) == 9, "the other nine did not wait on the first one's ask")
            #expect(asks.withLock { $0 } == 1, "each request asked the manager")
            released.withLock { $0 = true }
            var answers: [GridError?] = []
            for try await a in group { answers.append(a) }
            return answers
        }
        #expect(asks.withLock { $0 } == 1)
        #expect(answers.count == 10)
        if revoked {
            #expect(answers.allSatisfy { $0?.code == .unauthorized }, "a waiting request was let through a revoked token: \(answers)")
        } else {
            #expect(answers.allSatisfy { $0 == nil }, "a waiting request was refused a standing token: \(answers)")
        }
        #expect(await service.waitingOnStanding(token: certificate.tokenHash!) == nil, "the ask's waiters were not cleared")
        // The answer is kept: the next request asks nobody.
        #expect((await service.standing(of: certificate) == nil) == !revoked)
        #expect(asks.withLock { $0 } == 1)
    }

    /// A request whose connection closed (its task cancelled) before its ask starts none: the ask would run without its
    /// timeout, and the person's other requests would wait on it. It is refused, not let through.
    @Test func aCancelledRequestStartsNoAskAndIsNotLetThrough() async throws {
        let root = NSTemporaryDirectory() + "campusgrid-standing-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let service = try PeerService(
            config: PeerConfig(dataDirectory: root, token: "join", slots: 1), functions: ScriptedFunctions(peer: "p"), logger: Logger(label: "test"))
        let asks = Mutex(0)
        await service.connect(
            manager: { _ in
                asks.withLock { $0 += 1 }
                return .authOk(Msg.AuthOk(user: "alice", kind: "api"))
            }, onLoadChange: {})
        let certificate = PeerTrust.UserCertificate(
            user: "alice", key: "k", expires: Int64(Date().timeIntervalSince1970) + 3600, signature: "s", tokenHash: String(repeating: "cd", count: 32))
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return await service.standing(of: certificate)
        }
        let answer = await task.value
        #expect(answer != nil, "a cancelled request was let through unchecked")
        #expect(asks.withLock { $0 } == 0)
        #expect(await service.standing(of: certificate) == nil, "the next request asks, and stands")
        #expect(asks.withLock { $0 } == 1)
    }
}
