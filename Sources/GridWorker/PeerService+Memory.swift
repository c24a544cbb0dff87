import Foundation
import GridCore
import GridPeer
import GridProtocol
import Logging

/// Distributed memory: keys placed by rendezvous hashing over the online peers, `replicas` copies each, newest
/// version wins. Any peer accepts a request and routes it to the owners.
extension PeerService {
    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// `writer` stores `value` under their `key`, private, or (`isPublic`) published read-only to everyone under a name
    /// only they may then change or delete.
    func setMem(_ key: String, _ value: JSONValue, isPublic: Bool, as writer: Writer) async throws -> Msg.MemResult {
        let user = writer.user
        try PeerNames.validateKey(key)
        // On the wire an entry's `"value": null` is a deletion: a null kept here would be a value here and a deletion
        // on every other replica (and its seal good on none).
        guard value != .null else { throw GridError(.badRequest, "a value cannot be null; DEL_MEM deletes a key") }
        let bound = value.encodedSizeBound
        let size = bound <= PeerNames.maxValueBytes ? bound : ((try? GridJSON.encode(value).count) ?? Int.max)
        guard size <= PeerNames.maxValueBytes else {
            throw GridError(.badRequest, "the value is \(size) bytes; the limit is \(PeerNames.maxValueBytes >> 10) KiB")
        }
        if isPublic {
            let stored = PeerNamespace.stored(key, user: nil, kind: .memory)
            if let e = PeerNamespace.mayWritePublic(current: try await readEntry(stored)?.value, user: user, name: key) { throw e }
            let owners = try await writeEntry(stored, PeerNamespace.wrap(value, owner: user), bytes: size + user.utf8.count + 32, as: writer)
            return Msg.MemResult(key: key, owners: owners)
        }
        // The reply names where the value went; it does not echo the value back.
        let stored = PeerNamespace.stored(key, user: user, kind: .memory)
        return Msg.MemResult(key: key, owners: try await writeEntry(stored, value, bytes: size, as: writer))
    }

    /// Deletes `writer`'s own `key`, or the public one they published under that name.
    func delMem(_ key: String, as writer: Writer) async throws -> Msg.MemResult {
        try PeerNames.validateKey(key)
        let user = writer.user
        let mine = PeerNamespace.stored(key, user: user, kind: .memory)
        if try await readEntry(mine)?.value != nil { return Msg.MemResult(key: key, owners: try await writeEntry(mine, nil, as: writer)) }
        let shared = PeerNamespace.stored(key, user: nil, kind: .memory)
        guard let current = try await readEntry(shared)?.value else { throw GridError(.notFound, "no value for key \(String(reflecting: key))") }
        if let e = PeerNamespace.mayWritePublic(current: current, user: user, name: key) { throw e }
        return Msg.MemResult(key: key, owners: try await writeEntry(shared, nil, as: writer))
    }

    /// `user`'s own value of `key`, else the public one of that name.
    func getMem(_ key: String, user: String) async throws -> Msg.MemResult {
        try PeerNames.validateKey(key)
        let mine = PeerNamespace.stored(key, user: user, kind: .memory)
        if let value = try await readEntry(mine)?.value {
            return Msg.MemResult(key: key, value: value, owners: Rendezvous.owners(of: mine, among: memberIds, replicas: config.replicas))
        }
        let shared = PeerNamespace.stored(key, user: nil, kind: .memory)
        guard let stored = try await readEntry(shared)?.value, let (publisher, value) = PeerNamespace.unwrap(stored) else {
            throw GridError(.notFound, "no value for key \(String(reflecting: key))")
        }
        return Msg.MemResult(
            key: key, value: value, owners: Rendezvous.owners(of: shared, among: memberIds, replicas: config.replicas),
            publishedBy: publisher == user ? nil : publisher)
    }

    /// Writes a new version of stored key `key` (nil deletes) to its owners, all at once, sealed under `writer`'s
    /// authority (`PeerTrust.Seal`); returns the owners that stored it. A write that an owner refused because it holds
    /// a newer version lost: that is an error (`conflict`), never reported as stored.
    /// `stamp`: the version and credential to seal with (an upload's, taken when it began); nil: now's.
    func writeEntry(_ key: String, _ value: JSONValue?, bytes: Int = 0, as writer: Writer, at stamp: Stamp? = nil) async throws -> [String] {
        guard let selfId else { throw GridError(.unreachable, "not registered yet") }
        // What every other owner would refuse is refused here, before anything is kept (it would stay on this peer alone).
        if let e = EntryRules.check(key: key, origin: selfId, value: value, encodedSize: Self.encodedSize) { throw e }
        let taken: Stamp
        if let stamp { taken = stamp } else { taken = try await self.stamp() }
        let version = taken.version
        let credential = taken.credential
        // A grant that ran out while this write waited (a slow read of the key's owners) seals nothing any replica keeps.
        if let grant = writer.authority.grant, version / 1000 > grant.expires.addingReportingOverflow(PeerTrust.clockSkewSeconds).partialValue {
            throw GridError(.forbidden, "this session's write grant expired while the write waited; open a new session to write")
        }
        // Signed off the actor (a digest, a signature, the seal's text), on either core, as concurrent writes go on.
        let signer = self.signer
        let authority = writer.authority
        let seal = await Self.offActor { signer.seal(key: key, value: value, version: version, origin: selfId, authority: authority, credential: credential) }
        let entry = Msg.MemEntry(key: key, value: value, version: version, origin: selfId, seal: seal)
        let owners = Rendezvous.owners(of: key, among: memberIds, replicas: config.replicas)
        var stored: [String] = []
        var lost: [String] = []
        var refused: [(peer: String, reason: String)] = []
        var forbidden: [(peer: String, reason: String)] = []
        if owners.contains(selfId) {
            switch memory.store(key, MemoryTable.Entry(value: value, version: entry.version, origin: selfId, seal: seal), writer: writer.user) {
            case .kept: stored.append(selfId)
            case .lost: lost.append(selfId)
            case .refused(let reason): refused.append((selfId, reason))
            }
        }
        let others = owners.filter { $0 != selfId }
        let size = Self.wireSize(of: entry, valueBytes: bytes)
        await withTaskGroup(of: (String, PushOutcome).self) { group in
            for owner in others { group.addTask { (owner, await self.push([entry], to: owner, bytes: size)) } }
            for await (owner, outcome) in group {
                switch outcome {
                case .stored: stored.append(owner)
                case .lost: lost.append(owner)
                case .refused(let reason, _): refused.append((owner, reason))
                case .forbidden(let reason, _): forbidden.append((owner, reason))
                case .failed: break
                }
            }
        }
        // An owner that would not keep it for what it is (its seal, version or size): said as such.
        if let first = forbidden.min(by: { $0.peer < $1.peer }) {
            throw GridError(.forbidden, "\(first.reason) (peer \(first.peer)); this write was not kept there")
        }
        // A peer with no room refuses the write (a replica that did keep it is then the only copy, and is replaced or
        // deleted as any other): the writer learns why, from the first peer that said so.
        if let first = refused.min(by: { $0.peer < $1.peer }) {
            throw GridError(.insufficientStorage, "\(first.reason) (peer \(first.peer)); this write was not stored on every owner")
        }
        guard lost.isEmpty else {
            throw GridError(.conflict, "a newer write of this key won on \(lost.sorted().joined(separator: ", ")); this write was not stored")
        }
        guard !stored.isEmpty else {
            throw GridError(.unreachable, "none of the key's owners (\(owners.joined(separator: ", "))) could store it; try again")
        }
        return stored
    }

    /// A version to seal with now, and this peer's credential (renewed first when due). A credential that lapsed while
    /// no manager answers still seals for `userCertificateSeconds` more (see `PeerTrust.SealChecker`).
    func stamp() async throws -> Stamp {
        await renewCredential()
        let nowMs = Self.nowMs()
        guard let credential, credential.expires.addingReportingOverflow(PeerTrust.userCertificateSeconds).partialValue > nowMs / 1000 else {
            throw GridError(.unreachable, "this peer has had no credential from its manager for too long, so no peer would keep its writes")
        }
        return Stamp(version: clock.next(nowMs: nowMs), credential: credential)
    }

    /// About how many bytes `entry` takes in a `MEM_SYNC` line, its value taking `valueBytes`: its seal travels as a
    /// JSON string (escaped), and is the larger part of a small entry, so batches are cut by it too.
    static func wireSize(of entry: Msg.MemEntry, valueBytes: Int) -> Int {
        let seal = entry.seal?.utf8.count ?? 0
        return entry.key.utf8.count + valueBytes + seal + seal / 4 + 96
    }

    /// Stores entries on `peer` (this one included); returns whether it worked. Entries for another peer join the
    /// next `MEM_SYNC` to it: while one is in flight, the writes that arrive meanwhile wait and go together in the next
    /// (group commit), so many concurrent writers share each round trip. `bytes` estimates their size on the wire.
    func push(_ entries: [Msg.MemEntry], to peer: String, bytes: Int) async -> PushOutcome {
        if peer == selfId {
            let applied = memory.apply(entries)
            if let reason = applied.refused.values.min() { return .refused(reason, keys: Set(applied.refused.keys)) }
            return applied.lost.isEmpty ? .stored : .lost
        }
        return await withCheckedContinuation { continuation in
            outgoingSync[peer, default: SyncQueue()].groups.append((entries, bytes, continuation))
            if outgoingSync[peer]?.sending == false {
                outgoingSync[peer]?.sending = true
                if case .terminated = drainContinuation.yield(peer) {
                    // Shutting down: nothing will send them.
                    for group in outgoingSync.removeValue(forKey: peer)?.groups ?? [] { group.continuation.resume(returning: .failed) }
                }
            }
        }
    }

    /// Sends the writes waiting for `peer`, a batch at a time (at most 512 KiB or 1,000 entries, and at least one write)
    /// until none wait.
    func drainSync(to peer: String) async {
        while var queue = outgoingSync[peer], !queue.groups.isEmpty {
            var batch: [Msg.MemEntry] = []
            var bytes = 0
            var taken = 0
            for group in queue.groups {
                if taken > 0 && (bytes + group.bytes > 512 << 10 || batch.count + group.entries.count > 1000) { break }
                batch += group.entries
                bytes += group.bytes
                taken += 1
            }
            let waiters = queue.groups.prefix(taken).map(\.continuation)
            let groupEntries = queue.groups.prefix(taken).map(\.entries)
            queue.groups.removeFirst(taken)
            outgoingSync[peer] = queue
            // The peer answers OK, or MEM_ENTRIES with the newer replicas that some of the entries lost to.
            var winners: [String: MemoryTable.Entry]?
            var refused: [String: String] = [:]
            var forbiddenKeys: Set<String> = []
            do {
                let reply = try await ask(peer, .memSync(Msg.MemEntries(entries: batch)), timeout: 10)
                if case .memEntries(let m) = reply.message {
                    winners = Dictionary(
                        m.entries.map { ($0.key, MemoryTable.Entry(value: $0.value, version: $0.version, origin: $0.origin)) },
                        uniquingKeysWith: { a, b in a.isNewer(than: b) ? a : b })
                    refused = m.refused ?? [:]
                    forbiddenKeys = Set(m.forbidden ?? [])
                } else {
                    winners = [:]
                }
            } catch {
                logger.debug("could not sync keys", metadata: ["grid.worker.id": "\(peer)", "grid.error": "\(error)"])
            }
            for (k, w) in waiters.enumerated() {
                guard let winners else {
                    w.resume(returning: .failed)
                    continue
                }
                let entries = groupEntries[k]
                let mine = Set(entries.lazy.map(\.key).filter { refused[$0] != nil })
                if let key = mine.min(), let reason = refused[key] {
                    w.resume(returning: mine.contains(where: forbiddenKeys.contains) ? .forbidden(reason, keys: mine) : .refused(reason, keys: mine))
                    continue
                }
                let beaten = entries.contains { e in
                    winners[e.key].map { $0.isNewer(than: MemoryTable.Entry(value: e.value, version: e.version, origin: e.origin)) } ?? false
                }
                w.resume(returning: beaten ? .lost : .stored)
            }
        }
        outgoingSync[peer] = nil
    }

    /// The newest replica of `key` among its owners (asked at once, not one after another); when they have none (peers
    /// just changed), every other peer is asked. Owners that lacked the newest version get it (read repair).
    /// A key is said to be absent (nil) only when at least one of its owners answered without it (an owner's "none"
    /// counts, as a replica's does in Dynamo-style stores: one silent owner, even a hostile member that answers
    /// nothing, must not make every absent key it owns unreadable and every public name it owns unclaimable). When no
    /// owner answered (each was stopped, overloaded or gone, and the manager has not said so yet), a peer that was
    /// never an owner lacking it proves nothing: the reader is told to try again (`unreachable`), never that the key
    /// does not exist.
    func readEntry(_ key: String) async throws -> Msg.MemEntry? {
        let owners = Rendezvous.owners(of: key, among: memberIds, replicas: config.replicas)
        // A replica here answers at once: every write goes to every owner, and one that missed a write (its peer was
        // unreachable) is brought up to date by the next repair pass. Without one here, the owners are asked.
        if let selfId, owners.contains(selfId), let local = memory.get(key) {
            return Msg.MemEntry(key: key, value: local.value, version: local.version, origin: local.origin, seal: local.seal)
        }
        let mandate = mandate(for: key)
        let fromOwners = await replicas(of: key, on: owners, mandate: mandate)
        var found = fromOwners.found
        var refusal = fromOwners.refusal
        if found.isEmpty {
            let others = await replicas(of: key, on: memberIds.filter { !owners.contains($0) }, mandate: mandate)
            found = others.found
            refusal = refusal ?? others.refusal
        }
        if found.isEmpty {
            // A peer refused this one's mandate: the key may well be there. The manager (not the refusing peer, which
            // may lie) says whether the person's token still stands; one that does not drops the mandate (the next
            // session's takes its place) and the read is refused, saying why. One that stands makes the refusal a
            // peer's word against the owners that answered without the key: absent (a review: one hostile member
            // answering `forbidden` to every read made every absent key unreadable, and every public name
            // unclaimable). With no owner answering, the refusal is all there is to say.
            if let refusal {
                let revoked: GridError? = if let certificate = mandate?.certificate { await standing(of: certificate) } else { nil }
                if revoked != nil || fromOwners.answered.isEmpty {
                    throw GridError(
                        .forbidden, "the peers holding this key would not give it to this peer (\(refusal.message)); open a new session here and try again")
                }
            }
            guard fromOwners.answered.isEmpty else { return nil }
            throw GridError(.unreachable, "none of the peers holding this key (\(owners.joined(separator: ", "))) answered; try again")
        }
        let newest = found.values.max { a, b in
            MemoryTable.Entry(value: b.value, version: b.version, origin: b.origin)
                .isNewer(than: MemoryTable.Entry(value: a.value, version: a.version, origin: a.origin))
        }
        // A public name whose replicas name different owners: not the newest version (a claim pushed to an owner that
        // held nothing of the name is as new as its writer likes). The owner most replicas name, else a conflict;
        // nothing is repaired from either.
        if PeerNamespace.owner(of: key) == nil {
            let owners = found.values.compactMap { $0.value.flatMap(PeerNamespace.unwrap)?.owner }
            switch PeerNamespace.claims(owners) {
            case .agreed: break
            case .majority(let owner):
                return found.values.filter { $0.value.flatMap(PeerNamespace.unwrap)?.owner == owner }.max { $0.version < $1.version }
            case .disputed:
                throw GridError(
                    .conflict,
                    "the peers holding this public name disagree on whose it is (\(Set(owners).sorted().joined(separator: ", "))); it cannot be read, "
                        + "changed or deleted through a peer that holds no copy of it until they agree")
            }
        }
        if let newest {
            let size = Self.wireSize(of: newest, valueBytes: (try? GridJSON.encode(newest.value).count) ?? 0)
            // Owners that answered without it, or with an older version; one that did not answer catches up at the next
            // repair pass (a review: the read waited on a push to a stopped owner, past a client's patience).
            for owner in owners where fromOwners.answered.contains(owner) && found[owner] != newest {
                _ = await push([newest], to: owner, bytes: size) as PushOutcome
            }
        }
        return newest
    }

    /// How many peers one read asks at once (its second round asks every peer that is no owner).
    static let readFanOut = 8

    /// The replicas of `key` on `peers`, asked at once (at most `readFanOut` at a time): the good ones found (by peer),
    /// the peers that answered (with a good replica or without one), and a refusal of `mandate` if one refused it.
    private func replicas(
        of key: String, on peers: [String], mandate: PeerTrust.Mandate?
    ) async -> (found: [String: Msg.MemEntry], answered: Set<String>, refusal: GridError?) {
        var found: [String: Msg.MemEntry] = [:]
        var answered: Set<String> = []
        var refusal: GridError?
        let ask: @Sendable (String) async -> (String, Bool, Msg.MemEntry?, GridError?) = { peer in
            let (reached, entry, refused) = await self.replica(of: key, on: peer, mandate: mandate)
            return (peer, reached, entry, refused)
        }
        await withTaskGroup(of: (String, Bool, Msg.MemEntry?, GridError?).self) { group in
            var waiting = peers[...]
            var inFlight = 0
            while inFlight > 0 || !waiting.isEmpty {
                while let peer = waiting.first, inFlight < Self.readFanOut {
                    waiting.removeFirst()
                    inFlight += 1
                    group.addTask { await ask(peer) }
                }
                guard let (peer, reached, entry, refused) = await group.next() else { break }
                inFlight -= 1
                if reached { answered.insert(peer) }
                if let entry { found[peer] = entry }
                // One refusal is kept, the same whichever peer answered first.
                if let refused, refusal.map({ refused.message < $0.message }) ?? true { refusal = refused }
            }
        }
        return (found, answered, refusal)
    }

    /// Peer `peer`'s replica of `key`, read with `mandate` (the key's user's, nil for a public key): whether the peer
    /// answered (a replica it gave that is no good counts as no answer: it proves neither that the key is there nor
    /// that it is not), its entry if it has one, and its refusal if it refused the mandate.
    private func replica(of key: String, on peer: String, mandate: PeerTrust.Mandate?) async -> (Bool, Msg.MemEntry?, GridError?) {
        if peer == selfId {
            return (true, memory.get(key).map { Msg.MemEntry(key: key, value: $0.value, version: $0.version, origin: $0.origin, seal: $0.seal) }, nil)
        }
        let answer: GridMessage
        do {
            answer = try await fetch([key], from: peer, mandate: mandate)
        } catch let e as GridError where e.code == .forbidden {
            // A public key is read with no mandate: a refusal of one is no refusal (a hostile peer's word).
            return (false, nil, mandate == nil ? nil : e)
        } catch {
            return (false, nil, nil)
        }
        guard case .memEntries(let m) = answer else { return (false, nil, nil) }
        // A version this peer would refuse in a `MEM_SYNC` is not taken from an answer either: the read repair would
        // store it here and on the other owners, and a version from the far future pins the key against every write.
        guard let entry = m.entries.first(where: { $0.key == key }) else { return (true, nil, nil) }
        if let refusal = VersionRules.check(entry.version, nowMs: Self.nowMs()) ?? EntryRules.check(key: entry.key, origin: entry.origin, value: entry.value, encodedSize: Self.encodedSize) {
            logger.warning("ignored a replica with a bad version or size", metadata: ["grid.worker.id": "\(peer)", "grid.error": "\(refusal.message)"])
            return (false, nil, nil)
        }
        // Nor one its writer did not seal for the key's person: a peer's answer is a claim.
        if let refusal = checkSeal(of: entry) {
            logger.warning("ignored a replica without a good seal", metadata: ["grid.worker.id": "\(peer)", "grid.error": "\(refusal.message)"])
            return (false, nil, nil)
        }
        return (true, entry, nil)
    }

    /// `MEM_FETCH` of `keys` from `peer` with `mandate`: the mandate itself the first time this peer shows it there,
    /// its reference from then on (sent again whole when the peer no longer holds it).
    private func fetch(_ keys: [String], from peer: String, mandate: PeerTrust.Mandate?) async throws -> GridMessage {
        guard let mandate else { return try await ask(peer, .memFetch(Msg.MemFetch(keys: keys)), timeout: 10).message }
        let ref = mandate.ref
        if mandatesShown[peer]?.contains(ref) == true {
            do {
                return try await ask(peer, .memFetch(Msg.MemFetch(keys: keys, mandateRef: ref)), timeout: 10).message
            } catch let e as GridError where e.code == .mandateUnknown {
                mandatesShown[peer]?.remove(ref)
            }
        }
        let answer = try await ask(peer, .memFetch(Msg.MemFetch(keys: keys, mandate: mandate)), timeout: 10).message
        var shown = mandatesShown[peer, default: []]
        if shown.count >= 256 { shown = [] }
        shown.insert(ref)
        mandatesShown[peer] = shown
        return answer
    }

    /// `user`'s own keys starting with `prefix`, and the public ones (each name once); `truncated` when some may be
    /// missing (a listing held to its bounds, here or by a peer).
    func listMem(prefix: String, local: Bool, user: String) async throws -> (names: [String], truncated: Bool) {
        var names = Set<String>()
        var truncated = false
        for owner in [user, nil] as [String?] {
            let listed = try await listStored(prefix: PeerNamespace.stored(prefix, user: owner, kind: .memory), local: local)
            truncated = truncated || listed.truncated
            for stored in listed.keys {
                if let name = PeerNamespace.name(of: stored, user: owner, kind: .memory) { names.insert(name) }
            }
        }
        return (names.sorted(), truncated)
    }

    /// Stored keys (any namespace) starting with `prefix`: this peer's own replicas (`local`), or every peer's;
    /// `truncated` when some may be missing (a peer's answer held to one line, or more than a listing reads).
    func listStored(prefix: String, local: Bool) async throws -> (keys: [String], truncated: Bool) {
        let mine = memory.keys(prefix: prefix)
        if local { return (mine, false) }
        var all = Set(mine)
        var truncated = false
        for peer in memberIds where peer != selfId {
            let mandate = mandate(for: prefix)
            if case .memKeys(let m)? = try? await ask(peer, .listMem(Msg.ListMem(prefix: prefix, local: true, mandate: mandate)), timeout: 10).message {
                // A peer's answer is a claim: only keys under the prefix, and no more than a listing reads.
                let under = m.keys.filter { $0.hasPrefix(prefix) }
                all.formUnion(under.prefix(2 * config.maxListed))
                truncated = truncated || m.truncated == true || under.count > 2 * config.maxListed
            }
        }
        // A key listed by a stale replica may have been deleted since: keep only keys that read back, the first
        // `maxListed` in name order. (A listing of more gave nothing at all: one user who published that many public
        // keys emptied everyone's listing of the public names.)
        // At most twice that many are read back (a hostile peer listing made-up keys costs a bounded number of reads).
        var live: [String] = []
        for key in all.sorted().prefix(2 * config.maxListed) {
            if live.count >= config.maxListed {
                truncated = true
                break
            }
            do {
                if try await readEntry(key)?.value != nil { live.append(key) }
            } catch {
                // Not read now (its owners did not answer, say): it may be there, so the listing says it may miss some.
                truncated = true
            }
        }
        return (live, truncated || all.count > 2 * config.maxListed)
    }

    /// After the peers changed (and now and then): copy each key to its current owners, drop keys no longer ours.
    func rebalanceMemory() async {
        guard let selfId else { return }
        memory.collectGarbage(now: Self.nowMs())
        let moves = memory.rebalance(selfId: selfId, peers: memberIds, replicas: config.replicas)
        guard !moves.isEmpty else { return }
        var byPeer: [String: [Msg.MemEntry]] = [:]
        for move in moves {
            guard let e = memory.get(move.key) else { continue }
            for peer in move.sendTo {
                byPeer[peer, default: []].append(Msg.MemEntry(key: move.key, value: e.value, version: e.version, origin: e.origin, seal: e.seal))
            }
        }
        // Peers that could not be reached, and the keys each refused (no room): those stay here.
        var failed = Set<String>()
        var refused: [String: Set<String>] = [:]
        func record(_ outcome: PushOutcome, _ peer: String) {
            switch outcome {
            case .stored, .lost: break
            case .refused(_, let keys), .forbidden(_, let keys): refused[peer, default: []].formUnion(keys)
            case .failed: failed.insert(peer)
            }
        }
        for (peer, entries) in byPeer {
            // Batches well under the protocol's line limit.
            var batch: [Msg.MemEntry] = []
            var bytes = 0
            for e in entries {
                let size = Self.wireSize(of: e, valueBytes: (try? GridJSON.encode(e.value).count) ?? 0)
                if bytes + size > 512 << 10 || batch.count >= Self.maxSyncEntries, !batch.isEmpty {
                    record(await push(batch, to: peer, bytes: bytes), peer)
                    batch = []
                    bytes = 0
                }
                batch.append(e)
                bytes += size
            }
            if !batch.isEmpty { record(await push(batch, to: peer, bytes: bytes), peer) }
        }
        var dropped = 0
        for move in moves
        where move.dropAfter && Set(move.sendTo).isDisjoint(with: failed) && !move.sendTo.isEmpty
            && !move.sendTo.contains(where: { refused[$0]?.contains(move.key) == true })
        {
            memory.drop(move.key)
            dropped += 1
        }
        logger.debug("memory rebalanced", metadata: ["grid.keys.moved": "\(moves.count)", "grid.keys.dropped": "\(dropped)"])
    }
}
