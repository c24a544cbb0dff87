import GridProtocol
import Testing

/// `PeerTrust.Bars`: which credentials of a worker barred from the peers are refused, event by event.
@Suite struct PeerBarsTests {
    let now: Int64 = 1_800_000_000

    @Test func aCredentialGivenBeforeTheBarIsRefusedAndOneGivenAfterIsTaken() {
        var bars = PeerTrust.Bars()
        #expect(!bars.refuses(worker: "w-1", credentialExpires: now + 600), "nobody is barred at first")
        bars.bar("w-1", before: now + 600, now: now)
        #expect(bars.refuses(worker: "w-1", credentialExpires: now + 600), "the newest credential given before the bar")
        #expect(bars.refuses(worker: "w-1", credentialExpires: now + 10))
        #expect(!bars.refuses(worker: "w-1", credentialExpires: now + 601), "given after the bar: it came back with a standing token")
        #expect(!bars.refuses(worker: "w-2", credentialExpires: now + 600), "another worker")
    }

    @Test func aLaterBarNeverMovesTheCutBack() {
        var bars = PeerTrust.Bars()
        bars.bar("w-1", before: now + 600, now: now)
        bars.bar("w-1", before: now + 100, now: now)
        #expect(bars.refuses(worker: "w-1", credentialExpires: now + 600))
        // A peer's list naming a worker twice keeps the later cut.
        let peer = PeerTrust.Bars([Msg.PeerBar(workerId: "w-1", before: now + 600), Msg.PeerBar(workerId: "w-1", before: now)])
        #expect(peer.refuses(worker: "w-1", credentialExpires: now + 600))
    }

    @Test func aBarIsAnnouncedUntilTheCredentialsItRefusesHaveLapsedEverywhere() {
        var bars = PeerTrust.Bars()
        bars.bar("w-1", before: now + 600, now: now)
        #expect(bars.announced(now: now) == [Msg.PeerBar(workerId: "w-1", before: now + 600)])
        // A peer takes a credential until `clockSkewSeconds` past its expiry: the bar is announced past that.
        let lastTaken = now + 600 + PeerTrust.clockSkewSeconds
        #expect(bars.announced(now: lastTaken).count == 1)
        #expect(bars.announced(now: now + 600 + PeerTrust.Bars.announcedPast).isEmpty)
        bars.purge(now: now + 600 + PeerTrust.Bars.announcedPast)
        #expect(bars.before.isEmpty)
    }

    @Test(arguments: [Int64.min, -1, 0, Int64.max])
    func boundaryTimesNeitherTrapNorRefuseAnotherWorker(t: Int64) {
        var bars = PeerTrust.Bars()
        bars.bar("w-1", before: t, now: t)
        bars.purge(now: t)
        _ = bars.announced(now: t)
        #expect(!bars.refuses(worker: "w-2", credentialExpires: t))
        let fromWire = PeerTrust.Bars([Msg.PeerBar(workerId: "w-1", before: t)])
        #expect(fromWire.refuses(worker: "w-1", credentialExpires: .min))
    }

    @Test func aFloodOfBarsIsBounded() {
        var bars = PeerTrust.Bars()
        for i in 0..<(PeerTrust.Bars.limit + 50) { bars.bar("w-\(i)", before: now + 600, now: now) }
        #expect(bars.before.count == PeerTrust.Bars.limit)
        let list = (0..<(PeerTrust.Bars.limit + 50)).map { Msg.PeerBar(workerId: "w-\($0)", before: now) }
        #expect(PeerTrust.Bars(list).before.count == PeerTrust.Bars.limit)
    }
}
