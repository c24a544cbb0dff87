/// How many bulk uploads (`PUT_FILE {size}` … `PUT_FILE_END`) a peer keeps open: counted per user, so one user who
/// opens many (or abandons them) never blocks another user's `PUT_FILE`; a larger bound for the whole peer keeps the
/// memory they take bounded. Pure: the peer passes the owners of the uploads open now.
public struct UploadQuota: Sendable, Hashable {
    /// Open uploads one user may have on one peer.
    public var perUser: Int
    /// Open uploads on one peer, all users together.
    public var perPeer: Int

    public init(perUser: Int = 16, perPeer: Int = 1024) {
        self.perUser = perUser
        self.perPeer = perPeer
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
