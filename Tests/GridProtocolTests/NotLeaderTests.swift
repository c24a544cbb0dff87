import Foundation
import GridCore
import GridProtocol
import Testing

/// `NOT_LEADER` and the worker's list of managers (issue 16): hostile input first.
@Suite("NOT_LEADER and ManagerRotation")
struct NotLeaderTests {
    private func decode(_ json: String) throws -> GridMessage { try GridMessage.decode(type: "NOT_LEADER", from: Data(json.utf8)) }

    @Test func aWellFormedLeaderDecodes() throws {
        #expect(try decode(#"{"leader":"10.0.0.7:9999"}"#) == .notLeader(Msg.NotLeader(leader: "10.0.0.7:9999")))
        #expect(try decode(#"{"leader":"[::1]:9998"}"#) == .notLeader(Msg.NotLeader(leader: "[::1]:9998")))
    }

    @Test func anEmptyOrAbsentLeaderMeansNoneKnown() throws {
        #expect(try decode(#"{"leader":""}"#) == .notLeader(Msg.NotLeader(leader: "")))
        #expect(try decode(#"{}"#) == .notLeader(Msg.NotLeader(leader: "")))
    }

    @Test(arguments: [
        #"{"leader":"evil.example:0"}"#, #"{"leader":"evil.example:65536"}"#, #"{"leader":"evil.example:-1"}"#,
        #"{"leader":"evil.example:9223372036854775807"}"#, #"{"leader":"a b:1"}"#, #"{"leader":"a,b:1"}"#, #"{"leader":"x\n:1"}"#,
        #"{"leader":":9999"}"#, #"{"leader":"user@host:1"}"#, #"{"leader":"h\u0000:1"}"#, #"{"leader":"hé:1"}"#, #"{"leader":12}"#,
        #"{"leader":["a"]}"#, #"{"leader":{"host":"a"}}"#,
    ])
    func aForgedLeaderIsRefused(_ json: String) {
        #expect(throws: (any Error).self) { try decode(json) }
    }

    @Test func anOversizedLeaderIsRefused() {
        let long = String(repeating: "a", count: ManagerAddress.maxLength) + ":1"
        #expect(throws: GridError.self) { try decode(#"{"leader":"\#(long)"}"#) }
        let huge = String(repeating: "a", count: 1_000_000)
        #expect(throws: GridError.self) { try decode(#"{"leader":"\#(huge)"}"#) }
    }

    // MARK: Lists of managers

    @Test func listsParseWithDefaultPortsAndDropDuplicates() throws {
        let list = try ManagerAddress.list("m1, m2:9998,http://m3:7000/x,m1:9999")
        #expect(list == [.init(host: "m1", port: 9999), .init(host: "m2", port: 9998), .init(host: "m3", port: 7000)])
    }

    @Test(arguments: ["", ",", "m1,,:0", "m1:0", "m1:99999", "m1:-1", "m 1", "[::1", String(repeating: "a,", count: 70)])
    func badListsAreRefused(_ text: String) {
        #expect(throws: GridError.self) { try ManagerAddress.list(text) }
    }

    @Test func theWorkerFollowsANamedLeaderOnlyFromItsOwnList() throws {
        var r = ManagerRotation(try ManagerAddress.list("m1:1,m2:2,m3:3"))
        #expect(r.current == .init(host: "m1", port: 1))
        let f1 = r.notLeader(naming: "m3:3")
        #expect(f1)
        #expect(r.current.port == 3)
        // A stranger is not followed: the worker moves on to the next in its list instead.
        let f2 = r.notLeader(naming: "evil.example:3")
        #expect(!f2)
        #expect(r.current.port == 1)
        let f3 = r.notLeader(naming: "")
        #expect(!f3)
        #expect(r.current.port == 2)
        // Naming itself is not a redirection either.
        let f4 = r.notLeader(naming: "m2:2")
        #expect(!f4)
        #expect(r.current.port == 3)
        r.failed()
        #expect(r.current.port == 1)
    }
}

/// The CLI's walk over its list of managers (issue 16).
@Suite("ManagerFailover")
struct ManagerFailoverTests {
    @Test func aReadGoesToTheFirstManagerThatAnswersAndEachIsTriedOnce() {
        var f = ManagerFailover(count: 3, safe: true)
        #expect(f.unreachable(at: 0, nothingSent: false) == 1)
        #expect(f.unreachable(at: 1, nothingSent: false) == 2)
        #expect(f.unreachable(at: 2, nothingSent: false) == nil)
    }

    @Test func aWriteMovesOnOnlyWhenNothingWasSent() {
        var f = ManagerFailover(count: 2, safe: false)
        #expect(f.unreachable(at: 0, nothingSent: false) == nil)
        var g = ManagerFailover(count: 2, safe: false)
        #expect(g.unreachable(at: 0, nothingSent: true) == 1)
    }

    @Test func aNotLeaderAnswerIsRetriedOnceOnTheNamedLeaderFromTheList() {
        var f = ManagerFailover(count: 3, safe: false)
        #expect(f.notLeader(at: 0, leader: 2) == 2)
        #expect(f.notLeader(at: 2, leader: 1) == nil, "retried once only")
    }

    @Test func aLeaderNotInTheListIsNotFollowedTheNextIsTried() {
        var f = ManagerFailover(count: 3, safe: false)
        #expect(f.notLeader(at: 0, leader: nil) == 1)
        var g = ManagerFailover(count: 3, safe: false)
        #expect(g.notLeader(at: 0, leader: 7) == 1, "an index outside the list is no leader")
        var h = ManagerFailover(count: 3, safe: false)
        #expect(h.notLeader(at: 0, leader: -1) == 1)
        var i = ManagerFailover(count: 1, safe: false)
        #expect(i.notLeader(at: 0, leader: 0) == nil, "a lone manager naming itself: nowhere to go")
        var j = ManagerFailover(count: 0, safe: true)
        #expect(j.unreachable(at: 0, nothingSent: true) == nil)
    }
}
