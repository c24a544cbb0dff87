import GridProtocol
import Testing

@Suite struct ShownMandatesTests {
    func mandate(_ user: String, signature: String, expires: Int64) -> PeerTrust.Mandate {
        PeerTrust.Mandate(ticket: PeerTrust.Ticket(user: user, holder: "w-a", expires: expires, signature: signature))
    }

    @Test func aReferenceStandsForAMandateOnlyFromThePeerThatShowedIt() {
        var shown = PeerTrust.ShownMandates()
        let m = mandate("alice", signature: "c2ln", expires: 100)
        shown.keep(m, reader: PeerTrust.Reader(user: "alice"), from: "w-a", now: 10)
        #expect(shown.reader(m.ref, from: "w-a", now: 11) == PeerTrust.Reader(user: "alice"))
        #expect(shown.reader(m.ref, from: "w-mallory", now: 11) == nil)
        #expect(shown.reader("t:other", from: "w-a", now: 11) == nil)
        #expect(shown.reader("", from: "", now: 11) == nil)
    }

    @Test func anExpiredMandateIsGoneAndThePeersThatLeftAreForgotten() {
        var shown = PeerTrust.ShownMandates()
        let m = mandate("alice", signature: "c2ln", expires: 100)
        shown.keep(m, reader: PeerTrust.Reader(user: "alice"), from: "w-a", now: 10)
        #expect(shown.reader(m.ref, from: "w-a", now: 100) == nil)
        #expect(shown.count(from: "w-a") == 0)
        shown.keep(m, reader: PeerTrust.Reader(user: "alice"), from: "w-a", now: 10)
        shown.keepOnly(peers: ["w-b"])
        #expect(shown.reader(m.ref, from: "w-a", now: 11) == nil)
    }

    @Test func eachPeerKeepsABoundedNumberWhateverItShows() {
        var shown = PeerTrust.ShownMandates()
        for i in 0..<(3 * PeerTrust.ShownMandates.perPeer) {
            shown.keep(mandate("u\(i)", signature: "s\(i)", expires: .max), reader: PeerTrust.Reader(user: "u\(i)"), from: "w-flood", now: .min)
            #expect(shown.count(from: "w-flood") <= PeerTrust.ShownMandates.perPeer)
        }
        // Another peer's are untouched by that flood.
        let m = mandate("bob", signature: "b", expires: .max)
        shown.keep(m, reader: PeerTrust.Reader(user: "bob"), from: "w-b", now: 0)
        #expect(shown.reader(m.ref, from: "w-b", now: .max - 1) == PeerTrust.Reader(user: "bob"))
    }

    @Test func referencesOfDifferentMandatesDiffer() {
        let a = PeerTrust.Mandate(
            certificate: PeerTrust.UserCertificate(user: "alice", key: "k", expires: 1, signature: "cert"),
            delegation: PeerTrust.Delegation(holder: "w-a", expires: 1, signature: "del"))
        let b = PeerTrust.Mandate(ticket: PeerTrust.Ticket(user: "alice", holder: "w-a", expires: 1, signature: "del:cert"))
        #expect(a.ref != b.ref)
        #expect(a.ref != PeerTrust.Mandate().ref)
    }
}
