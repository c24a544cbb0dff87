public import GridCore

/// The grid protocol's version; a peer states it in `HELLO` and the manager accepts `ProtocolVersion.supported`.
/// Version 2: memory entries carry seals (a version-1 peer's writes would all be refused), and a run reports the
/// outputs it saved in the grid in `JOB_DONE.saved`, not its log (a version-1 worker's first runs would disagree with
/// their check runs, and be punished for it). A version-1 worker or client is told so at `HELLO`.
public enum ProtocolVersion {
    public static let current = 2
    public static let supported = 2...2
}

/// A file inside a bulk payload: payloads are the files' bytes, one after another, in this order.
public struct FileEntry: Hashable, Sendable, Codable {
    public var name: String
    public var size: Int
    public init(name: String, size: Int) {
        self.name = name
        self.size = size
    }
}

/// Messages of the grid protocol. See docs/PROTOCOL.md for each, with examples.
public enum Msg {
    /// First message on every connection: who is talking and with which token.
    public struct Hello: Hashable, Sendable, Codable {
        public var version: Int
        public var token: String
        /// The worker's name for people.
        public var name: String?
        /// The id the worker was given before (kept in its data directory); nil on first registration.
        public var workerId: String?
        /// The seed's `-u/--user`: the account the worker says it earns for; must match the token's owner.
        public var user: String?
        /// Worker → manager: the worker's own Ed25519 public key (raw, base64), which its peer credentials will name.
        public var peerKey: String?
        /// Peer → peer: a fresh nonce the answering peer signs (`token` is then empty: peers never send one).
        public var nonce: String?
        public init(
            version: Int = ProtocolVersion.current, token: String, name: String? = nil, workerId: String? = nil, user: String? = nil,
            peerKey: String? = nil, nonce: String? = nil
        ) {
            self.version = version
            self.token = token
            self.name = name
            self.workerId = workerId
            self.user = user
            self.peerKey = peerKey
            self.nonce = nonce
        }
    }

    public struct HelloOk: Hashable, Sendable, Codable {
        public var version: Int
        public var workerId: String
        public var owner: String
        public var heartbeatSeconds: Double
        /// Manager → worker: the manager's Ed25519 public key (raw, base64), which signs credentials and tickets.
        public var managerKey: String?
        /// Peer → peer: the answering peer's credential, its `proof` (signature over the caller's nonce), and a nonce
        /// of its own for the caller's `PEER_AUTH`.
        public var credential: PeerTrust.Credential?
        public var proof: String?
        public var nonce: String?
        public init(
            version: Int, workerId: String, owner: String, heartbeatSeconds: Double, managerKey: String? = nil,
            credential: PeerTrust.Credential? = nil, proof: String? = nil, nonce: String? = nil
        ) {
            self.version = version
            self.workerId = workerId
            self.owner = owner
            self.heartbeatSeconds = heartbeatSeconds
            self.managerKey = managerKey
            self.credential = credential
            self.proof = proof
            self.nonce = nonce
        }
    }

    /// Peer → peer, after `HELLO_OK`: the connecting peer's credential and its signature over the answering peer's
    /// nonce. Answered with `OK`, or `ERROR unauthorized` and a close.
    public struct PeerAuth: Hashable, Sendable, Codable {
        public var credential: PeerTrust.Credential
        public var proof: String
        public init(credential: PeerTrust.Credential, proof: String) {
            self.credential = credential
            self.proof = proof
        }
    }

    /// Person → peer, after `HELLO {nonce}` and its `HELLO_OK`: the person's certificate (the manager's) and its
    /// key's signature over this peer's id and nonce (`PeerTrust.sessionChallenge`), in place of the API token, which
    /// never goes to a peer. Answered with `HELLO_OK {worker_id, owner}`, or `ERROR unauthorized` and a close.
    public struct Session: Hashable, Sendable, Codable {
        public var certificate: PeerTrust.UserCertificate
        public var proof: String
        /// Lets the peer forward this person's tasks (`CPU_TASK.ticket`); none while no manager is reachable.
        public var forward: PeerTrust.Ticket?
        /// Lets the peer read this person's data from other peers (`MEM_FETCH`, `LIST_MEM`).
        public var delegation: PeerTrust.Delegation?
        /// Lets the peer write this person's data (`PeerTrust.WriteGrant`): what it seals their writes under.
        public var writeGrant: PeerTrust.WriteGrant?
        public init(
            certificate: PeerTrust.UserCertificate, proof: String, forward: PeerTrust.Ticket? = nil, delegation: PeerTrust.Delegation? = nil,
            writeGrant: PeerTrust.WriteGrant? = nil
        ) {
            self.certificate = certificate
            self.proof = proof
            self.forward = forward
            self.delegation = delegation
            self.writeGrant = writeGrant
        }
    }

    /// Worker → manager: `CREDENTIAL {}` asks for a fresh credential; the manager answers `CREDENTIAL {credential}`.
    public struct CredentialGrant: Hashable, Sendable, Codable {
        public var credential: PeerTrust.Credential?
        public init(credential: PeerTrust.Credential? = nil) { self.credential = credential }
    }

    /// A worker's resources and the jobs it is running (after a reconnect).
    public struct Register: Hashable, Sendable, Codable {
        public var resources: Resources
        public var gpuNames: [String]
        public var tier: SandboxTier
        public var slots: Int
        public var host: String?
        public var port: Int?
        public var webPort: Int?
        public var running: [JobRef]
        /// Runs that ended while the manager could not be told, whose `JOB_DONE` is not acknowledged yet: the manager
        /// answers with how much of each one's log it holds, and the worker re-sends the rest before the `JOB_DONE`.
        public var finished: [JobRef]?
        /// The sandbox in words: its label (which limits hold), why stronger tiers were skipped, and whether it takes
        /// other users' jobs (`accepts_others`: false for a restricted worker started without `--allow-unsandboxed`).
        /// Absent from older workers, which take everyone's jobs.
        public var sandbox: SandboxReport?
        /// On a TLS grid: the P-256 public key (PEM) of the worker's peer-port certificate, which the manager's CA signs
        /// and returns in `REGISTERED`. The private key never leaves the worker.
        public var tlsKey: String?
        /// Digests (`PythonRequirements.digest`) of the Python environments this worker has built and cached; placement
        /// prefers a worker that has a job's environment. Absent from older workers.
        public var envs: [String]?
        /// The Python version jobs run with here (`3.11.7`), for jobs that declare `requires-python`.
        public var python: String?
        /// The worker's data disk is under the free space it keeps (as in `LOAD_UPDATE`): no job until it is not.
        public var diskFull: Bool?
        /// The most scratch disk the worker lets one job fill, in bytes (`--max-job-disk-gb`): it is given no job that
        /// asks for more (`JobSpec.diskGb`). Absent from older workers, which stop every job at their own limit: they are given
        /// only jobs that ask for the default (`Placement.Worker.jobDisk(registered:)`).
        public var jobDiskBytes: Int64?
        public init(
            resources: Resources, gpuNames: [String] = [], tier: SandboxTier, slots: Int, host: String? = nil, port: Int? = nil,
            webPort: Int? = nil, running: [JobRef] = [], finished: [JobRef]? = nil, sandbox: SandboxReport? = nil, tlsKey: String? = nil,
            envs: [String]? = nil, python: String? = nil, diskFull: Bool? = nil, jobDiskBytes: Int64? = nil
        ) {
            self.jobDiskBytes = jobDiskBytes
            self.diskFull = diskFull
            self.tlsKey = tlsKey
            self.envs = envs
            self.python = python
            self.sandbox = sandbox
            self.finished = finished
            self.resources = resources
            self.gpuNames = gpuNames
            self.tier = tier
            self.slots = slots
            self.host = host
            self.port = port
            self.webPort = webPort
            self.running = running
        }
    }

    /// The manager's answer to `REGISTER`: jobs to kill, and how much of each kept job's log it already has (running
    /// and finished-but-unacknowledged runs alike).
    public struct Registered: Hashable, Sendable, Codable {
        public var cancel: [JobRef]
        public var logOffsets: [String: Int64]
        /// The worker's peer credential (when it listens on a peer port and sent its key in `HELLO`).
        public var credential: PeerTrust.Credential?
        /// On a TLS grid: the worker's peer-port certificate (PEM), issued by the manager's CA for the key in `REGISTER`.
        public var peerCertificate: String?
        /// The CA (PEM) that issues every peer's certificate: peers and clients trust a peer port only if it shows one.
        public var peerAuthority: String?
        public init(
            cancel: [JobRef], logOffsets: [String: Int64], credential: PeerTrust.Credential? = nil, peerCertificate: String? = nil,
            peerAuthority: String? = nil
        ) {
            self.peerCertificate = peerCertificate
            self.peerAuthority = peerAuthority
            self.cancel = cancel
            self.logOffsets = logOffsets
            self.credential = credential
        }
    }

    /// Heartbeat: renews the leases of the listed jobs.
    public struct LoadUpdate: Hashable, Sendable, Codable {
        /// CPU load of the machine, 0...1 per core averaged.
        public var load: Double
        public var running: [JobRef]
        /// Function tasks queued or running on this peer (peer services); the manager's `GET_BEST_PEER` weighs them.
        public var tasks: Int?
        /// The cached environments' digests, as in `REGISTER`, when they changed since the last report.
        public var envs: [String]?
        /// The worker is stopping: it takes no new job (it reports the runs it cancelled, then leaves).
        public var stopping: Bool?
        /// The worker's data disk is under the free space it keeps for itself: it takes no new job until it is not
        /// (sent each time; absent: not full).
        public var diskFull: Bool?
        public init(load: Double, running: [JobRef], tasks: Int? = nil, envs: [String]? = nil, stopping: Bool? = nil, diskFull: Bool? = nil) {
            self.diskFull = diskFull
            self.stopping = stopping
            self.envs = envs
            self.load = load
            self.running = running
            self.tasks = tasks
        }
    }

    /// A job for the worker; the bulk payload holds `files`, the entry script first.
    public struct JobAssign: Hashable, Sendable, Codable {
        public var job: JobRef
        public var spec: JobSpec
        public var script: String
        public var files: [FileEntry]
        /// The submitter's username: the grid files the job reads and writes (`grid_inputs`, `save_outputs_as`) are theirs.
        public var owner: String?
        /// The owner's read ticket for this worker, when the job reads grid files: with it, the worker's peer reads
        /// those files (and no other data of the owner's) from other peers (`MEM_FETCH`'s mandate); it forwards nothing.
        public var ticket: PeerTrust.Ticket?
        /// The manager's write ticket for this worker, when the job saves its outputs in the grid
        /// (`save_outputs_as`): the peers keep the outputs' manifests on it, under that name prefix of the owner's files.
        public var writeTicket: PeerTrust.WriteTicket?
        public init(
            job: JobRef, spec: JobSpec, script: String, files: [FileEntry], owner: String? = nil, ticket: PeerTrust.Ticket? = nil,
            writeTicket: PeerTrust.WriteTicket? = nil
        ) {
            self.job = job
            self.spec = spec
            self.script = script
            self.files = files
            self.owner = owner
            self.ticket = ticket
            self.writeTicket = writeTicket
        }
    }

    public struct JobStarted: Hashable, Sendable, Codable {
        public var job: JobRef
        public init(job: JobRef) { self.job = job }
    }

    /// Log bytes (the bulk payload) of a running job, at `offset` in that attempt's log.
    public struct JobLog: Hashable, Sendable, Codable {
        public var job: JobRef
        public var offset: Int64
        public init(job: JobRef, offset: Int64) {
            self.job = job
            self.offset = offset
        }
    }

    /// How a run ended, from the worker's side.
    public enum Outcome: String, Hashable, Sendable, Codable {
        case completed
        case failed
        case timedOut = "timed_out"
        case cancelled
        /// The worker could not start the job (sandbox unavailable, bundle damaged): not the job's fault, so it is
        /// refunded and runs elsewhere.
        case rejected
    }

    /// The end of a run; the bulk payload holds the output `files`.
    public struct JobDone: Hashable, Sendable, Codable {
        public var job: JobRef
        public var outcome: Outcome
        public var exitCode: Int32?
        public var runtimeMs: Int64
        public var peakMemoryKb: Int64
        public var cpuSeconds: Double
        /// Why it failed, in words a student understands.
        public var reason: String?
        public var files: [FileEntry]
        /// How many log bytes the run produced: the manager settles the run only once it holds all of them.
        public var logBytes: Int64?
        /// The job never ran because its Python environment could not be built: the submitter gets the whole hold back
        /// (the worker's owner waives its pay). Absent or false for runs that ran.
        public var refund: Bool?
        /// What became of the outputs the job saves in the grid (`save_outputs_as`), one entry an output. Kept out of
        /// the log: verification compares logs, and a check run saves nothing (`JobSpec.forCheckRun`).
        public var saved: [SavedOutput]?
        /// The grid inputs that were public files (the submitter stores none of the name): whose each was. Kept out of
        /// the log for the same reason as `saved`.
        public var publicInputs: [PublicInput]?
        public init(
            job: JobRef, outcome: Outcome, exitCode: Int32?, runtimeMs: Int64, peakMemoryKb: Int64, cpuSeconds: Double, reason: String?,
            files: [FileEntry], logBytes: Int64? = nil, refund: Bool? = nil, saved: [SavedOutput]? = nil, publicInputs: [PublicInput]? = nil
        ) {
            self.saved = saved
            self.publicInputs = publicInputs
            self.refund = refund
            self.logBytes = logBytes
            self.job = job
            self.outcome = outcome
            self.exitCode = exitCode
            self.runtimeMs = runtimeMs
            self.peakMemoryKb = peakMemoryKb
            self.cpuSeconds = cpuSeconds
            self.reason = reason
            self.files = files
        }
    }

    /// A job's grid input that was the public file of its name (its submitter stores none of that name), and who
    /// published it: a stranger may publish a name first, and a job that meant its own file would read theirs unaware.
    public struct PublicInput: Hashable, Sendable, Codable {
        public var name: String
        public var publishedBy: String
        public init(name: String, publishedBy: String) {
            self.name = name
            self.publishedBy = publishedBy
        }

        /// The line the job's history gets for a worker's list, or nil when it says nothing. The list is the worker's
        /// claim: only the job's own grid inputs (`declared`) count, each once, at most 20 named.
        public static func note(_ inputs: [PublicInput]?, declared: [String]?) -> String? {
            guard let inputs, let declared else { return nil }
            let names = Set(declared)
            var seen: Set<String> = []
            var parts: [String] = []
            for input in inputs where names.contains(input.name) && seen.insert(input.name).inserted {
                parts.append("grid:\(input.name) was the public file published by \(input.publishedBy)")
            }
            guard !parts.isEmpty else { return nil }
            let more = parts.count > 20 ? " and \(parts.count - 20) more" : ""
            return SavedOutput.oneLine(
                "input " + parts.prefix(20).joined(separator: ", ") + more + " (you store no file of that name)", maxBytes: 4_096)
        }
    }

    /// An output of a job that saves its outputs in the grid: stored, or why not (`error`).
    public struct SavedOutput: Hashable, Sendable, Codable {
        public var name: String
        public var error: String?
        public init(name: String, error: String? = nil) {
            self.name = name
            self.error = error
        }

        /// The line the job's history gets for a worker's `saved` list, or nil when it says nothing to record. The list
        /// is the worker's claim: only names among the run's outputs (`files`) count, each once, and a reason is cut
        /// to one short line.
        public static func note(_ saved: [SavedOutput]?, files: [FileEntry], prefix: String?) -> String? {
            guard let prefix, let saved else { return nil }
            let outputs = Set(files.map(\.name))
            var seen: Set<String> = []
            var stored: [String] = []
            var failed: [String] = []
            for entry in saved where outputs.contains(entry.name) && seen.insert(entry.name).inserted {
                if let error = entry.error {
                    failed.append("\(entry.name) (\(oneLine(error, maxBytes: 200)))")
                } else {
                    stored.append(entry.name)
                }
            }
            // At most 20 names a list: a job may have thousands of outputs.
            func list(_ names: [String]) -> String {
                names.prefix(20).joined(separator: ", ") + (names.count > 20 ? " and \(names.count - 20) more" : "")
            }
            var parts: [String] = []
            if !stored.isEmpty { parts.append("outputs saved in the grid as \(prefix)NAME: \(list(stored))") }
            if !failed.isEmpty { parts.append("outputs not saved in the grid: \(list(failed))") }
            return parts.isEmpty ? nil : oneLine(parts.joined(separator: "; "), maxBytes: 4_096)
        }

        /// The longest reason a worker sends for an output it could not save (a report lists up to 1,000).
        public static let maxErrorBytes = 200

        /// `text` as one line of at most `maxBytes` UTF-8 bytes (and an ellipsis): control and invisible formatting
        /// characters (line breaks, escapes, bidirectional overrides) become spaces. Cut on bytes, never characters:
        /// one character may carry any number of combining marks.
        public static func oneLine(_ text: String, maxBytes: Int) -> String {
            var out = String.UnicodeScalarView()
            var bytes = 0
            for scalar in text.unicodeScalars {
                let shown: Unicode.Scalar = FileName.isControlOrFormat(scalar) ? " " : scalar
                let width = UTF8.width(shown)
                guard bytes + width <= maxBytes else { return String(out) + "…" }
                out.append(shown)
                bytes += width
            }
            return String(out)
        }
    }

    /// The manager has stored a `JOB_DONE`; the worker may forget the result.
    public struct JobDoneAck: Hashable, Sendable, Codable {
        public var job: JobRef
        public init(job: JobRef) { self.job = job }
    }

    /// Stop a job now (the user cancelled it, or the job was given to another worker).
    public struct Cancel: Hashable, Sendable, Codable {
        public var job: JobRef
        public var reason: String
        public init(job: JobRef, reason: String) {
            self.job = job
            self.reason = reason
        }
    }

    public struct Error: Hashable, Sendable, Codable {
        public var code: GridError.Code
        public var message: String
        public init(code: GridError.Code, message: String) {
            self.code = code
            self.message = message
        }
        public init(_ error: GridError) { self.init(code: error.code, message: error.message) }
    }

    /// Manager → worker, answering `HELLO` on a manager that does not lead (issue 16): where the leader's worker port is,
    /// `host:port`. Then the manager closes. The worker follows it only if it is in its own list of managers.
    public struct NotLeader: Hashable, Sendable, Codable {
        /// The leader's `host:port`; empty when this manager knows of no live leader.
        public var leader: String
        public init(leader: String) { self.leader = leader }

        enum CodingKeys: String, CodingKey { case leader }

        /// A claim from the wire: at most `ManagerAddress.maxLength` bytes and a `host:port` (or empty), else refused.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let leader = try c.decodeIfPresent(String.self, forKey: .leader) ?? ""
            guard leader.isEmpty || ManagerAddress(parsing: leader) != nil else {
                throw GridError(.malformedMessage, "NOT_LEADER names no manager address")
            }
            self.leader = leader
        }
    }

    public struct Empty: Hashable, Sendable, Codable {
        public init() {}
    }
}

/// One message of the grid protocol, by its wire `type`.
public enum GridMessage: Hashable, Sendable {
    case hello(Msg.Hello)
    case helloOk(Msg.HelloOk)
    case register(Msg.Register)
    case registered(Msg.Registered)
    case loadUpdate(Msg.LoadUpdate)
    case jobAssign(Msg.JobAssign)
    case jobStarted(Msg.JobStarted)
    case jobLog(Msg.JobLog)
    case jobDone(Msg.JobDone)
    case jobDoneAck(Msg.JobDoneAck)
    case cancel(Msg.Cancel)
    case ping
    case pong
    case error(Msg.Error)
    case peers(Msg.Peers)
    case authCheck(Msg.AuthCheck)
    case authOk(Msg.AuthOk)
    case getBestPeer(Msg.GetBestPeer)
    case bestPeer(Msg.BestPeer)
    case cpuTask(Msg.CPUTask)
    case cpuResult(Msg.CPUResult)
    case setMem(Msg.SetMem)
    case getMem(Msg.MemKey)
    case delMem(Msg.MemKey)
    case listMem(Msg.ListMem)
    case memResult(Msg.MemResult)
    case memKeys(Msg.MemKeys)
    case memSync(Msg.MemEntries)
    case memFetch(Msg.MemFetch)
    case memEntries(Msg.MemEntries)
    case putFile(Msg.PutFile)
    case upload(Msg.Upload)
    case putFileChunk(Msg.PutFileChunk)
    case putFileEnd(Msg.PutFileEnd)
    case fileStored(Msg.FileManifest)
    case getFile(Msg.FileRef)
    case fileInfo(Msg.FileInfo)
    case getFileChunk(Msg.GetFileChunk)
    case fileChunk(Msg.ChunkData)
    case listFiles(Msg.ListFiles)
    case fileList(Msg.FileList)
    case deleteFile(Msg.FileRef)
    case chunkPut(Msg.ChunkData)
    case chunkGet(Msg.ChunkData)
    case chunkData(Msg.ChunkData)
    case chunkHas(Msg.ChunkHashes)
    case chunkHave(Msg.ChunkHashes)
    case chunkRefs(Msg.ChunkRefs)
    case chunkUsed(Msg.ChunkRefs)
    case chunkKeep(Msg.ChunkHashes)
    case peerStatus(Msg.PeerStatus)
    case ok(Msg.Ok)
    case getPeerStatus
    case peerAuth(Msg.PeerAuth)
    case session(Msg.Session)
    case credential(Msg.CredentialGrant)
    case notLeader(Msg.NotLeader)

    /// The kind of this message; its wire name is `kind.rawValue` (`MessageType`, the one table of wire names).
    public var kind: MessageType {
        switch self {
        case .hello: .hello
        case .helloOk: .helloOk
        case .register: .register
        case .registered: .registered
        case .loadUpdate: .loadUpdate
        case .jobAssign: .jobAssign
        case .jobStarted: .jobStarted
        case .jobLog: .jobLog
        case .jobDone: .jobDone
        case .jobDoneAck: .jobDoneAck
        case .cancel: .cancel
        case .ping: .ping
        case .pong: .pong
        case .error: .error
        case .peers: .peers
        case .authCheck: .authCheck
        case .authOk: .authOk
        case .getBestPeer: .getBestPeer
        case .bestPeer: .bestPeer
        case .cpuTask: .cpuTask
        case .cpuResult: .cpuResult
        case .setMem: .setMem
        case .getMem: .getMem
        case .delMem: .delMem
        case .listMem: .listMem
        case .memResult: .memResult
        case .memKeys: .memKeys
        case .memSync: .memSync
        case .memFetch: .memFetch
        case .memEntries: .memEntries
        case .putFile: .putFile
        case .upload: .upload
        case .putFileChunk: .putFileChunk
        case .putFileEnd: .putFileEnd
        case .fileStored: .fileStored
        case .getFile: .getFile
        case .fileInfo: .fileInfo
        case .getFileChunk: .getFileChunk
        case .fileChunk: .fileChunk
        case .listFiles: .listFiles
        case .fileList: .fileList
        case .deleteFile: .deleteFile
        case .chunkPut: .chunkPut
        case .chunkGet: .chunkGet
        case .chunkData: .chunkData
        case .chunkHas: .chunkHas
        case .chunkHave: .chunkHave
        case .chunkRefs: .chunkRefs
        case .chunkUsed: .chunkUsed
        case .chunkKeep: .chunkKeep
        case .peerStatus: .peerStatus
        case .ok: .ok
        case .getPeerStatus: .getPeerStatus
        case .peerAuth: .peerAuth
        case .session: .session
        case .credential: .credential
        case .notLeader: .notLeader
        }
    }

    /// The wire name of this message's type.
    public var type: String { kind.rawValue }
}

/// Every message type of the grid protocol with its wire name: the one table of wire names (encoding writes
/// `kind.rawValue`; decoding reads a name back through `MessageType(rawValue:)`).
public enum MessageType: String, CaseIterable, Sendable {
    case hello = "HELLO"
    case helloOk = "HELLO_OK"
    case register = "REGISTER"
    case registered = "REGISTERED"
    case loadUpdate = "LOAD_UPDATE"
    case jobAssign = "JOB_ASSIGN"
    case jobStarted = "JOB_STARTED"
    case jobLog = "JOB_LOG"
    case jobDone = "JOB_DONE"
    case jobDoneAck = "JOB_DONE_ACK"
    case cancel = "CANCEL"
    case ping = "PING"
    case pong = "PONG"
    case error = "ERROR"
    case peers = "PEERS"
    case authCheck = "AUTH_CHECK"
    case authOk = "AUTH_OK"
    case getBestPeer = "GET_BEST_PEER"
    case bestPeer = "BEST_PEER"
    case cpuTask = "CPU_TASK"
    case cpuResult = "CPU_RESULT"
    case setMem = "SET_MEM"
    case getMem = "GET_MEM"
    case delMem = "DEL_MEM"
    case listMem = "LIST_MEM"
    case memResult = "MEM_RESULT"
    case memKeys = "MEM_KEYS"
    case memSync = "MEM_SYNC"
    case memFetch = "MEM_FETCH"
    case memEntries = "MEM_ENTRIES"
    case putFile = "PUT_FILE"
    case upload = "UPLOAD"
    case putFileChunk = "PUT_FILE_CHUNK"
    case putFileEnd = "PUT_FILE_END"
    case fileStored = "FILE_STORED"
    case getFile = "GET_FILE"
    case fileInfo = "FILE_INFO"
    case getFileChunk = "GET_FILE_CHUNK"
    case fileChunk = "FILE_CHUNK"
    case listFiles = "LIST_FILES"
    case fileList = "FILE_LIST"
    case deleteFile = "DELETE_FILE"
    case chunkPut = "CHUNK_PUT"
    case chunkGet = "CHUNK_GET"
    case chunkData = "CHUNK_DATA"
    case chunkHas = "CHUNK_HAS"
    case chunkHave = "CHUNK_HAVE"
    case chunkRefs = "CHUNK_REFS"
    case chunkUsed = "CHUNK_USED"
    case chunkKeep = "CHUNK_KEEP"
    case peerStatus = "PEER_STATUS"
    case ok = "OK"
    case getPeerStatus = "GET_PEER_STATUS"
    case peerAuth = "PEER_AUTH"
    case session = "SESSION"
    case credential = "CREDENTIAL"
    case notLeader = "NOT_LEADER"
}
