/// The grid protocol is three protocols over one framing: manager⇄worker, client⇄peer and peer⇄peer. `GridMessage`
/// (with `MessageType`, the one table of wire names) is the framing's vocabulary; each protocol's receiver reads it
/// through its own enum here, which holds only what that receiver may be sent, so that its handler's `switch` is
/// exhaustive (a new message must be handled or refused on purpose). A message outside the enum is refused before any
/// handler sees it (`init?` answers nil).

/// What a registered worker sends its manager.
public enum WorkerReport: Sendable {
    case loadUpdate(Msg.LoadUpdate)
    case jobStarted(Msg.JobStarted)
    case jobLog(Msg.JobLog)
    case jobDone(Msg.JobDone)
    case ping
    case getBestPeer(Msg.GetBestPeer)
    case authCheck(Msg.AuthCheck)
    case credential(Msg.CredentialGrant)
    case error(Msg.Error)

    /// nil: not a message a registered worker sends.
    public init?(_ message: GridMessage) {
        switch message {
        case .loadUpdate(let m): self = .loadUpdate(m)
        case .jobStarted(let m): self = .jobStarted(m)
        case .jobLog(let m): self = .jobLog(m)
        case .jobDone(let m): self = .jobDone(m)
        case .ping: self = .ping
        case .getBestPeer(let m): self = .getBestPeer(m)
        case .authCheck(let m): self = .authCheck(m)
        case .credential(let m): self = .credential(m)
        case .error(let m): self = .error(m)
        default: return nil
        }
    }
}

/// What a manager sends a registered worker on its own (replies to the worker's requests go to their askers first).
public enum ManagerOrder: Sendable {
    case peers(Msg.Peers)
    case jobAssign(Msg.JobAssign)
    case cancel(Msg.Cancel)
    case jobDoneAck(Msg.JobDoneAck)
    case ping
    /// The answer to a ping of the worker's (its id is no request's): any frame counts as a sign of life.
    case pong
    case error(Msg.Error)

    /// nil: not a message a manager sends a worker unasked.
    public init?(_ message: GridMessage) {
        switch message {
        case .peers(let m): self = .peers(m)
        case .jobAssign(let m): self = .jobAssign(m)
        case .cancel(let m): self = .cancel(m)
        case .jobDoneAck(let m): self = .jobDoneAck(m)
        case .ping: self = .ping
        case .pong: self = .pong
        case .error(let m): self = .error(m)
        default: return nil
        }
    }
}

/// What an authenticated caller asks a peer port: anyone (ping, status, a function task), only another peer (memory
/// replication, chunks), or only a person (their own memory and files, the best peer).
public enum PeerPortRequest: Sendable {
    case ping
    case getPeerStatus
    case cpuTask(Msg.CPUTask)
    // Peer ⇄ peer.
    case memSync(Msg.MemEntries)
    case memFetch(Msg.MemFetch)
    case chunkPut(Msg.ChunkData)
    case chunkGet(Msg.ChunkData)
    case chunkHas(Msg.ChunkHashes)
    case chunkRefs(Msg.ChunkRefs)
    case chunkKeep(Msg.ChunkHashes)
    // Client ⇄ peer (a peer may list keys too, to sync).
    case listMem(Msg.ListMem)
    case getBestPeer(Msg.GetBestPeer)
    case setMem(Msg.SetMem)
    case getMem(Msg.MemKey)
    case delMem(Msg.MemKey)
    case putFile(Msg.PutFile)
    case putFileChunk(Msg.PutFileChunk)
    case putFileEnd(Msg.PutFileEnd)
    case getFile(Msg.FileRef)
    case getFileChunk(Msg.GetFileChunk)
    case listFiles(Msg.ListFiles)
    case deleteFile(Msg.FileRef)

    /// nil: not a request a peer answers.
    public init?(_ message: GridMessage) {
        switch message {
        case .ping: self = .ping
        case .getPeerStatus: self = .getPeerStatus
        case .cpuTask(let m): self = .cpuTask(m)
        case .memSync(let m): self = .memSync(m)
        case .memFetch(let m): self = .memFetch(m)
        case .chunkPut(let m): self = .chunkPut(m)
        case .chunkGet(let m): self = .chunkGet(m)
        case .chunkHas(let m): self = .chunkHas(m)
        case .chunkRefs(let m): self = .chunkRefs(m)
        case .chunkKeep(let m): self = .chunkKeep(m)
        case .listMem(let m): self = .listMem(m)
        case .getBestPeer(let m): self = .getBestPeer(m)
        case .setMem(let m): self = .setMem(m)
        case .getMem(let m): self = .getMem(m)
        case .delMem(let m): self = .delMem(m)
        case .putFile(let m): self = .putFile(m)
        case .putFileChunk(let m): self = .putFileChunk(m)
        case .putFileEnd(let m): self = .putFileEnd(m)
        case .getFile(let m): self = .getFile(m)
        case .getFileChunk(let m): self = .getFileChunk(m)
        case .listFiles(let m): self = .listFiles(m)
        case .deleteFile(let m): self = .deleteFile(m)
        default: return nil
        }
    }
}
