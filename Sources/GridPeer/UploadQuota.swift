/// How many bulk uploads (`PUT_FILE {size}` … `PUT_FILE_END`) a peer keeps open: counted per user, so one user who
/// opens many (or abandons them) never blocks another user's `PUT_FILE`; a larger bound for the whole peer keeps the
/// memory they take bounded. Pure: the peer passes the owners of the uploads open now.
public struct UploadQuota: Sendable, Hashable {
    /// Open uploads one user may have on one peer.
    public var perUser: Int
    /// Open uploads on one peer, all users together.
    public var perPeer: Int

    /// Bytes of chunks that came ahead of their turn and wait in memory for the ones before them, one user's and the
    /// whole peer's. An honest client's chunks arrive nearly in order, so little waits; one that skips a chunk on
    /// purpose would otherwise keep its window's worth per upload in memory until the upload expires.
    public var earlyBytesPerUser: Int
    public var earlyBytesPerPeer: Int

    public init(perUser: Int = 16, perPeer: Int = 1024, earlyBytesPerUser: Int = 48 << 20, earlyBytesPerPeer: Int = 512 << 20) {
        self.perUser = perUser
        self.perPeer = perPeer
        self.earlyBytesPerUser = earlyBytesPerUser
        self.earlyBytesPerPeer = earlyBytesPerPeer
    }

    /// Why `user` may not keep `bytes` more of a chunk that came ahead of its turn, or nil when it may. `held`: each
    /// open upload's owner and the bytes of its chunks waiting now.
    public func earlyRefusal(user: String, bytes: Int, held: some Sequence<(user: String, bytes: Int)>) -> String? {
        // Sums that stop at Int.max rather than trap (sizes are never negative: a buffer's readable bytes).
        func plus(_ a: Int, _ b: Int) -> Int { a > Int.max - max(b, 0) ? Int.max : a + max(b, 0) }
        var mine = max(bytes, 0)
        var all = mine
        for h in held {
            all = plus(all, h.bytes)
            if h.user == user { mine = plus(mine, h.bytes) }
        }
        if mine > earlyBytesPerUser {
            return "your uploads on this peer hold \((mine - max(bytes, 0)) >> 20) MiB of chunks sent ahead of the ones before them "
                + "(the limit is \(earlyBytesPerUser >> 20) MiB): send each upload's chunks in order"
        }
        if all > earlyBytesPerPeer { return "this peer holds too many chunks sent ahead of their turn; send chunks in order, or try again later" }
        return nil
    }

    /// Why `user` may not open another upload, or nil when it may. `openOwners`: the owner of each open upload.
    public func refusal(user: String, openOwners: some Sequence<String>) -> String? {
        var mine = 0
        var all = 0
        for owner in openOwners {
            all += 1
            if owner == user { mine += 1 }
        }
        if mine >= perUser {
            return "you have \(mine) uploads in progress on this peer (the limit is \(perUser)); finish or abandon some (they expire after 10 minutes)"
        }
        if all >= perPeer { return "too many uploads in progress on this peer; try again later" }
        return nil
    }
}
