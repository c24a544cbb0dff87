public import GridCore

/// Messages of the peer services (seed 003): function tasks, distributed memory and files, membership.
/// Clients and peers send them to a worker's peer port; `AUTH_CHECK`, `GET_BEST_PEER` and `PEERS` also travel on the
/// worker ⇄ manager link. See docs/PROTOCOL.md.
extension Msg {
    /// What a peer's reply may carry in its line, leaving room for the rest of the line: a reader refuses a line over
    /// `FrameLimits.maxLineBytes` (1 MiB) and closes its connection for it. Listings stop there (`MemKeys`,
    /// `FileList`), a `MEM_FETCH` whose answer would pass it is refused, and `GridFrameWriter` answers `ERROR` in place
    /// of any longer line.
    public static let replyBudgetBytes = 900 << 10

    /// The first of `items`, in order, whose `size` together stays within `budget`, and whether any were left out.
    static func fitting<T>(_ items: [T], budget: Int, size: (T) -> Int) -> (kept: [T], cut: Bool) {
        var left = budget
        var kept: [T] = []
        for item in items {
            left -= size(item)
            if left < 0 { break }
            kept.append(item)
        }
        return (kept, kept.count < items.count)
    }

    /// A peer as the manager announces it: where its peer port is.
    public struct PeerInfo: Hashable, Sendable, Codable {
        public var workerId: String
        public var name: String
        public var host: String
        public var port: Int
        public var webPort: Int?
        public init(workerId: String, name: String, host: String, port: Int, webPort: Int? = nil) {
            self.workerId = workerId
            self.name = name
            self.host = host
            self.port = port
            self.webPort = webPort
        }
    }

    /// Manager → workers: the online peers, sent whenever the set changes.
    public struct Peers: Hashable, Sendable, Codable {
        public var peers: [PeerInfo]
        /// Workers that are no peers for cause (their join token revoked, or quarantined) and may still hold a
        /// credential given before that: a peer refuses it (`PeerTrust.Bars`). Nil from older managers.
        public var barred: [PeerBar]?
        public init(peers: [PeerInfo], barred: [PeerBar]? = nil) {
            self.peers = peers
            self.barred = barred
        }
    }

    /// A worker barred from the peers: its credentials that expire at or before `before` are refused.
    public struct PeerBar: Hashable, Sendable, Codable {
        public var workerId: String
        public var before: Int64
        public init(workerId: String, before: Int64) {
            self.workerId = workerId
            self.before = before
        }
    }

    /// Worker → manager, with `certificate` (and an empty `token`): does the token this person's certificate was
    /// granted under still stand (`PeerTrust.Standing`)? The answer is `AUTH_OK` (with no ticket) or an `ERROR`. A
    /// `token` alone (what peers asked for clients older than `SESSION`) is refused: a peer checks no tokens.
    public struct AuthCheck: Hashable, Sendable, Codable {
        public var token: String
        public var certificate: PeerTrust.UserCertificate?
        public init(token: String) { self.token = token }
        public init(certificate: PeerTrust.UserCertificate) {
            self.token = ""
            self.certificate = certificate
        }
    }

    public struct AuthOk: Hashable, Sendable, Codable {
        public var user: String
        /// Always `api`: the manager answers only for people's API tokens (a join token is refused).
        public var kind: String
        /// The user ticket for the asking peer: it may forward work on this user's behalf until it expires.
        public var ticket: PeerTrust.Ticket?
        public init(user: String, kind: String, ticket: PeerTrust.Ticket? = nil) {
            self.user = user
            self.kind = kind
            self.ticket = ticket
        }
    }

    /// Which online peer is least loaded? `prefer` wins ties (the asking peer, to save a hop). A peer asking where to
    /// send one of its tasks names the task (`taskId`): the manager then counts that task on the peer it names until
    /// that peer's next load report (`PeerChoice.counts`, `reserved`), if it asks in its own name (`prefer` is the
    /// sender). A user's question, relayed by a peer, names none.
    public struct GetBestPeer: Hashable, Sendable, Codable {
        public var taskId: String?
        public var prefer: String?
        public init(taskId: String? = nil, prefer: String? = nil) {
            self.taskId = taskId
            self.prefer = prefer
        }
    }

    public struct BestPeer: Hashable, Sendable, Codable {
        public var peer: PeerInfo
        public var load: Double
        public init(peer: PeerInfo, load: Double) {
            self.peer = peer
            self.load = load
        }
    }

    /// Seed 003's function task: `program` defines `function`, called with `args` (JSON; a list is spread as
    /// positional arguments, an object as keyword arguments). `args_literal` is a Python literal instead of JSON
    /// (the seed's `--args "['secret']"`).
    public struct CPUTask: Hashable, Sendable, Codable {
        public var taskId: String
        public var program: String
        public var function: String?
        public var args: JSONValue?
        public var argsLiteral: String?
        public var confidential: Bool?
        /// Seconds before the task is stopped (default 30, at most 600).
        public var timeout: Double?
        /// Higher runs first; users of one priority take turns.
        public var priority: Int?
        /// Ignored: a task runs as the user whose token opened the connection, or as its `ticket`'s user when a peer
        /// forwarded it. A task that names another user here is refused.
        public var user: String?
        /// Set only by a peer forwarding a task: the manager's ticket for the user it runs for.
        public var ticket: PeerTrust.Ticket?
        /// Set only by a peer forwarding a task: its signature (credential key) over the ticket and the task's digest.
        public var signature: String?
        /// Python packages the task needs (PEP 508 lines, as `JobSpec.requirements`): it runs in an interpreter of that
        /// environment (built or taken from the peer's cache), never one serving another user or environment.
        public var requirements: [String]?
        public init(
            taskId: String, program: String, function: String? = "main", args: JSONValue? = nil, argsLiteral: String? = nil,
            confidential: Bool? = false, timeout: Double? = nil, priority: Int? = nil, user: String? = nil, ticket: PeerTrust.Ticket? = nil,
            signature: String? = nil, requirements: [String]? = nil
        ) {
            self.requirements = requirements
            self.ticket = ticket
            self.signature = signature
            self.taskId = taskId
            self.program = program
            self.function = function
            self.args = args
            self.argsLiteral = argsLiteral
            self.confidential = confidential
            self.timeout = timeout
            self.priority = priority
            self.user = user
        }
    }

    /// The end of a function task: its `FunctionOutcome` (read as this message's own fields, and written at the top
    /// level of its JSON), who ran it, how long it took.
    @dynamicMemberLookup
    public struct CPUResult: Hashable, Sendable, Codable {
        public var taskId: String
        public var outcome: FunctionOutcome
        /// The worker id of the peer that ran it.
        public var peer: String
        public var runtimeMs: Int64
        /// The order in which this peer started its tasks (1, 2, …): shows the scheduler's fairness.
        public var startOrder: Int?

        public init(taskId: String, outcome: FunctionOutcome, peer: String, runtimeMs: Int64, startOrder: Int? = nil) {
            self.taskId = taskId
            self.outcome = outcome
            self.peer = peer
            self.runtimeMs = runtimeMs
            self.startOrder = startOrder
        }

        public init(
            taskId: String, ok: Bool, result: JSONValue? = nil, error: String? = nil, message: String? = nil, traceback: String? = nil,
            output: String? = nil, peer: String, runtimeMs: Int64, startOrder: Int? = nil
        ) {
            self.init(
                taskId: taskId, outcome: FunctionOutcome(ok: ok, result: result, error: error, message: message, traceback: traceback, output: output),
                peer: peer, runtimeMs: runtimeMs, startOrder: startOrder)
        }

        public subscript<T>(dynamicMember field: WritableKeyPath<FunctionOutcome, T>) -> T {
            get { outcome[keyPath: field] }
            set { outcome[keyPath: field] = newValue }
        }

        enum CodingKeys: String, CodingKey {
            case taskId, peer, runtimeMs, startOrder
        }

        public init(from decoder: any Decoder) throws {
            outcome = try FunctionOutcome(from: decoder)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            taskId = try c.decode(String.self, forKey: .taskId)
            peer = try c.decode(String.self, forKey: .peer)
            runtimeMs = try c.decode(Int64.self, forKey: .runtimeMs)
            startOrder = try c.decodeIfPresent(Int.self, forKey: .startOrder)
        }

        public func encode(to encoder: any Encoder) throws {
            try outcome.encode(to: encoder)
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(taskId, forKey: .taskId)
            try c.encode(peer, forKey: .peer)
            try c.encode(runtimeMs, forKey: .runtimeMs)
            try c.encodeIfPresent(startOrder, forKey: .startOrder)
        }
    }

    public struct SetMem: Hashable, Sendable, Codable {
        public var key: String
        public var value: JSONValue
        /// Publish read-only to every user (only the owner may change or delete it).
        public var isPublic: Bool?
        public init(key: String, value: JSONValue, isPublic: Bool? = nil) {
            self.key = key
            self.value = value
            self.isPublic = isPublic
        }
        enum CodingKeys: String, CodingKey {
            case key, value
            case isPublic = "public"
        }
    }

    /// `GET_MEM` and `DEL_MEM`.
    public struct MemKey: Hashable, Sendable, Codable {
        public var key: String
        public init(key: String) { self.key = key }
    }

    public struct ListMem: Hashable, Sendable, Codable {
        public var prefix: String?
        /// Only this peer's own replicas (peers use it to sync; tests use it to see where keys live).
        public var local: Bool?
        /// From a peer: the mandate of the person whose keys it lists (public keys need none).
        public var mandate: PeerTrust.Mandate?
        public init(prefix: String? = nil, local: Bool? = nil, mandate: PeerTrust.Mandate? = nil) {
            self.prefix = prefix
            self.local = local
            self.mandate = mandate
        }
    }

    /// The answer to `SET_MEM`, `GET_MEM` and `DEL_MEM`.
    public struct MemResult: Hashable, Sendable, Codable {
        public var key: String
        public var value: JSONValue?
        /// The peers that hold (or now hold) the key.
        public var owners: [String]
        /// A read answered with the public value of the name (the reader has none of its own): who published it.
        /// Nil for the reader's own value, and from peers before it was said.
        public var publishedBy: String?
        public init(key: String, value: JSONValue? = nil, owners: [String], publishedBy: String? = nil) {
            self.key = key
            self.value = value
            self.owners = owners
            self.publishedBy = publishedBy
        }
    }

    public struct MemKeys: Hashable, Sendable, Codable {
        public var keys: [String]
        /// Keys were left out: the rest would not fit one line (`replyBudgetBytes`); list under a longer prefix.
        public var truncated: Bool?
        public init(keys: [String], truncated: Bool? = nil) {
            self.keys = keys
            self.truncated = truncated
        }

        /// `keys`, in order, as many as fit `budget` bytes of JSON; `truncated` says whether any were left out. A
        /// listing once went out whole, and a line over the reader's limit closed its connection: one user's 2,000
        /// public names with long names broke everyone's `list-mem`, and a peer's answer tore down links between peers.
        public init(fitting keys: [String], budget: Int = Msg.replyBudgetBytes) {
            let (kept, cut) = Msg.fitting(keys, budget: budget) { JSONValue.encodedSize(ofString: $0) + 1 }
            self.init(keys: kept, truncated: cut ? true : nil)
        }
    }

    /// One replica of a key; `value` nil is a deletion (tombstone). Newer versions win.
    public struct MemEntry: Hashable, Sendable, Codable {
        public var key: String
        public var value: JSONValue?
        public var version: Int64
        public var origin: String
        /// Its writer's seal (`PeerTrust.Seal`, as JSON text, passed on byte for byte): who wrote it, on whose word.
        /// nil only in a `MEM_SYNC` answer's lost entries (a version, no value) and in a peer's own table.
        public var seal: String?
        public init(key: String, value: JSONValue?, version: Int64, origin: String, seal: String? = nil) {
            self.key = key
            self.value = value
            self.version = version
            self.origin = origin
            self.seal = seal
        }
    }

    /// Peer → peer: keep these replicas (`MEM_SYNC`), or the answer to `MEM_FETCH`.
    public struct MemEntries: Hashable, Sendable, Codable {
        public var entries: [MemEntry]
        /// In the answer to `MEM_SYNC`: the keys this peer did not keep because they do not fit its storage budget, with
        /// the reason for the writer (nil when none).
        public var refused: [String: String]?
        /// Of `refused`, the keys refused for what they are (no good seal, a version or a size out of range), not for
        /// room: the writer's write fails `forbidden`, not `insufficient_storage`.
        public var forbidden: [String]?
        public init(entries: [MemEntry], refused: [String: String]? = nil, forbidden: [String]? = nil) {
            self.entries = entries
            self.refused = refused
            self.forbidden = forbidden
        }
    }

    /// Peer → peer: your own replicas of these keys, if any.
    public struct MemFetch: Hashable, Sendable, Codable {
        public var keys: [String]
        /// The mandate of the person whose keys these are (public keys need none): a peer reads only for its users.
        public var mandate: PeerTrust.Mandate?
        /// In place of `mandate`: the `ref` of one this peer showed the receiver before, which the receiver checked then
        /// and keeps for it (answered with `ERROR mandate_unknown` when it does not: the full mandate is sent again).
        public var mandateRef: String?
        public init(keys: [String], mandate: PeerTrust.Mandate? = nil, mandateRef: String? = nil) {
            self.keys = keys
            self.mandate = mandate
            self.mandateRef = mandateRef
        }
    }

    /// Store a file: `data` (base64, the seed's form, small files) or `size` (the bulk form: chunks follow with
    /// `PUT_FILE_CHUNK`, then `PUT_FILE_END`).
    public struct PutFile: Hashable, Sendable, Codable {
        public var filename: String
        public var data: String?
        public var size: Int64?
        /// Publish read-only to every user (only the owner may replace or delete it).
        public var isPublic: Bool?
        public init(filename: String, data: String? = nil, size: Int64? = nil, isPublic: Bool? = nil) {
            self.filename = filename
            self.data = data
            self.size = size
            self.isPublic = isPublic
        }
        enum CodingKeys: String, CodingKey {
            case filename, data, size
            case isPublic = "public"
        }
    }

    /// The answer to a bulk `PUT_FILE`: send chunks of exactly `chunk_size` bytes (the last may be shorter).
    public struct Upload: Hashable, Sendable, Codable {
        public var uploadId: String
        public var chunkSize: Int
        /// How many chunks the client may send before the first is answered (absent: one at a time).
        public var window: Int?
        public init(uploadId: String, chunkSize: Int, window: Int? = nil) {
            self.uploadId = uploadId
            self.chunkSize = chunkSize
            self.window = window
        }

        /// The window a client uses: the peer's claim, kept within 1…16.
        public var inFlight: Int { min(max(window ?? 1, 1), 16) }

        /// The largest chunk a client sends: a chunk is one frame's bulk bytes.
        public static let maxChunkSize = FrameLimits().maxBulkBytes

        /// The chunk size a client may use: the peer's claim if it is 1 byte…64 MiB, else nil (the client refuses the
        /// upload). A size of 0 never advanced through the file, and a negative or huge one trapped allocating a chunk.
        public var usableChunkSize: Int? { (1...Self.maxChunkSize).contains(chunkSize) ? chunkSize : nil }
    }

    /// Chunk `index` of an upload; the bulk payload holds its bytes.
    public struct PutFileChunk: Hashable, Sendable, Codable {
        public var uploadId: String
        public var index: Int
        public init(uploadId: String, index: Int) {
            self.uploadId = uploadId
            self.index = index
        }
    }

    public struct PutFileEnd: Hashable, Sendable, Codable {
        public var uploadId: String
        /// The SHA-256 of the whole file, hex; checked when given.
        public var sha256: String?
        public init(uploadId: String, sha256: String?) {
            self.uploadId = uploadId
            self.sha256 = sha256
        }
    }

    /// `GET_FILE` and `DELETE_FILE`.
    public struct FileRef: Hashable, Sendable, Codable {
        public var filename: String
        public init(filename: String) { self.filename = filename }
    }

    /// A stored file: which chunks (SHA-256, hex) make it up. The manifest is what the distributed memory keeps.
    public struct FileManifest: Hashable, Sendable, Codable {
        public var filename: String
        public var size: Int64
        public var sha256: String
        public var chunkSize: Int
        public var chunks: [String]
        public init(filename: String, size: Int64, sha256: String, chunkSize: Int, chunks: [String]) {
            self.filename = filename
            self.size = size
            self.sha256 = sha256
            self.chunkSize = chunkSize
            self.chunks = chunks
        }
    }

    /// The answer to `GET_FILE`: the file's size and chunks; `data` (base64) too when the file is small (the seed's form).
    public struct FileInfo: Hashable, Sendable, Codable {
        public var filename: String
        public var size: Int64
        public var sha256: String
        public var chunkSize: Int
        public var chunkCount: Int
        public var data: String?
        /// The public file of the name (the reader has none of its own): who published it. Nil for the reader's own
        /// file, and from peers before it was said.
        public var publishedBy: String?
        /// Whether its numbers can describe a file a client may fetch chunk by chunk: a size of 0…`maxFileBytes`, and at
        /// most one chunk per byte (a peer's claim; a huge count kept a client asking for empty chunks).
        public func isConsistent(maxFileBytes: Int64) -> Bool {
            size >= 0 && size <= maxFileBytes && chunkCount >= 0 && Int64(chunkCount) <= size
        }

        public init(filename: String, size: Int64, sha256: String, chunkSize: Int, chunkCount: Int, data: String?, publishedBy: String? = nil) {
            self.filename = filename
            self.size = size
            self.sha256 = sha256
            self.chunkSize = chunkSize
            self.chunkCount = chunkCount
            self.data = data
            self.publishedBy = publishedBy
        }
    }

    public struct GetFileChunk: Hashable, Sendable, Codable {
        public var filename: String
        public var index: Int
        /// Hash the chunk on this read too (`true`): a stored chunk was checked when it was written, so a plain read
        /// sends it as stored and the reader's check of the whole file catches a copy damaged since; a reader whose
        /// check failed asks again with this set, and the peer then finds the damaged copy, serves and rewrites it
        /// from a replica.
        public var verify: Bool?
        public init(filename: String, index: Int, verify: Bool? = nil) {
            self.filename = filename
            self.index = index
            self.verify = verify
        }
    }

    /// One chunk's bytes (the bulk payload), verified against `hash` by the sender and the receiver.
    public struct ChunkData: Hashable, Sendable, Codable {
        public var hash: String
        public var index: Int?
        /// In a `CHUNK_PUT` of the repair pass: when the sender's copy was last stored (seconds since 1970), so the
        /// new copy keeps its lease and is reclaimed with the others once no file names it (see `ChunkReclaim`).
        /// Absent: now. A claim: a time ahead of the receiver's clock counts as now.
        public var storedAt: Int64?
        public init(hash: String, index: Int? = nil, storedAt: Int64? = nil) {
            self.hash = hash
            self.index = index
            self.storedAt = storedAt
        }
    }

    /// `CHUNK_REFS` (which of these chunks do you know a use for: a manifest you hold, an upload in progress here?)
    /// and its answer `CHUNK_USED`, each with the digest of the membership its sender sees (see `ChunkReclaim`).
    public struct ChunkRefs: Hashable, Sendable, Codable {
        public var hashes: [String]
        public var members: String
        public init(hashes: [String], members: String) {
            self.hashes = hashes
            self.members = members
        }
    }

    /// `CHUNK_GET` (one hash), `CHUNK_HAS`/`CHUNK_HAVE` (which of these do you hold?) and `CHUNK_KEEP` (renew the
    /// leases of these: a file names them).
    public struct ChunkHashes: Hashable, Sendable, Codable {
        public var hashes: [String]
        public init(hashes: [String]) { self.hashes = hashes }
    }

    public struct ListFiles: Hashable, Sendable, Codable {
        public var prefix: String?
        public init(prefix: String? = nil) { self.prefix = prefix }
    }

    public struct FileList: Hashable, Sendable, Codable {
        /// Each file's name, size, digest and chunk size; no chunk list (`GET_FILE` gives it: a 14 GiB file's is 240 KB).
        public var files: [FileManifest]
        /// Files were left out: the rest would not fit one line (`replyBudgetBytes`); list under a longer prefix.
        public var truncated: Bool?
        public init(files: [FileManifest], truncated: Bool? = nil) {
            self.files = files
            self.truncated = truncated
        }

        /// `files`, in order and without their chunk lists, as many as fit `budget` bytes of JSON; `truncated` says
        /// whether any were left out (a listing of 1,000 manifests with their chunk lists went out whole, and a line
        /// over the reader's limit closed its connection).
        public init(fitting files: [FileManifest], budget: Int = Msg.replyBudgetBytes) {
            let listed = files.map { file in
                var listed = file
                listed.chunks = []
                return listed
            }
            let (kept, cut) = Msg.fitting(listed, budget: budget) {
                JSONValue.encodedSize(ofString: $0.filename) + JSONValue.encodedSize(ofString: $0.sha256) + 96
            }
            self.init(files: kept, truncated: cut ? true : nil)
        }
    }

    /// A peer's own state, for people, tests and the status page.
    /// Bytes the shared storage holds on a peer, and the limits its owner set (`--share-memory-mb`, `--share-disk-mb`).
    public struct StorageUse: Hashable, Sendable, Codable {
        public var memoryBytes: Int64
        public var memoryLimit: Int64
        public var diskBytes: Int64
        public var diskLimit: Int64
        public init(memoryBytes: Int64, memoryLimit: Int64, diskBytes: Int64, diskLimit: Int64) {
            self.memoryBytes = memoryBytes
            self.memoryLimit = memoryLimit
            self.diskBytes = diskBytes
            self.diskLimit = diskLimit
        }
    }

    public struct PeerStatus: Hashable, Sendable, Codable {
        public var workerId: String
        public var name: String
        public var slots: Int
        public var running: Int
        /// Queued function tasks by user.
        public var queued: [String: Int]
        public var peers: [PeerInfo]
        public var memKeys: Int
        public var chunks: Int
        public var tasksDone: Int
        /// What the shared storage takes on this peer, against what its owner lent (nil from peers before it was kept).
        public var storage: StorageUse?
        public init(
            workerId: String, name: String, slots: Int, running: Int, queued: [String: Int], peers: [PeerInfo], memKeys: Int, chunks: Int,
            tasksDone: Int, storage: StorageUse? = nil
        ) {
            self.storage = storage
            self.workerId = workerId
            self.name = name
            self.slots = slots
            self.running = running
            self.queued = queued
            self.peers = peers
            self.memKeys = memKeys
            self.chunks = chunks
            self.tasksDone = tasksDone
        }
    }

    public struct Ok: Hashable, Sendable, Codable {
        public var detail: String?
        public init(detail: String? = nil) { self.detail = detail }
    }
}
