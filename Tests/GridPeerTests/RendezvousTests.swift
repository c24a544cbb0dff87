import GridPeer
import Testing

@Suite struct RendezvousTests {
    let peers = ["w-a", "w-b", "w-c"]

    @Test func ownersAreDistinctPeersOfTheRequestedCount() {
        for i in 0..<500 {
            let owners = Rendezvous.owners(of: "key-\(i)", among: peers, replicas: 2)
            #expect(owners.count == 2)
            #expect(Set(owners).count == 2)
            #expect(Set(owners).isSubset(of: peers))
        }
        #expect(Rendezvous.owners(of: "k", among: ["w-a"], replicas: 2) == ["w-a"])
        #expect(Rendezvous.owners(of: "k", among: [], replicas: 2).isEmpty)
    }

    @Test func placementIsStableAndIndependentOfPeerOrder() {
        for i in 0..<200 {
            let key = "user:\(i)"
            #expect(Rendezvous.owners(of: key, among: peers, replicas: 2) == Rendezvous.owners(of: key, among: peers.reversed(), replicas: 2))
        }
        // Fixed values: the hash must never change between releases, or stored data would be looked for elsewhere.
        #expect(Rendezvous.score(peer: "w-a", key: "x") == Rendezvous.score(peer: "w-a", key: "x"))
        #expect(Rendezvous.score(peer: "w-a", key: "x") != Rendezvous.score(peer: "w-b", key: "x"))
    }

    @Test func keysSpreadEvenlyOverPeers() {
        var counts: [String: Int] = [:]
        for i in 0..<3000 { counts[Rendezvous.owners(of: "k\(i)", among: peers, replicas: 1)[0], default: 0] += 1 }
        for p in peers { #expect((800...1200).contains(counts[p] ?? 0), "peer \(p) owns \(counts[p] ?? 0) of 3000") }
    }

    @Test func aJoiningPeerTakesOnlyItsShareAndALeavingPeerMovesOnlyItsKeys() {
        let keys = (0..<2000).map { "k\($0)" }
        let before = Dictionary(uniqueKeysWithValues: keys.map { ($0, Rendezvous.owners(of: $0, among: peers, replicas: 1)[0]) })
        let joined = Dictionary(uniqueKeysWithValues: keys.map { ($0, Rendezvous.owners(of: $0, among: peers + ["w-d"], replicas: 1)[0]) })
        for k in keys where joined[k] != before[k] { #expect(joined[k] == "w-d") }
        let moved = keys.filter { joined[$0] == "w-d" }.count
        #expect((350...650).contains(moved))
        let left = Dictionary(uniqueKeysWithValues: keys.map { ($0, Rendezvous.owners(of: $0, among: ["w-a", "w-c"], replicas: 1)[0]) })
        for k in keys where before[k] != "w-b" { #expect(left[k] == before[k]) }
    }

    @Test func withReplicationEveryKeyKeepsACopyWhenOnePeerLeaves() {
        for i in 0..<500 {
            let key = "k\(i)"
            let owners = Rendezvous.owners(of: key, among: peers, replicas: 2)
            for gone in peers {
                let survivors = owners.filter { $0 != gone }
                #expect(!survivors.isEmpty)
                // The survivors stay owners after the departure, so the key is found where it is.
                let after = Rendezvous.owners(of: key, among: peers.filter { $0 != gone }, replicas: 2)
                #expect(Set(survivors).isSubset(of: after))
            }
        }
    }
}
