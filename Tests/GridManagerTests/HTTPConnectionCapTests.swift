import GridProtocol
import NIOCore
import NIOEmbedded
import Testing

@testable import GridHTTP

/// The HTTP port's connection cap: one connection too many from an address, or in all, is closed at once, and a
/// closed one gives its place back.
@Suite struct HTTPConnectionCapTests {
    static func connect(_ cap: HTTPConnectionCap, from address: String) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(HTTPConnectionCapHandler(cap: cap))
        try channel.connect(to: SocketAddress(ipAddress: address, port: 4000)).wait()
        return channel
    }

    @Test func oneConnectionTooManyFromAnAddressIsClosedAtOnceAndAClosedOneFreesItsPlace() throws {
        let cap = HTTPConnectionCap(limits: StrangerLimits(maxPendingPerAddress: 2, maxOpenPerAddress: 2, maxPendingInAll: 10))
        let a = try Self.connect(cap, from: "10.0.0.1")
        let b = try Self.connect(cap, from: "10.0.0.1")
        let c = try Self.connect(cap, from: "10.0.0.1")
        #expect(a.isActive && b.isActive)
        #expect(!c.isActive, "the third from one address is closed")
        #expect(cap.open == 2, "and not counted")
        let other = try Self.connect(cap, from: "10.0.0.2")
        #expect(other.isActive, "another address has its own count")
        _ = try a.close().wait()
        #expect(cap.open == 2)
        let d = try Self.connect(cap, from: "10.0.0.1")
        #expect(d.isActive, "a closed connection gave its place back")
    }

    @Test func connectionsFromEveryAddressTogetherAreCapped() throws {
        let cap = HTTPConnectionCap(limits: StrangerLimits(maxPendingPerAddress: 5, maxOpenPerAddress: 5, maxPendingInAll: 3))
        let open = try (1...3).map { try Self.connect(cap, from: "10.0.1.\($0)") }
        #expect(open.filter { $0.isActive }.count == 3)
        let ninth = try Self.connect(cap, from: "10.0.1.9")
        #expect(!ninth.isActive)
        // An IPv6 /64 counts as one address.
        let v6 = HTTPConnectionCap(limits: StrangerLimits(maxPendingPerAddress: 1, maxOpenPerAddress: 1, maxPendingInAll: 10))
        let first = try Self.connect(v6, from: "2001:db8::1")
        let sameNetwork = try Self.connect(v6, from: "2001:db8::2")
        let otherNetwork = try Self.connect(v6, from: "2001:db8:0:1::1")
        #expect(first.isActive && !sameNetwork.isActive && otherNetwork.isActive)
    }

    /// Loopback is the machine's own (a reverse proxy there makes everyone one address): not held to the per-address
    /// count, only to the count in all.
    @Test func loopbackIsCountedOnlyInAll() throws {
        let cap = HTTPConnectionCap(limits: StrangerLimits(maxPendingPerAddress: 2, maxOpenPerAddress: 2, maxPendingInAll: 4))
        let local = try (0..<4).map { _ in try Self.connect(cap, from: "127.0.0.1") }
        #expect(local.filter { $0.isActive }.count == 4, "a proxy's connections past the per-address count")
        let fifth = try Self.connect(cap, from: "::1")
        #expect(!fifth.isActive, "the count in all still holds")
        _ = try local[0].close().wait()
        let again = try Self.connect(cap, from: "127.0.0.1")
        #expect(again.isActive && cap.open == 4)
    }

    /// A timeout that is not a number, or out of range, is the default or the nearest bound: never a trap.
    @Test func theIdleTimeoutIsBoundedWhateverItIsGiven() {
        #expect(HTTPConnectionCap(idleSeconds: .nan).idleTimeout == .seconds(30))
        #expect(HTTPConnectionCap(idleSeconds: .infinity).idleTimeout == .seconds(30))
        #expect(HTTPConnectionCap(idleSeconds: -1).idleTimeout == .milliseconds(100))
        #expect(HTTPConnectionCap(idleSeconds: 1e300).idleTimeout == .seconds(86_400))
        #expect(HTTPConnectionCap().idleTimeout == .seconds(30))
    }
}
