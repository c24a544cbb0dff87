import Foundation
import GridCore
import GridPeer
import GridProtocol

/// Distributed memory: keys placed by rendezvous hashing over the online peers, `replicas` copies each, newest
/// version wins. Any peer accepts a request and routes it to the owners.
extension PeerService {
    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    func setMem(_ key: String, _ value: JSONValue) async throws -> Msg.MemResult {
        try PeerNames.validateKey(key)
        let bound = value.encodedSizeBound
        let size = bound <= PeerNames.maxValueBytes ? bound : ((try? GridJSON.encode(value).count) ?? Int.max)
        guard size <= PeerNames.maxValueBytes else {
            throw GridError(.badRequest, "the value is \(size) bytes; the limit is \(PeerNames.maxValueBytes >> 10) KiB")
        }
        // The reply names where the value went; it does not echo the value back.
        return Msg.MemResult(key: key, owners: try await writeEntry(key, value, bytes: size))
    }

    func delMem(_ key: String) async throws -> Msg.MemResult {
        try PeerNames.validateKey(key)
        guard try await readEntry(key)?.value != nil else { throw GridError(.notFound, "no value for key \(String(reflecting: key))") }
        return Msg.MemResult(key: key, owners: try await writeEntry(key, nil))
    }

    func getMem(_ key: String) async throws -> Msg.MemResult {
        try PeerNames.validateKey(key)
        guard let entry = try await readEntry(key), let value = entry.value else {
            throw GridError(.notFound, "no value for key \(String(reflecting: key))")
        }
        return Msg.MemResult(key: key, value: value, owners: Rendezvous.owners(of: key, among: memberIds, replicas: config.replicas))
    }

    /// Writes a new version of `key` (nil deletes) to its owners, all at once; returns the owners that stored it.
    func writeEntry(_ key: String, _ value: JSONValue?, bytes: Int = 0) async throws -> [String] {
        guard let selfId else { throw GridError(.unreachable, "not registered yet") }
        let entry = Msg.MemEntry(key: key, value: value, version: clock.next(nowMs: Self.nowMs()), origin: selfId)
        let owners = Rendezvous.owners(of: key, among: memberIds, replicas: config.replicas)
        var stored: [String] = []
        if owners.contains(selfId) {
            memory.apply(key, MemoryTable.Entry(value: value, version: entry.version, origin: selfId))
            stored.append(selfId)
        }
        let others = owners.filter { $0 != selfId }
        let size = key.utf8.count + bytes + 64
        if others.count == 1 {
            if await push([entry], to: others[0], bytes: size) { stored.append(others[0]) }
        } else if !others.isEmpty {
            await withTaskGroup(of: String?.self) { group in
                for owner in others { group.addTask { await self.push([entry], to: owner, bytes: size) ? owner : nil } }
                for await owner in group { if let owner { stored.append(owner) } }
            }
        }
        guard !stored.isEmpty else {
            throw GridError(.unreachable, "none of the key's owners (\(owners.joined(separator: ", "))) could store it; try again")
        }
        return stored
    }

    /// Stores entries on `peer` (this one included); returns whether it worked. Entries for another peer join the
    /// next `MEM_SYNC` to it: while one is in flight, the writes that arrive meanwhile wait and go together in the next
    /// (group commit), so many concurrent writers share each round trip. `bytes` estimates their size on the wire.
    func push(_ entries: [Msg.MemEntry], to peer: String, bytes: Int) async -> Bool {
        if peer == selfId {
            memory.apply(entries)
            return true
        }
        return await withCheckedContinuation { continuation in
            outgoingSync[peer, default: SyncQueue()].groups.append((entries, bytes, continuation))
            if outgoingSync[peer]?.sending == false {
                outgoingSync[peer]?.sending = true
                Task { await self.drainSync(to: peer) }
            }
        }
    }

    /// Sends the writes waiting for `peer`, a batch at a time (at most 512 KiB or 1,000 entries, and at least one write)
    /// until none wait.
    private func drainSync(to peer: String) async {
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
            queue.groups.removeFirst(taken)
            outgoingSync[peer] = queue
            let ok: Bool
            do {
                _ = try await ask(peer, .memSync(Msg.MemEntries(entries: batch)), timeout: 10)
                ok = true
            } catch {
                logger.debug("could not sync keys", metadata: ["grid.worker.id": "\(peer)", "grid.error": "\(error)"])
                ok = false
            }
            for w in waiters { w.resume(returning: ok) }
        }
        outgoingSync[peer] = nil
    }

    /// The newest replica of `key` among its owners; when they have none (peers just changed), every other peer is
    /// asked. Owners that lacked the newest version get it (read repair).
    func readEntry(_ key: String) async throws -> Msg.MemEntry? {
        let owners = Rendezvous.owners(of: key, among: memberIds, replicas: config.replicas)
        // A replica here answers at once: every write goes to every owner, and one that missed a write (its peer was
        // unreachable) is brought up to date by the next repair pass. Without one here, the owners are asked.
        if let selfId, owners.contains(selfId), let local = memory.get(key) {
            return Msg.MemEntry(key: key, value: local.value, version: local.version, origin: local.origin)
        }
        var found: [String: Msg.MemEntry] = [:]
        var reachable = 0
        for owner in owners {
            let (reached, entry) = await replica(of: key, on: owner)
            if reached { reachable += 1 }
            if let entry { found[owner] = entry }
        }
        if found.isEmpty {
            for peer in memberIds where !owners.contains(peer) {
                let (reached, entry) = await replica(of: key, on: peer)
                if reached { reachable += 1 }
                if let entry { found[peer] = entry }
            }
        }
        if reachable == 0 { throw GridError(.unreachable, "no peer holding this key could be reached; try again") }
        let newest = found.values.max { a, b in
            MemoryTable.Entry(value: b.value, version: b.version, origin: b.origin)
                .isNewer(than: MemoryTable.Entry(value: a.value, version: a.version, origin: a.origin))
        }
        if let newest {
            let size = key.utf8.count + ((try? GridJSON.encode(newest.value).count) ?? 0) + 64
            for owner in owners where found[owner] != newest { _ = await push([newest], to: owner, bytes: size) }
        }
        return newest
    }

    /// Peer `peer`'s replica of `key`: whether the peer answered, and its entry if it has one.
    private func replica(of key: String, on peer: String) async -> (Bool, Msg.MemEntry?) {
        if peer == selfId {
            return (true, memory.get(key).map { Msg.MemEntry(key: key, value: $0.value, version: $0.version, origin: $0.origin) })
        }
        guard case .memEntries(let m)? = try? await ask(peer, .memFetch(Msg.MemFetch(keys: [key])), timeout: 10).message else {
            return (false, nil)
        }
        return (true, m.entries.first { $0.key == key })
    }

    func listMem(prefix: String, local: Bool) async throws -> [String] {
        let mine = memory.keys(prefix: prefix).filter { !$0.hasPrefix(PeerNames.manifestPrefix) || prefix.hasPrefix(PeerNames.manifestPrefix) }
        if local { return mine }
        var all = Set(mine)
        for peer in memberIds where peer != selfId {
            if case .memKeys(let m)? = try? await ask(peer, .listMem(Msg.ListMem(prefix: prefix, local: true)), timeout: 10).message {
                all.formUnion(m.keys)
            }
        }
        // A key listed by a stale replica may have been deleted since: keep only keys that read back.
        var live: [String] = []
        for key in all.sorted() where all.count <= 10_000 {
            if (try? await readEntry(key))??.value != nil { live.append(key) }
        }
        return live
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
                byPeer[peer, default: []].append(Msg.MemEntry(key: move.key, value: e.value, version: e.version, origin: e.origin))
            }
        }
        var failed = Set<String>()
        for (peer, entries) in byPeer {
            // Batches well under the protocol's line limit.
            var batch: [Msg.MemEntry] = []
            var bytes = 0
            for e in entries {
                let size = e.key.utf8.count + ((try? GridJSON.encode(e.value).count) ?? 0) + 64
                if bytes + size > 512 << 10, !batch.isEmpty {
                    if !(await push(batch, to: peer, bytes: bytes)) { failed.insert(peer) }
                    batch = []
                    bytes = 0
                }
                batch.append(e)
                bytes += size
            }
            if !batch.isEmpty, !(await push(batch, to: peer, bytes: bytes)) { failed.insert(peer) }
        }
        var dropped = 0
        for move in moves where move.dropAfter && Set(move.sendTo).isDisjoint(with: failed) && !move.sendTo.isEmpty {
            memory.drop(move.key)
            dropped += 1
        }
        logger.debug("memory rebalanced", metadata: ["grid.keys.moved": "\(moves.count)", "grid.keys.dropped": "\(dropped)"])
    }
}
