import Crypto
public import Foundation
import GridClient
import GridCore
import GridPeer
public import GridProtocol
import Logging
import NIOCore

/// Distributed files: chunks named by SHA-256, placed like memory keys (rendezvous hashing, `replicas` copies), a
/// manifest per file kept in the distributed memory. Every chunk is verified when it arrives, and by the reader
/// (a whole-file check; a reader whose check fails asks again with `verify`, and the peer hashes each chunk); a
/// bad or missing copy is fetched from another owner and rewritten. Chunks travel as raw bulk bytes, a few in flight.
extension PeerService {
    // MARK: - Upload

    func putFile(_ m: Msg.PutFile, caller: Caller, as writer: Writer) async throws -> Reply {
        try PeerNames.validateFileName(m.filename)
        let isPublic = m.isPublic ?? false
        // Refused before any byte is stored: a name whose stored key no other peer would keep (the manifest would stay
        // on this peer alone).
        let stored = PeerNamespace.stored(m.filename, user: isPublic ? nil : caller.user, kind: .file)
        guard stored.utf8.count <= EntryRules.maxStoredKeyBytes else {
            throw GridError(.badRequest, "a file name of \(m.filename.utf8.count) bytes is too long to store (at most about \(PeerNames.maxKeyBytes) bytes)")
        }
        // A public name someone else holds is refused before any byte is stored.
        if isPublic { try await checkPublicFile(m.filename, user: caller.user) }
        if let text = m.data {
            // The seed's form: the whole (small) file in base64.
            guard let data = Data(base64Encoded: text) else { throw GridError(.badRequest, "data is not valid base64") }
            var chunks: [String] = []
            var offset = 0
            // In use (not reclaimed) until the manifest that names them is written.
            let pinned = newPin()
            defer { unpin(pinned) }
            while offset < data.count {
                let part = ByteBuffer(bytes: data[offset..<min(data.count, offset + PeerNames.chunkSize)])
                chunks.append(try await storeChunk(part))
                pin(chunks[chunks.count - 1], under: pinned)
                offset += part.readableBytes
            }
            let manifest = Msg.FileManifest(
                filename: m.filename, size: Int64(data.count), sha256: ChunkStore.sha256(data), chunkSize: PeerNames.chunkSize, chunks: chunks)
            try await saveManifest(manifest, as: writer, isPublic: isPublic)
            return (.fileStored(manifest), nil)
        }
        guard let size = m.size, size >= 0, size <= PeerNames.maxFileBytes else {
            throw GridError(.badRequest, "PUT_FILE needs data (base64) or a size of 0…\(PeerNames.maxFileBytes >> 30) GiB")
        }
        // Taken before the quota is checked: it may wait on the manager, and the check and the upload's place must
        // not have a wait between them (concurrent uploads would all pass).
        let stamp = try await stamp()
        let now = Date().timeIntervalSince1970
        uploads = uploads.filter { now - $0.value.lastUsed < 600 }
        if let refusal = config.uploadQuota.refusal(user: caller.user, openOwners: uploads.values.lazy.map(\.user)) {
            throw GridError(.rateLimited, refusal)
        }
        let id = UUID().uuidString.lowercased()
        uploads[id] = Upload(filename: m.filename, user: caller.user, isPublic: isPublic, size: size, lastUsed: now, writer: writer, stamp: stamp)
        return (.upload(Msg.Upload(uploadId: id, chunkSize: PeerNames.chunkSize, window: PeerNames.uploadWindow)), nil)
    }

    /// One chunk of an upload. A client may send up to `PeerNames.uploadWindow` chunks before the first of them is
    /// answered, so they may arrive here out of order within that window: each is stored as it comes, and the whole
    /// file is hashed in chunk order (a chunk ahead of its turn waits in memory for the ones before it, at most the
    /// window's worth, and no more than `UploadQuota` allows a user and the peer). A chunk outside the window, or one
    /// already received, is refused.
    func putFileChunk(_ m: Msg.PutFileChunk, payload: ByteBuffer?, caller: Caller) async throws -> Reply {
        guard var upload = uploads[m.uploadId], upload.user == caller.user else {
            throw GridError(.notFound, "no upload \(m.uploadId) in progress here (it may have expired; start again)")
        }
        let count = PeerNames.chunkCount(size: upload.size, chunkSize: PeerNames.chunkSize)
        guard m.index >= 0, m.index < count else {
            throw GridError(.badRequest, "this upload has chunks 0…\(count - 1), not \(m.index)")
        }
        guard m.index >= upload.next, upload.early[m.index] == nil else {
            throw GridError(.badRequest, "chunk \(m.index) was already received")
        }
        guard m.index < min(count, upload.next + PeerNames.uploadWindow) else {
            throw GridError(
                .badRequest, "chunk \(m.index) is out of order: the next chunks are \(upload.next)…\(min(count, upload.next + PeerNames.uploadWindow) - 1)")
        }
        let want = PeerNames.chunkLength(index: m.index, size: upload.size, chunkSize: PeerNames.chunkSize)
        guard let payload, payload.readableBytes == want, want > 0 else {
            throw GridError(.badRequest, "chunk \(m.index) must be \(want) bytes of bulk data (got \(payload?.readableBytes ?? 0))")
        }
        // The chunk stays in the buffer it arrived in: hashed, sent on and written from there, never copied.
        let bytes = payload
        // Handed to the whole-file hash in chunk order, here, before any suspension (the hashing itself runs off the
        // actor); its own hash takes its place in the list once it is stored.
        if upload.chunks.isEmpty { upload.chunks = Array(repeating: "", count: count) }
        if m.index == upload.next {
            upload.hasher.feed(bytes)
            upload.next += 1
            while let ahead = upload.early.removeValue(forKey: upload.next) {
                upload.hasher.feed(ahead)
                upload.next += 1
            }
        } else {
            let held = uploads.values.lazy.map { (user: $0.user, bytes: $0.early.values.reduce(0) { $0 + $1.readableBytes }) }
            if let refusal = config.uploadQuota.earlyRefusal(user: caller.user, bytes: bytes.readableBytes, held: held) {
                throw GridError(.rateLimited, refusal)
            }
            upload.early[m.index] = bytes
        }
        uploads[m.uploadId] = upload
        let hash = try await storeChunk(bytes)
        guard var current = uploads[m.uploadId] else { throw GridError(.notFound, "the upload was cancelled") }
        current.chunks[m.index] = hash
        current.lastUsed = Date().timeIntervalSince1970
        uploads[m.uploadId] = current
        return (.ok(Msg.Ok(detail: hash)), nil)
    }

    func putFileEnd(_ m: Msg.PutFileEnd, caller: Caller) async throws -> Msg.FileManifest {
        // Another person's upload id is refused before anything changes (it was dropped first).
        guard let upload = uploads[m.uploadId], upload.user == caller.user else {
            throw GridError(.notFound, "no upload \(m.uploadId) in progress here")
        }
        uploads[m.uploadId] = nil
        // Its chunks stay in use (not reclaimed) until the manifest that names them is written.
        let pinned = newPin(upload.chunks.filter { !$0.isEmpty })
        defer { unpin(pinned) }
        let expected = PeerNames.chunkCount(size: upload.size, chunkSize: PeerNames.chunkSize)
        let received = upload.chunks.filter { !$0.isEmpty }.count
        guard upload.next == expected, received == expected else {
            throw GridError(.badRequest, "the upload has \(received) of \(expected) chunks")
        }
        let sha = await upload.hasher.finish()
        if let claimed = m.sha256, claimed.lowercased() != sha {
            throw GridError(.conflict, "the file's SHA-256 is \(sha), not \(claimed): it changed in transit; upload it again")
        }
        let manifest = Msg.FileManifest(filename: upload.filename, size: upload.size, sha256: sha, chunkSize: PeerNames.chunkSize, chunks: upload.chunks)
        try await saveManifest(manifest, as: upload.writer, isPublic: upload.isPublic, at: upload.stamp)
        logger.info("file stored", metadata: ["grid.file": "\(upload.filename)", "grid.file.size": "\(upload.size)"])
        return manifest
    }

    /// Keeps `manifest` as `writer`'s file, or (`isPublic`) as a public one only they may replace or delete.
    /// `stamp`: the version and credential to seal it with (an upload's, taken when it began).
    private func saveManifest(_ manifest: Msg.FileManifest, as writer: Writer, isPublic: Bool, at stamp: Stamp? = nil) async throws {
        let user = writer.user
        let encoded = try GridJSON.encode(manifest)
        let value = try GridJSON.decode(JSONValue.self, from: encoded)
        let key = PeerNamespace.stored(manifest.filename, user: isPublic ? nil : user, kind: .file)
        if isPublic {
            try await checkPublicFile(manifest.filename, user: user)
            _ = try await writeEntry(key, PeerNamespace.wrap(value, owner: user), bytes: encoded.count + user.utf8.count + 32, as: writer, at: stamp)
        } else {
            _ = try await writeEntry(key, value, bytes: encoded.count, as: writer, at: stamp)
        }
        manifestCache[key] = (manifest, isPublic ? user : nil, Date().timeIntervalSince1970)
    }

    /// Refuses when public file `filename` is held by another user.
    private func checkPublicFile(_ filename: String, user: String) async throws {
        let key = PeerNamespace.stored(filename, user: nil, kind: .file)
        if let e = PeerNamespace.mayWritePublic(current: try await readEntry(key)?.value, user: user, name: filename) { throw e }
    }

    /// Deletes `writer`'s own file `filename`, or the public one they published under that name.
    func deleteFile(_ filename: String, as writer: Writer) async throws {
        let user = writer.user
        try PeerNames.validateFileName(filename)
        let mine = PeerNamespace.stored(filename, user: user, kind: .file)
        let shared = PeerNamespace.stored(filename, user: nil, kind: .file)
        defer {
            manifestCache[mine] = nil
            manifestCache[shared] = nil
        }
        if try await readEntry(mine)?.value != nil {
            _ = try await writeEntry(mine, nil, as: writer)
            return
        }
        guard let current = try await readEntry(shared)?.value else {
            throw GridError(.notFound, "no file named \(String(reflecting: filename)) is stored")
        }
        if let e = PeerNamespace.mayWritePublic(current: current, user: user, name: filename) { throw e }
        _ = try await writeEntry(shared, nil, as: writer)
    }

    /// Stores a chunk on its owners (here and/or on other peers); at least one copy must succeed, the repair pass
    /// makes up missing ones. Returns its hash. The copies for other peers are sent first, by child tasks, and cross
    /// the network (and are checked and written there) while the copy here is written.
    func storeChunk(_ bytes: ByteBuffer) async throws -> String {
        // Hashed off the actor: the chunks of an upload's window (and other requests) go on meanwhile, on both cores.
        let hash = await Self.offActor { ChunkStore.sha256(bytes) }
        let owners = Rendezvous.owners(of: hash, among: memberIds, replicas: config.replicas)
        // Each copy's failure, by owner; a copy that is stored has none.
        var outcomes: [(owner: String, error: String?)] = []
        var targets: [(owner: String, link: PeerLink)] = []
        for owner in owners where owner != selfId {
            do { targets.append((owner, try await link(to: owner))) } catch { outcomes.append((owner, "\(error)")) }
        }
        let payload = bytes
        let here = owners.contains(selfId ?? "")
        let (local, remote) = await withTaskGroup(of: (String, PeerLink, GridError?, String?).self) { group in
            for (owner, link) in targets {
                group.addTask {
                    do {
                        _ = try await link.request(.chunkPut(Msg.ChunkData(hash: hash)), payload: payload, timeout: 120)
                        return (owner, link, nil, nil)
                    } catch {
                        return (owner, link, error as? GridError, "\(error)")
                    }
                }
            }
            var local: String??
            if here {
                // Written off the actor too (a disk write of up to a chunk).
                let store = chunks
                local = .some(await Self.offActor { () -> String? in
                    do {
                        try store.put(hash, bytes, hashedHere: true)
                        return nil
                    } catch { return "\(error)" }
                })
            }
            var remote: [(String, PeerLink, GridError?, String?)] = []
            for await result in group { remote.append(result) }
            return (local, remote)
        }
        if let local { outcomes.append((selfId ?? "", local)) }
        for (owner, link, gridError, error) in remote {
            outcomes.append((owner, error))
            if let gridError { await dropIfBroken(link, to: owner, gridError) }
        }
        for (owner, error) in outcomes {
            if let error { logger.info("could not place a chunk copy", metadata: ["grid.worker.id": "\(owner)", "grid.error": "\(error)"]) }
        }
        if !outcomes.contains(where: { $0.error == nil }) {
            // No owner reachable: keep it here so the repair pass can place it.
            do { try chunks.put(hash, bytes, hashedHere: true) } catch let e as GridError where e.code == .insufficientStorage {
                throw GridError(.insufficientStorage, "no peer has room for the file: \(e.message)")
            } catch {
                throw GridError(.unreachable, "no peer could store the chunk: \(outcomes.last?.error ?? "\(error)")")
            }
        }
        return hash
    }

    /// Runs `body` on the shared pool, not on this actor: CPU or disk work that needs none of the actor's state.
    @concurrent nonisolated static func offActor<T: Sendable>(_ body: @Sendable () -> T) async -> T { body() }

    // MARK: - Download

    /// The manifest of `user`'s own file `filename`, else of the public one of that name.
    func manifest(_ filename: String, user: String) async throws -> Msg.FileManifest {
        try await resolve(filename, user: user).manifest
    }

    /// The manifest of `user`'s own file `filename`, else of the public one of that name and who published it (so a
    /// reader is never handed a stranger's file under a name it took for its own without being told).
    func resolve(_ filename: String, user: String) async throws -> (manifest: Msg.FileManifest, publishedBy: String?) {
        try PeerNames.validateFileName(filename)
        if let (m, _) = try await manifest(stored: PeerNamespace.stored(filename, user: user, kind: .file), isPublic: false) { return (m, nil) }
        if let (m, publisher) = try await manifest(stored: PeerNamespace.stored(filename, user: nil, kind: .file), isPublic: true) {
            // Their own public file is theirs: nothing to tell them.
            return (m, publisher == user ? nil : publisher)
        }
        throw GridError(.notFound, "no file named \(String(reflecting: filename)) is stored")
    }

    /// The manifest under stored key `key`, and (public) who published it.
    private func manifest(stored key: String, isPublic: Bool) async throws -> (Msg.FileManifest, String?)? {
        let now = Date().timeIntervalSince1970
        if let hit = manifestCache[key], now - hit.at < 5 { return (hit.manifest, hit.publisher) }
        guard let entry = try await readEntry(key), var value = entry.value else { return nil }
        var publisher: String?
        if isPublic {
            guard let (owner, inner) = PeerNamespace.unwrap(value) else { return nil }
            value = inner
            publisher = owner
        }
        let manifest = try GridJSON.decode(Msg.FileManifest.self, from: GridJSON.encode(value))
        guard PeerNames.isConsistent(size: manifest.size, chunkSize: manifest.chunkSize, chunks: manifest.chunks, sha256: manifest.sha256) else {
            throw GridError(.conflict, "the stored manifest of this file is damaged or forged (its size, chunks and hashes disagree)")
        }
        if manifestCache.count > 256 { manifestCache = [:] }
        manifestCache[key] = (manifest, publisher, now)
        return (manifest, publisher)
    }

    func getFile(_ filename: String, user: String) async throws -> Msg.FileInfo {
        let (m, publisher) = try await resolve(filename, user: user)
        var inline: String?
        if m.size <= Int64(PeerNames.inlineFileBytes) {
            var data = Data()
            for hash in m.chunks {
                data.append(contentsOf: try await fetchChunk(hash))
                guard data.count <= m.size else { throw GridError(.conflict, "\(m.filename) is longer than its manifest says") }
            }
            inline = data.base64EncodedString()
        }
        return Msg.FileInfo(
            filename: m.filename, size: m.size, sha256: m.sha256, chunkSize: m.chunkSize, chunkCount: m.chunks.count, data: inline,
            publishedBy: publisher)
    }

    /// One chunk of a stored file. A copy here is read off the actor, straight into the reply's buffer, so chunk reads
    /// run in parallel and other requests do not wait for the disk; it is hashed only when the reader asks (`verify`),
    /// as one whose check of the whole file failed does. A missing or corrupt one is fetched (and repaired) through
    /// the actor.
    @concurrent
    nonisolated func getFileChunk(_ req: Msg.GetFileChunk, user: String) async throws -> Reply {
        let m = try await manifest(req.filename, user: user)
        guard req.index >= 0, req.index < m.chunks.count else {
            throw GridError(.badRequest, "\(req.filename) has chunks 0…\(m.chunks.count - 1), not \(req.index)")
        }
        let hash = m.chunks[req.index]
        let reply = Msg.ChunkData(hash: hash, index: req.index)
        do {
            // Unverified unless asked: the reader hashes the whole file, and asks again with `verify` when that fails.
            if let local = try chunks.readBuffer(hash, verify: req.verify == true) { return (.fileChunk(reply), local) }
        } catch is ChunkStore.CorruptChunk {
            logger.warning("corrupt chunk detected; fetching a replica", metadata: ["grid.chunk": "\(hash)"])
            return (.fileChunk(reply), ByteBuffer(bytes: try await fetchChunk(hash, repairHere: true)))
        }
        return (.fileChunk(reply), ByteBuffer(bytes: try await fetchChunk(hash)))
    }

    /// A verified copy of a chunk: here if intact, else from its owners, else from any peer. A copy that belongs
    /// here (or was corrupt here) is rewritten.
    func fetchChunk(_ hash: String, repairHere corruptHere: Bool = false) async throws -> [UInt8] {
        guard PeerNames.isChunkHash(hash) else { throw GridError(.badRequest, "bad chunk name") }
        var repairHere = corruptHere
        do {
            if let bytes = try chunks.read(hash) { return bytes }
        } catch is ChunkStore.CorruptChunk {
            logger.warning("corrupt chunk detected; fetching a replica", metadata: ["grid.chunk": "\(hash)"])
            repairHere = true
        }
        let owners = Rendezvous.owners(of: hash, among: memberIds, replicas: config.replicas)
        if owners.contains(selfId ?? "") { repairHere = true }
        let others = owners.filter { $0 != selfId } + memberIds.filter { !owners.contains($0) && $0 != selfId }
        for peer in others {
            guard let reply = try? await ask(peer, .chunkGet(Msg.ChunkData(hash: hash)), timeout: 120), case .chunkData = reply.message,
                let payload = reply.payload
            else { continue }
            let bytes = Array(payload.readableBytesView)
            guard ChunkStore.sha256(bytes) == hash else {
                logger.warning("a peer sent a corrupt chunk", metadata: ["grid.worker.id": "\(peer)", "grid.chunk": "\(hash)"])
                continue
            }
            if repairHere {
                do {
                    try chunks.put(hash, bytes)
                    logger.info("chunk repaired from a replica", metadata: ["grid.chunk": "\(hash)", "grid.worker.id": "\(peer)"])
                } catch {}
            }
            return bytes
        }
        throw GridError(.notFound, "no intact copy of chunk \(hash.prefix(12))… is reachable")
    }

    /// `user`'s own files starting with `prefix`, and the public ones (a name of their own first); `truncated` when
    /// some may be missing (a listing held to its bounds, here or by a peer).
    func listFiles(prefix: String, user: String) async throws -> (files: [Msg.FileManifest], truncated: Bool) {
        var names = Set<String>()
        var truncated = false
        for owner in [user, nil] as [String?] {
            let listed = try await listStored(prefix: PeerNamespace.stored(prefix, user: owner, kind: .file), local: false)
            truncated = truncated || listed.truncated
            for stored in listed.keys {
                if let name = PeerNamespace.name(of: stored, user: owner, kind: .file) { names.insert(name) }
            }
        }
        var out: [Msg.FileManifest] = []
        for name in names.sorted().prefix(1000) {
            if let m = try? await manifest(name, user: user) { out.append(m) }
        }
        return (out, truncated || names.count > 1000)
    }

    // MARK: - Job inputs and outputs

    /// Fetches `user`'s stored file `filename` (or the public one) into `path`, chunk by chunk (for a job of `user`:
    /// `submit --input grid:NAME`); at most `maxBytes`, checked against the manifest before anything is written and
    /// against what is written (a peer's manifest is a claim). `diskBytes`: what this worker's disk can take now; a file
    /// larger is refused as `insufficientStorage` (another worker may have the room). Returns the bytes written, and
    /// who published the file when it was the public one (`user` has none of that name).
    @discardableResult
    public func fetchFile(
        _ filename: String, to path: String, user: String, maxBytes: Int64, diskBytes: Int64 = .max
    ) async throws -> (bytes: Int64, publishedBy: String?) {
        let (m, publisher) = try await resolve(filename, user: user)
        guard m.size >= 0, m.size <= maxBytes, Int64(m.chunks.count) <= max(1, m.size) else {
            throw GridError(.badRequest, "\(filename) is \(m.size) bytes in \(m.chunks.count) chunks; a job's grid inputs may take \(maxBytes) bytes")
        }
        guard m.size <= diskBytes else {
            throw GridError(.insufficientStorage, "\(filename) is \(m.size) bytes; this worker's disk has room for \(max(0, diskBytes)) now")
        }
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: path, contents: nil), let out = FileHandle(forWritingAtPath: path) else {
            throw GridError(.internal, "cannot write \(path)")
        }
        defer { try? out.close() }
        var hasher = SHA256()
        var written: Int64 = 0
        for hash in m.chunks {
            let bytes = try await fetchChunk(hash)
            written += Int64(bytes.count)
            guard written <= m.size else { throw GridError(.conflict, "\(filename) is longer than its manifest says") }
            hasher.update(data: bytes)
            try out.write(contentsOf: Data(bytes))
        }
        let sha = Hex.string(hasher.finalize())
        guard written == m.size, sha == m.sha256 else { throw GridError(.conflict, "\(filename) does not match its manifest") }
        return (written, publisher)
    }

    /// Stores `data` as `ticket.user`'s file `filename` (a job's output, for `submit --save-outputs`), under the
    /// manager's write ticket for this worker (`JOB_ASSIGN`): the peers that keep the manifest check it.
    public func storeFile(_ filename: String, _ data: Data, ticket: PeerTrust.WriteTicket) async throws -> Msg.FileManifest {
        try PeerNames.validateFileName(filename)
        guard filename.hasPrefix(ticket.prefix) else {
            throw GridError(.forbidden, "the job's write ticket covers files named \(String(reflecting: ticket.prefix))…, not \(filename)")
        }
        var chunks: [String] = []
        var offset = 0
        // In use (not reclaimed) until the manifest that names them is written.
        let pinned = newPin()
        defer { unpin(pinned) }
        while offset < data.count {
            let part = ByteBuffer(bytes: data[offset..<min(data.count, offset + PeerNames.chunkSize)])
            chunks.append(try await storeChunk(part))
            pin(chunks[chunks.count - 1], under: pinned)
            offset += part.readableBytes
        }
        let manifest = Msg.FileManifest(
            filename: filename, size: Int64(data.count), sha256: ChunkStore.sha256(data), chunkSize: PeerNames.chunkSize, chunks: chunks)
        try await saveManifest(manifest, as: Writer(user: ticket.user, authority: PeerTrust.Authority(ticket: ticket)), isPublic: false)
        return manifest
    }

    // MARK: - Repair

    /// Gives every chunk held here its full set of owners (copying where one lacks it), and lets go of chunks that
    /// are no longer ours once their owners have them.
    func repairChunks() async {
        guard let selfId else { return }
        // The folder listed, each chunk's owners found, and each chunk read (hashed) off the actor: a pass over
        // thousands of chunks held up every memory and file request while it ran.
        let store = chunks
        let (members, replicas) = (memberIds, config.replicas)
        let (byOwner, owned) = await Self.offActor { () -> ([String: [String]], [String: [String]]) in
            var byOwner: [String: [String]] = [:]
            var owned: [String: [String]] = [:]
            for hash in store.list() {
                let owners = Rendezvous.owners(of: hash, among: members, replicas: replicas)
                owned[hash] = owners
                for o in owners where o != selfId { byOwner[o, default: []].append(hash) }
            }
            return (byOwner, owned)
        }
        // What `GET_PEER_STATUS` says is held, counted here rather than on each status request.
        counted(chunks: owned.count)
        guard !owned.isEmpty else { return }
        var confirmed: [String: Set<String>] = [:]  // hash → owners known to hold it
        for (peer, hashes) in byOwner {
            for start in stride(from: 0, to: hashes.count, by: 5000) {
                let batch = Array(hashes[start..<min(hashes.count, start + 5000)])
                guard case .chunkHave(let have)? = try? await ask(peer, .chunkHas(Msg.ChunkHashes(hashes: batch)), timeout: 30).message else {
                    continue
                }
                let present = Set(have.hashes)
                for hash in batch {
                    if present.contains(hash) {
                        confirmed[hash, default: []].insert(peer)
                        continue
                    }
                    guard let bytes = await Self.offActor({ try? store.read(hash) }) else { continue }
                    // The new copy keeps this one's age, so that a chunk no file names goes from every peer in time.
                    let put = Msg.ChunkData(hash: hash, storedAt: chunks.storedAt(hash))
                    if (try? await ask(peer, .chunkPut(put), payload: ByteBuffer(bytes: bytes), timeout: 120)) != nil {
                        confirmed[hash, default: []].insert(peer)
                        logger.info("chunk re-replicated", metadata: ["grid.chunk": "\(hash)", "grid.worker.id": "\(peer)"])
                    }
                }
            }
        }
        for (hash, owners) in owned where !owners.contains(selfId) && !owners.isEmpty {
            if Set(owners).isSubset(of: confirmed[hash] ?? []) { chunks.delete(hash) }
        }
    }
}

extension PeerService {
    // MARK: - Reclaiming chunks no file names (`ChunkReclaim`)

    /// The digest of the membership this peer sees (its sorted ids), for `CHUNK_REFS`.
    var membershipDigest: String {
        ChunkStore.sha256(Array(memberIds.sorted().joined(separator: "\n").utf8))
    }

    /// Chunks in use here that no manifest names yet: those of uploads in progress, and of files being stored now.
    var chunksBeingStored: Set<String> {
        var out = Set(uploads.values.lazy.flatMap(\.chunks).filter { !$0.isEmpty })
        for hashes in pinnedChunks.values { out.formUnion(hashes) }
        return out
    }

    /// Keeps `hash` in use under `pin` until `unpin(pin)`: the chunks of a file whose manifest is not written yet.
    func pin(_ hash: String, under pin: Int) { pinnedChunks[pin, default: []].append(hash) }

    /// A new pin (see `pin(_:under:)`).
    func newPin(_ hashes: [String] = []) -> Int {
        nextPin &+= 1
        pinnedChunks[nextPin] = hashes
        return nextPin
    }

    func unpin(_ pin: Int) { pinnedChunks[pin] = nil }

    /// Of `asked`, the chunks this peer knows a use for: named by a manifest it holds, or by a file being stored here,
    /// or held here within their lease (a chunk goes only once every copy is past it).
    func chunksInUse(among asked: [String]) async -> [String] {
        let storing = chunksBeingStored
        let (memory, store, kept) = (memory, chunks, ChunkReclaim.keptFor(lease: config.chunkLeaseSeconds))
        return await Self.offActor {
            let wanted = Set(asked)
            let named = ChunkReclaim.references(in: memory.entries, among: wanted)
            let now = Date().timeIntervalSince1970
            return asked.filter { hash in
                if named.contains(hash) || storing.contains(hash) { return true }
                guard let at = store.storedAt(hash) else { return false }
                return !ChunkReclaim.isPastLease(modified: Double(at), now: now, lease: kept)
            }
        }
    }

    /// Renews the leases of the chunks that the manifests held here, and the files being stored here, name: on their
    /// owners (`CHUNK_KEEP`, and here). Every eighth of the lease (a scan reads every memory entry).
    func renewChunkLeases() async {
        guard let selfId else { return }
        let (lease, now) = (config.chunkLeaseSeconds, Date().timeIntervalSince1970)
        guard ChunkReclaim.isScanDue(scanned: leaseScannedAt, now: now, lease: lease) else { return }
        leaseScannedAt = now
        let memory = memory
        let named = await Self.offActor { ChunkReclaim.references(in: memory.entries) }.union(chunksBeingStored)
        guard !named.isEmpty else {
            // Nothing here yet (a peer just started: its manifests come back with the rebalance): looked at again soon.
            leaseScannedAt = now - lease / 8 + min(lease / 64, 300)
            return
        }
        var byOwner: [String: [String]] = [:]
        for hash in named {
            for owner in Rendezvous.owners(of: hash, among: memberIds, replicas: config.replicas) { byOwner[owner, default: []].append(hash) }
        }
        let store = chunks
        if let mine = byOwner.removeValue(forKey: selfId) { await Self.offActor { for hash in mine { store.renew(hash) } } }
        var failed: [String] = []
        for (owner, hashes) in byOwner {
            for start in stride(from: 0, to: hashes.count, by: ChunkReclaim.maxPerKeep) {
                let batch = Array(hashes[start..<min(hashes.count, start + ChunkReclaim.maxPerKeep)])
                do { _ = try await ask(owner, .chunkKeep(Msg.ChunkHashes(hashes: batch)), timeout: 30) } catch {
                    failed.append(owner)
                    break
                }
            }
        }
        // Tried again soon (in 5 minutes, or a 64th of a short lease), not at every pass: a scan reads every memory
        // entry here, and a peer may stay unreachable for a while.
        if !failed.isEmpty {
            leaseScannedAt = now - lease / 8 + min(lease / 64, 300)
            logger.info("could not renew chunk leases on some peers", metadata: ["grid.peers": "\(failed.map { $0.prefix(64) })"])
        }
    }

    /// `CHUNK_KEEP`: renews the copies here of chunks a peer's manifests name (a claim: the worst a liar does is keep
    /// chunks).
    func keepChunks(_ hashes: [String]) async -> Int {
        let store = chunks
        let asked = Array(hashes.prefix(ChunkReclaim.maxPerKeep))
        return await Self.offActor { asked.reduce(0) { $0 + (store.renew($1) ? 1 : 0) } }
    }

    /// Deletes the chunks held here that no file names any more, anywhere (see `ChunkReclaim`): past their lease, and
    /// named by nothing this peer or any other holds. Nothing goes unless every peer answered, from the same view of
    /// a membership unchanged for a while.
    func reclaimChunks() async {
        guard let selfId, let since = membershipChangedAt,
            ChunkReclaim.isSettled(changedAt: since, now: Self.uptime(), stable: config.reclaimStableSeconds)
        else { return }
        let (store, lease) = (chunks, ChunkReclaim.keptFor(lease: config.chunkLeaseSeconds))
        let (members, replicas) = (memberIds, config.replicas)
        // Only a chunk's owners reclaim it; a copy elsewhere is the repair pass's (it may be the only one).
        let old = await Self.offActor {
            store.pastLease(now: Date().timeIntervalSince1970, lease: lease).filter {
                Rendezvous.owners(of: $0, among: members, replicas: replicas).contains(selfId)
            }
        }
        guard !old.isEmpty else { return }
        let used = Set(await chunksInUse(among: old))
        // In no fixed order: a round asks about at most `maxPerRound`, and one that always began with the same
        // (kept) chunks would never reach the rest.
        let candidates = Array(old.filter { !used.contains($0) }.shuffled().prefix(ChunkReclaim.maxPerRound))
        guard !candidates.isEmpty else { return }
        let digest = membershipDigest
        let others = memberIds.filter { $0 != selfId }
        let request = Msg.ChunkRefs(hashes: candidates, members: digest)
        let answers = await withTaskGroup(of: (String, ChunkReclaim.Answer?).self) { group in
            for peer in others {
                group.addTask {
                    guard case .chunkUsed(let m)? = try? await self.ask(peer, .chunkRefs(request), timeout: 30).message else { return (peer, nil) }
                    return (peer, ChunkReclaim.Answer(referenced: Set(m.hashes.prefix(ChunkReclaim.maxPerRound)), members: m.members))
                }
            }
            var out: [String: ChunkReclaim.Answer] = [:]
            for await (peer, answer) in group { out[peer] = answer }
            return out
        }
        // The membership changed while the others were asked: manifests may be moving; the next round decides.
        guard membershipChangedAt == since else { return }
        switch ChunkReclaim.verdict(candidates: candidates, others: others, members: digest, answers: answers) {
        case .keepAll(let why):
            logger.info("chunks no file names are kept this round", metadata: ["grid.chunks": "\(candidates.count)", "grid.reason": "\(why)"])
        case .delete(let hashes):
            // A manifest or file being stored that came here meanwhile keeps its chunks too.
            let usedNow = Set(await chunksInUse(among: hashes))
            let going = hashes.filter { !usedNow.contains($0) }
            let (count, freed) = await Self.offActor { () -> (Int, Int64) in
                var count = 0
                var freed: Int64 = 0
                for hash in going {
                    guard let bytes = store.reclaim(hash, now: Date().timeIntervalSince1970, lease: lease) else { continue }
                    count += 1
                    freed = StorageBudget.sum(freed, bytes)
                }
                return (count, freed)
            }
            if count > 0 {
                logger.info(
                    "reclaimed chunks no file names", metadata: ["grid.chunks": "\(count)", "grid.bytes": "\(freed)", "grid.kept": "\(candidates.count - count)"])
            }
        }
    }
}

/// An upload's whole-file SHA-256, computed in chunk order on a serial queue of its own: the peer's actor only hands
/// each chunk over, so hashing a large file never holds up the peer's other requests (issue 17). Chunks are fed in
/// order by the actor, and the queue keeps that order.
final class OrderedHasher: @unchecked Sendable {
    // Safe: `hasher` is read and written only on `queue`.
    private var hasher = SHA256()
    private let queue = DispatchQueue(label: "campusgrid.upload-hash")

    func feed(_ bytes: ByteBuffer) {
        queue.async { bytes.withUnsafeReadableBytes { self.hasher.update(bufferPointer: $0) } }
    }

    /// The digest (hex) of everything fed, once the queue has hashed it.
    func finish() async -> String {
        await withCheckedContinuation { (c: CheckedContinuation<String, Never>) in
            queue.async { c.resume(returning: Hex.string(self.hasher.finalize())) }
        }
    }
}
