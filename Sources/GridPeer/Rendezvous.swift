/// Rendezvous (highest-random-weight) hashing: every peer scores every key; the `replicas` best-scoring peers own it.
///
/// When a peer joins, it takes only the keys it now scores best for; when one leaves, only its keys move. The hash is
/// stable across processes and machines (FNV-1a then a SplitMix64 finaliser), never Swift's seeded `Hasher`.
public enum Rendezvous {
    /// The owners of `key` among `peers`, best first. Duplicates in `peers` are ignored.
    public static func owners(of key: String, among peers: [String], replicas: Int) -> [String] {
        let unique = Array(Set(peers))
        let scored = unique.map { (peer: $0, score: score(peer: $0, key: key)) }
        let ranked = scored.sorted { a, b in a.score != b.score ? a.score > b.score : a.peer < b.peer }
        return ranked.prefix(max(0, replicas)).map(\.peer)
    }

    /// The weight of `peer` for `key`.
    public static func score(peer: String, key: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in peer.utf8 {
            h ^= UInt64(byte)
            h = h &* 0x0000_0100_0000_01b3
        }
        h ^= 0xff
        h = h &* 0x0000_0100_0000_01b3
        for byte in key.utf8 {
            h ^= UInt64(byte)
            h = h &* 0x0000_0100_0000_01b3
        }
        // SplitMix64 finaliser: spreads FNV's weak low bits.
        h ^= h >> 30
        h = h &* 0xbf58_476d_1ce4_e5b9
        h ^= h >> 27
        h = h &* 0x94d0_49bb_1331_11eb
        h ^= h >> 31
        return h
    }
}
