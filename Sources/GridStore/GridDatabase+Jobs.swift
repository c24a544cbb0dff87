import Crypto
public import Foundation
public import GridCore
public import GridScheduler

extension GridDatabase {
    /// What the end of a run looked like, from the worker.
    public struct RunResult: Hashable, Sendable {
        public var state: JobState
        public var exitCode: Int32?
        public var runtimeMs: Int64
        public var peakMemoryKb: Int64
        public var cpuSeconds: Double
        public var reason: String?
        /// The run never started (its Python environment could not be built): the whole hold goes back, nothing is paid.
        public var refund = false
        /// A line for the job's history besides its end (what became of the outputs it saves in the grid).
        public var note: String?
        public init(state: JobState, exitCode: Int32?, runtimeMs: Int64, peakMemoryKb: Int64, cpuSeconds: Double, reason: String?) {
            self.state = state
            self.exitCode = exitCode
            self.runtimeMs = runtimeMs
            self.peakMemoryKb = peakMemoryKb
            self.cpuSeconds = cpuSeconds
            self.reason = reason
        }
    }

    /// Stores a new job and holds its full cost, in one transaction: `submitted → pending`.
    /// Refuses a job the owner cannot afford, with the balance and the cost in the message.
    public func submitJob(owner: UserID, spec: JobSpec, script: StoredFile, inputs: [StoredFile], now: Double) async throws -> JobRecord {
        try await submitJob(owner: owner, spec: spec, script: script, inputs: inputs, now: now, key: nil).job
    }

    /// A submission's outcome: the job, and whether it was made by an earlier attempt with the same key.
    public struct Submission: Sendable {
        public var job: JobRecord
        public var replayed: Bool
    }

    /// `submitJob` with an idempotency key (`SubmitKey`): in the same transaction that would make the job, the owner's
    /// job already holding `key` is looked up; the same submission again gets that job back and is charged nothing,
    /// a different one under the same key is refused (conflict). Write transactions are exclusive on both backends,
    /// so two attempts racing with one key make one job.
    public func submitJob(
        owner: UserID, spec: JobSpec, script: StoredFile, inputs: [StoredFile], now: Double, key: String?
    ) async throws -> Submission {
        let key = try key.map { try SubmitKey.validate($0) }
        try spec.validate()
        try FileName.validate(script.name)
        var seen: Set<String> = [script.name]
        for input in inputs {
            try FileName.validate(input.name)
            guard seen.insert(input.name).inserted else { throw GridError(.badRequest, "two input files are named \(input.name)") }
        }
        let cost = CreditRules.hold(spec)
        let digest = key == nil ? "" : try Self.submissionDigest(spec: spec, script: script, inputs: inputs)
        return try await write { db in
            if let key {
                let row = try StoreRow.fetchOne(
                    db, sql: "SELECT id, submit_digest FROM jobs WHERE owner_id = ? AND submit_key = ?", arguments: [owner, key])
                let existing = row.map { (id: $0["id"] as Int64, digest: $0["submit_digest"] as String?) }
                switch SubmitKey.decide(existing: existing, digest: digest) {
                case .create: break
                case .replay(let id):
                    guard let job = try Self.job(db, id) else { throw GridError(.internal, "job \(id) vanished") }
                    return Submission(job: job, replayed: true)
                case .conflict(let id):
                    throw GridError(
                        .conflict,
                        "this Idempotency-Key was already used for job \(id), with a different script, inputs or spec; use a new key for a new job")
                }
            }
            let balance = try Self.balance(db, .user(owner))
            guard balance >= cost else {
                throw GridError(
                    .insufficientCredits,
                    "this job costs up to \(cost) credits but your balance is \(balance); ask for fewer resources or minutes, or earn credits by running a worker"
                )
            }
            let specJSON = String(decoding: try JSONEncoder().encode(spec), as: UTF8.self)
            let id = try db.insert(
                sql: "INSERT INTO jobs (owner_id, spec, script_name, state, hold, submitted_at, submit_key, submit_digest, \(SchedulingColumns.names)) "
                    + "VALUES (?, ?, ?, 'submitted', ?, ?, ?, ?, \(SchedulingColumns.placeholders))",
                arguments: [owner, specJSON, script.name, cost, now, key, key == nil ? nil : digest] + SchedulingColumns.values(spec))
            try Self.event(db, id, .submitted, "held \(cost) credits", now)
            try Self.move(db, cost, from: .user(owner), to: .hold(id), reason: "hold", job: id, now: now)
            for file in [script] + inputs {
                try db.execute(
                    sql: "INSERT INTO job_files (job_id, kind, name, data) VALUES (?, 'input', ?, ?)", arguments: [id, file.name, file.data])
            }
            try db.execute(sql: "UPDATE jobs SET state = 'pending' WHERE id = ?", arguments: [id])
            try Self.event(db, id, .pending, nil, now)
            return Submission(job: try Self.job(db, id)!, replayed: false)
        }
    }

    /// SHA-256 (hex) of what a submission asks for: the spec (keys sorted), then each file's name and bytes, lengths
    /// first so that no two different submissions run together into the same bytes.
    static func submissionDigest(spec: JobSpec, script: StoredFile, inputs: [StoredFile]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var hash = SHA256()
        func part(_ bytes: Data) {
            var length = UInt64(bytes.count).bigEndian
            withUnsafeBytes(of: &length) { hash.update(bufferPointer: $0) }
            hash.update(data: bytes)
        }
        part(try encoder.encode(spec))
        for file in [script] + inputs {
            part(Data(file.name.utf8))
            part(file.data)
        }
        return Hex.string(hash.finalize())
    }

    public func job(id: JobID) async throws -> JobRecord? {
        try await read { db in try Self.job(db, id) }
    }

    /// Jobs, newest first, optionally of one owner and one state.
    public func jobs(owner: UserID? = nil, state: JobState? = nil, limit: Int = 100, offset: Int = 0) async throws -> [JobRecord] {
        try await read { db in
            var (filter, args) = Self.jobFilter(owner: owner, state: state)
            args += [limit, offset]
            return try StoreRow.fetchAll(
                db, sql: "SELECT * FROM jobs WHERE " + filter + " ORDER BY id DESC LIMIT ? OFFSET ?", arguments: args
            ).map(JobRecord.init(row:))
        }
    }

    /// The credits `user`'s jobs that may still run hold now, summed by the store: a page that listed their jobs to
    /// add them up decoded ten thousand rows a look, and missed the holds of older ones past those.
    public func held(by user: UserID) async throws -> Int {
        try await read { db in
            let (filter, args) = Self.jobFilter(owner: user, state: nil)
            let open = [JobState.submitted, .pending, .running].map { "'\($0.rawValue)'" }.joined(separator: ", ")
            var held =
                try Int.fetchOne(
                    db, sql: "SELECT COALESCE(SUM(hold), 0) FROM jobs WHERE " + filter + " AND state IN (\(open))", arguments: args) ?? 0
            // And what ended runs keep until their check decides (`Verification.keepsHold`).
            let kept = try StoreRow.fetchAll(
                db, sql: "SELECT id FROM jobs WHERE " + filter + " AND state NOT IN (\(open)) AND verification = 'unverified'", arguments: args)
            for row in kept { held += max(0, try Self.balance(db, .hold(row["id"] as JobID))) }
            return held
        }
    }

    /// Count of jobs by state.
    public func jobCounts() async throws -> [JobState: Int] {
        try await read { db in
            var out: [JobState: Int] = [:]
            for row in try StoreRow.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM jobs GROUP BY state") {
                if let s = JobState(rawValue: row["state"]) { out[s] = row["n"] }
            }
            return out
        }
    }

    public func events(of job: JobID) async throws -> [JobEvent] {
        try await read { db in
            try StoreRow.fetchAll(db, sql: "SELECT * FROM job_events WHERE job_id = ? ORDER BY id", arguments: [job]).map {
                JobEvent(at: $0["at"], state: JobState(rawValue: $0["state"]) ?? .failed, detail: $0["detail"])
            }
        }
    }

    /// The job's input files (the script first) or its outputs.
    public func files(of job: JobID, outputs: Bool) async throws -> [StoredFile] {
        try await read { db in
            let script = try String.fetchOne(db, sql: "SELECT script_name FROM jobs WHERE id = ?", arguments: [job])
            let rows = try StoreRow.fetchAll(
                db, sql: "SELECT name, data FROM job_files WHERE job_id = ? AND kind = ? ORDER BY name",
                arguments: [job, outputs ? "output" : "input"])
            var files = rows.map { StoredFile(name: $0["name"], data: $0["data"]) }
            if !outputs, let i = files.firstIndex(where: { $0.name == script }) { files.insert(files.remove(at: i), at: 0) }
            return files
        }
    }

    /// Names and sizes of a job's outputs.
    public func outputList(of job: JobID) async throws -> [(name: String, size: Int)] {
        try await fileList(of: job, outputs: true)
    }

    /// Names and sizes of a job's inputs (the script first, as `files(of:outputs:)` orders them) or outputs, without
    /// reading their bytes (a `JOB_ASSIGN` names them; its writer reads the bytes as it sends them).
    public func fileList(of job: JobID, outputs: Bool) async throws -> [(name: String, size: Int)] {
        try await read { db in
            let script = try String.fetchOne(db, sql: "SELECT script_name FROM jobs WHERE id = ?", arguments: [job])
            var list: [(name: String, size: Int)] = try StoreRow.fetchAll(
                db, sql: "SELECT name, length(data) AS size FROM job_files WHERE job_id = ? AND kind = ? ORDER BY name",
                arguments: [job, outputs ? "output" : "input"]
            ).map { ($0["name"], $0["size"]) }
            if !outputs, let i = list.firstIndex(where: { $0.name == script }) { list.insert(list.remove(at: i), at: 0) }
            return list
        }
    }

    public func output(of job: JobID, name: String) async throws -> Data? {
        try await read { db in
            try Data.fetchOne(
                db, sql: "SELECT data FROM job_files WHERE job_id = ? AND kind = 'output' AND name = ?", arguments: [job, name])
        }
    }

    /// Pending jobs as the scheduler sees them.
    public func queuedJobs() async throws -> [Placement.Job] {
        try await queueSync(after: nil).pending.map(\.job)
    }

    /// What the leader's copy of the queue (`PendingQueue`) needs to catch up with the store: after a position of the
    /// queue's change log (`QueueSync.upTo` of an earlier sync), the jobs changed since; with no position, or one from
    /// before the log was last cut, every pending job (`full`). One read, one snapshot.
    public func queueSync(after position: Int64?) async throws -> QueueSync {
        try await read { db in
            let pruned = try Int64.fetchOne(db, sql: "SELECT upto FROM queue_changes_pruned WHERE id = 1") ?? 0
            // At least the cut: a log cut to nothing has no MAX, and a reader at 0 would be behind the cut for ever.
            let upTo = max(pruned, try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(seq), 0) FROM queue_changes") ?? 0)
            let columns = "id, owner_id, submitted_at, avoid_owners, pending_reason, \(SchedulingColumns.names), "
                + "CASE WHEN sched_cpus IS NULL THEN spec END AS spec"
            guard let position, position >= pruned else {
                let rows = try StoreRow.fetchAll(db, sql: "SELECT \(columns) FROM jobs WHERE state = 'pending' ORDER BY id")
                return QueueSync(upTo: upTo, full: true, pending: Self.queued(rows), gone: [])
            }
            // Each changed job once, with its row where it is still pending (a job that left the queue, or was
            // deleted, has none): the jobs a pass started come back here as gone, without their specs.
            let rows = try StoreRow.fetchAll(
                db,
                sql: """
                    SELECT c.job_id, j.owner_id, j.submitted_at, j.avoid_owners, j.pending_reason, \(SchedulingColumns.names(in: "j")),
                        CASE WHEN j.sched_cpus IS NULL THEN j.spec END AS spec
                    FROM (SELECT DISTINCT job_id FROM queue_changes WHERE seq > ?) AS c
                    LEFT JOIN jobs AS j ON j.id = c.job_id AND j.state = 'pending' ORDER BY c.job_id
                    """,
                arguments: [position])
            let pending = Self.queued(rows.filter { ($0[1] as UserID?) != nil })
            let gone = rows.compactMap { ($0[1] as UserID?) == nil ? ($0[0] as JobID) : nil }
            return QueueSync(upTo: max(upTo, position), full: false, pending: pending, gone: gone)
        }
    }

    /// Cuts the queue's change log up to `position` (the leader has read that far).
    public func pruneQueueChanges(through position: Int64) async throws {
        try await write { db in
            try db.execute(sql: "DELETE FROM queue_changes WHERE seq <= ?", arguments: [position])
            try db.execute(sql: "UPDATE queue_changes_pruned SET upto = ? WHERE id = 1 AND upto < ?", arguments: [position, position])
        }
    }

    /// Rows of `jobs` (id, owner_id, submitted_at, avoid_owners, pending_reason, the scheduling columns, then the spec
    /// where they are NULL) as the scheduler sees them: a row from before the columns has its spec decoded.
    static func queued(_ rows: [StoreRow]) -> [QueueSync.Queued] {
        let decoder = JSONDecoder()
        return rows.map { row in
            let avoid = (row[3] as String?).flatMap { try? decoder.decode([UserID].self, from: Data($0.utf8)) } ?? []
            let fields: SchedulingColumns
            if let cpus: Int = row[5] {
                fields = SchedulingColumns(
                    cpus: cpus, ramGb: row[6] ?? 1, gpus: row[7] ?? 0, priority: row[8] ?? 0,
                    minTier: (row[9] as String?).flatMap(SandboxTier.init(rawValue:)) ?? .bwrap, env: row[10], requiresPython: row[11],
                    diskGb: row[12])
            } else {
                let spec = (row[13] as String?).flatMap { try? decoder.decode(SchedulingFields.self, from: Data($0.utf8)) } ?? SchedulingFields()
                fields = SchedulingColumns(spec)
            }
            let job = Placement.Job(
                id: row[0], owner: row[1], priority: fields.priority, request: Resources(cpus: fields.cpus, ramGb: fields.ramGb, gpus: fields.gpus),
                minTier: fields.minTier, submitted: row[2], avoidOwners: Set(avoid), env: fields.env, requiresPython: fields.requiresPython,
                diskGb: fields.diskGb ?? JobSpec.defaultDiskGb)
            return QueueSync.Queued(job: job, reason: row[4])
        }
    }

    /// Running jobs (for rebuilding leases at start-up).
    public func runningJobs() async throws -> [JobRecord] {
        try await read { db in
            try StoreRow.fetchAll(db, sql: "SELECT * FROM jobs WHERE state = 'running' ORDER BY id").map(JobRecord.init(row:))
        }
    }

    /// Each user's recent usage (CPU-seconds of jobs run in the last day), for fair share.
    public func recentUsage(since: Double) async throws -> [UserID: Double] {
        try await read { db in
            var out: [UserID: Double] = [:]
            for row in try StoreRow.fetchAll(
                db,
                // Grouped by `+owner_id`, an expression, not the column: SQLite would otherwise walk the owner index to
                // group, a scan of every job ever submitted, rather than the index range of the last day's starts.
                sql: "SELECT +owner_id AS owner_id, SUM(COALESCE(cpu_seconds, 0)) AS used, COUNT(*) AS n FROM jobs WHERE started_at >= ? GROUP BY +owner_id",
                arguments: [since])
            {
                let used: Double = row["used"] ?? 0
                let n: Int = row["n"]
                out[row["owner_id"]] = used + Double(n)
            }
            return out
        }
    }

    /// Commits a placement plan in one transaction, re-checking each assignment against the database: the job is still
    /// pending and not being cancelled, the worker is online, has a free slot, a strong enough sandbox tier, and free
    /// CPUs, RAM and GPUs for it next to the jobs it already runs. Returns the jobs now running, with their new attempts.
    public func apply(_ assignments: [Placement.Assignment], now: Double) async throws -> [JobRecord] {
        guard !assignments.isEmpty else { return [] }
        return try await write { db in
            // A few statements per pass, not a few per job: the planned jobs and workers are read in chunks, the checks
            // below run on them in memory (kept up to date as this transaction starts jobs), and the starts are
            // written in chunks. On PostgreSQL every statement is a round trip; on SQLite each still costs a parse of
            // its arguments. The checks are the same as one job at a time.
            struct Room {
                var online: Bool
                var name: String
                var tier: SandboxTier
                var slots: Int
                var total: Resources
                var used: Resources
                var running: Int
            }
            let decoder = JSONDecoder()
            // What the planned workers already run, in one scan of the running jobs (a query per worker would scan them
            // once per worker: 10,000 workers made that the whole cost of a pass).
            let planned = Set(assignments.map(\.worker))
            var inUse: [WorkerID: (used: Resources, count: Int)] = [:]
            let rows = try StoreRow.fetchAll(db, sql: "SELECT worker_id, spec FROM jobs WHERE state = 'running'")
            for row in rows {
                guard let worker: WorkerID = row[0], planned.contains(worker) else { continue }
                let resources = (try? decoder.decode(SchedulingFields.self, from: Data((row[1] as String).utf8)))?.resources ?? .zero
                let before = inUse[worker] ?? (.zero, 0)
                inUse[worker] = (before.used + resources, before.count + 1)
            }
            var jobs: [JobID: JobRecord] = [:]
            for chunk in Self.chunks(Array(Set(assignments.map(\.job))).sorted()) {
                for row in try StoreRow.fetchAll(db, sql: "SELECT * FROM jobs WHERE id IN (\(Self.placeholders(chunk.count)))", arguments: chunk.map { $0 }) {
                    let job = JobRecord(row: row)
                    jobs[job.id] = job
                }
            }
            var rooms: [WorkerID: Room] = [:]
            for chunk in Self.chunks(planned.sorted()) {
                for worker in try StoreRow.fetchAll(
                    db, sql: "SELECT id, name, resources, slots, tier, online FROM workers WHERE id IN (\(Self.placeholders(chunk.count)))",
                    arguments: chunk.map { $0 })
                {
                    let id: WorkerID = worker["id"]
                    let busy = inUse[id] ?? (.zero, 0)
                    rooms[id] = Room(
                        online: worker["online"], name: worker["name"], tier: SandboxTier(rawValue: worker["tier"]) ?? .restricted,
                        slots: worker["slots"],
                        total: (try? decoder.decode(Resources.self, from: Data((worker["resources"] as String).utf8))) ?? .zero,
                        used: busy.used, running: busy.count)
                }
            }
            var started: [JobRecord] = []
            for a in assignments {
                guard let job = jobs[a.job], job.state == .pending, !job.cancelRequested else { continue }
                guard var room = rooms[a.worker], room.online,
                    Placement.hasRoom(
                        tier: room.tier, free: room.total - room.used, freeSlots: max(0, room.slots) - room.running, for: job.spec.minTier, job.spec.resources)
                else { continue }
                room.used = room.used + job.spec.resources
                room.running += 1
                rooms[a.worker] = room
                // The row as the UPDATE below leaves it, without reading it back.
                var running = job
                running.state = .running
                running.workerId = a.worker
                running.attempt += 1
                running.startedAt = now
                running.pendingReason = nil
                running.tier = room.tier
                started.append(running)
                // A job planned twice in one pass (never by Placement, but the store does not rely on it) starts once.
                jobs[a.job]?.state = .running
            }
            for chunk in Self.chunks(started, size: 200) {
                // UPDATE … FROM (VALUES …): SQLite ≥ 3.33 and PostgreSQL both speak it; VALUES' columns are column1….
                let values = Array(repeating: "(?, ?, ?)", count: chunk.count).joined(separator: ", ")
                let idValue = db.dialect == .postgres ? "v.column1::bigint" : "v.column1"
                try db.execute(
                    sql: """
                        UPDATE jobs SET state = 'running', worker_id = v.column2, attempt = attempt + 1, started_at = ?, pending_reason = NULL,
                            log_attempt_base = log_total, tier = v.column3 FROM (VALUES \(values)) AS v WHERE jobs.id = \(idValue)
                        """,
                    arguments: [now] + chunk.flatMap { job -> StoreArguments in [job.id, job.workerId, job.tier?.rawValue] })
                try db.execute(
                    sql: "INSERT INTO job_events (job_id, at, state, detail) VALUES "
                        + Array(repeating: "(?, ?, ?, ?)", count: chunk.count).joined(separator: ", "),
                    arguments: chunk.flatMap { job -> StoreArguments in
                        [job.id, now, JobState.running.rawValue, "on worker \(rooms[job.workerId ?? ""]?.name ?? "?") (attempt \(job.attempt))"]
                    })
            }
            return started
        }
    }

    /// Records why each job is still pending (only where it changed): one statement per reason and chunk of jobs.
    public func setPendingReasons(_ reasons: [JobID: String]) async throws {
        guard !reasons.isEmpty else { return }
        var byReason: [String: [JobID]] = [:]
        for (id, reason) in reasons { byReason[reason, default: []].append(id) }
        try await write { [byReason] db in
            for (reason, ids) in byReason {
                for chunk in Self.chunks(ids.sorted()) {
                    try db.execute(
                        sql: "UPDATE jobs SET pending_reason = ? WHERE id IN (\(Self.placeholders(chunk.count))) AND state = 'pending' "
                            + "AND pending_reason IS DISTINCT FROM ?",
                        arguments: [reason] + chunk.map { $0 as (any StoreValueConvertible)? } + [reason])
                }
            }
        }
    }

    /// `?, ?, …` for an `IN (…)` list of `count`.
    static func placeholders(_ count: Int) -> String { Array(repeating: "?", count: count).joined(separator: ", ") }

    /// `items` in slices of at most `size`: a statement's arguments stay far below both stores' limits (SQLite 32,766,
    /// PostgreSQL 65,535).
    static func chunks<T>(_ items: [T], size: Int = 500) -> [ArraySlice<T>] {
        stride(from: 0, to: items.count, by: size).map { items[$0..<min($0 + size, items.count)] }
    }

    /// Appends log bytes of attempt `job` at `offset` within that attempt. Duplicate bytes (a resend after a reconnect)
    /// are skipped. Returns false when the attempt is not the job's current one. At most `maxBytes` of the job's log are
    /// kept (all its runs together): bytes beyond are dropped, with one note saying so. A worker sends what it likes, and
    /// each byte stored is the manager's disk.
    @discardableResult
    public func appendLog(_ job: JobRef, offset: Int64, data: Data, maxBytes: Int64 = .max) async throws -> Bool {
        try await write { db in
            guard let row = try StoreRow.fetchOne(
                db, sql: "SELECT attempt, state, log_total, log_attempt_base FROM jobs WHERE id = ?", arguments: [job.jobId])
            else { return false }
            let attempt: Int = row["attempt"]
            let state: String = row["state"]
            guard attempt == job.attempt, state == JobState.running.rawValue else { return false }
            var total: Int64 = row["log_total"]
            guard total < maxBytes else { return true }
            let base: Int64 = row["log_attempt_base"]
            let (start, overflow) = base.addingReportingOverflow(offset)
            guard !overflow else { return true }
            var bytes = data
            if start < total {
                let skip = Int(min(Int64(bytes.count), total - start))
                bytes = bytes.dropFirst(skip)
            } else if start > total {
                // Bytes between what is stored and this chunk never arrived: say so rather than splice silently, and
                // shift this attempt's base so later offsets land after the note.
                let gap = start - total
                let note = Data("\n[\(gap) bytes of log lost in transit]\n".utf8)
                try Self.appendLog(db, job.jobId, note, total: total)
                total += Int64(note.count)
                try db.execute(
                    sql: "UPDATE jobs SET log_attempt_base = log_attempt_base + ? WHERE id = ?", arguments: [Int64(note.count) - gap, job.jobId])
            }
            guard !bytes.isEmpty else { return true }
            let room = max(0, maxBytes - total)
            if Int64(bytes.count) > room {
                bytes = bytes.prefix(Int(room)) + Data("\n[log cut: the manager keeps at most \(maxBytes >> 20) MB of a job's log]\n".utf8)
            }
            try Self.appendLog(db, job.jobId, Data(bytes), total: total)
            return true
        }
    }

    /// How many bytes of the current attempt's log are stored.
    public func logOffset(of job: JobID) async throws -> Int64 {
        try await read { db in
            try Int64.fetchOne(db, sql: "SELECT log_total - log_attempt_base FROM jobs WHERE id = ?", arguments: [job]) ?? 0
        }
    }

    /// Stored pieces of a log read by one `log(of:from:limit:)`: a worker may send its log a byte at a time.
    public static let maxLogRowsPerRead = 4_096

    /// The job's log from byte `offset` on (across attempts), at most `limit` bytes (fewer when it is stored in more than
    /// `maxLogRowsPerRead` pieces: the reader asks again from where this ends), and the total length.
    ///
    /// It reads from the piece holding `offset` on, a batch at a time, through the `(job_id, pos)` index: every read
    /// loaded the whole stored log (64 MiB a job), and scanned every piece, before it kept its megabyte.
    public func log(of job: JobID, from offset: Int64, limit: Int = 1 << 20, maxRows: Int = maxLogRowsPerRead) async throws -> (data: Data, total: Int64) {
        try await read { db in
            let total = try Int64.fetchOne(db, sql: "SELECT log_total FROM jobs WHERE id = ?", arguments: [job]) ?? 0
            var out = Data()
            guard limit > 0 else { return (out, total) }
            var from = try Int64.fetchOne(db, sql: "SELECT MAX(pos) FROM job_logs WHERE job_id = ? AND pos <= ?", arguments: [job, offset]) ?? 0
            var rowsRead = 0
            let batch = max(1, min(256, maxRows))
            reading: while rowsRead < maxRows {
                let rows = try StoreRow.fetchAll(
                    db, sql: "SELECT pos, data FROM job_logs WHERE job_id = ? AND pos >= ? ORDER BY pos LIMIT \(batch)", arguments: [job, from])
                for row in rows {
                    rowsRead += 1
                    let pos: Int64 = row["pos"]
                    let data: Data = row["data"]
                    let skip = offset > pos ? Int(clamping: offset - pos) : 0
                    if skip < data.count { out.append(data.dropFirst(skip)) }
                    from = pos &+ 1
                    if out.count >= limit || rowsRead >= maxRows { break reading }
                }
                if rows.count < batch { break }
            }
            if out.count > limit { out = out.prefix(limit) }
            return (out, total)
        }
    }

    /// Records the end of a run reported by its worker and settles its credits, in one transaction.
    /// Returns nil (and changes nothing) when the report is about an attempt the job no longer is at.
    public func finish(
        _ ref: JobRef, worker: WorkerID, result: RunResult, outputs: [StoredFile], verification: Verification.Policy = .off, now: Double
    ) async throws -> JobRecord? {
        try await finishRun(ref, worker: worker, result: result, outputs: outputs, verification: verification, now: now)?.job
    }

    /// Records the end of a run and settles it, in one transaction, with verification (`Verification`):
    /// - a finished run of a job is selected for a check or not (probation, spot check, `--verify`; never a
    ///   `--nondeterministic` job, nor a run on the submitter's own worker unless they asked); a selected run's pay
    ///   goes to `escrow:J` and a check run is queued, its hold taken from the submitter's reserve (`--verify`) or
    ///   from the fund;
    /// - a check run's pay always goes to escrow; once every check run of the job has ended the runs are compared and
    ///   the verdict carried out (`decide`);
    /// - the fund takes its share of every payment.
    /// `checkers`: the owners whose workers could run a check (`Verification.select`; nil: any could).
    /// Returns nil (and changes nothing) when the report is about an attempt the job no longer is at.
    public func finishRun(
        _ ref: JobRef, worker: WorkerID, result: RunResult, outputs: [StoredFile], verification policy: Verification.Policy = .off,
        checkers: Verification.Checkers? = nil, now: Double
    ) async throws -> Finished? {
        try await write { db in
            guard let job = try Self.job(db, ref.jobId), job.state == .running, job.attempt == ref.attempt, job.workerId == worker
            else { return nil }
            guard let ownerId = try Int64.fetchOne(db, sql: "SELECT owner_id FROM workers WHERE id = ?", arguments: [worker]) else {
                return nil
            }
            // A check run held while its payer was short (the fund pays as far as it has) is topped up now, as far as
            // the payer has by now: before, its worker was paid only what had been held, for a whole run.
            if let root = job.checkOf, !result.refund, let checked = try Self.job(db, root) {
                try Self.topUpCheckHold(db, check: job.id, root: checked, from: try Self.payer(db, job), now: now)
                try Self.recordHold(db, job.id)
            }
            let held = try Self.balance(db, .hold(job.id))
            // A run whose Python environment could not be built is refunded in full (`refund`): nothing is paid.
            let paid = result.refund ? 0 : min(CreditRules.settle(job.spec, ending: .ran(runtimeMilliseconds: result.runtimeMs)).paid, held)
            if result.refund { try Self.dropInputs(db, job.id) }
            for file in outputs {
                try db.execute(
                    sql: """
                        INSERT INTO job_files (job_id, kind, name, data) VALUES (?, 'output', ?, ?)
                        ON CONFLICT (job_id, kind, name) DO UPDATE SET data = excluded.data
                        """,
                    arguments: [job.id, file.name, file.data])
            }
            try db.execute(
                sql: """
                    UPDATE jobs SET state = ?, paid = ?, exit_code = ?, runtime_ms = ?, peak_memory_kb = ?, cpu_seconds = ?, reason = ?,
                        finished_at = ? WHERE id = ?
                    """,
                arguments: [
                    result.state.rawValue, paid, result.exitCode.map { Int64($0) }, result.runtimeMs, result.peakMemoryKb,
                    result.cpuSeconds, result.reason, now, job.id,
                ])
            try db.execute(
                sql: "UPDATE workers SET cpu_seconds_given = cpu_seconds_given + ?, jobs_done = jobs_done + 1 WHERE id = ?",
                arguments: [result.cpuSeconds, worker])
            // Is this run checked? A run that timed out is too: it is paid its whole time limit, and a worker that never
            // ran the job at all could otherwise claim that much unchecked (a check that finishes contradicts it).
            var reason: Verification.Reason?
            if !result.refund, job.checkOf == nil, [.completed, .failed, .timedOut].contains(result.state),
                ownerId != job.ownerId || job.spec.wantsVerification
            {
                let reputation = try Self.reputation(db, worker, rules: policy.reputation)
                let checker: (online: Bool, known: Bool) = checkers.map { $0.besides([ownerId, job.ownerId]) } ?? (online: true, known: true)
                reason = Verification.select(
                    job: job.id, spec: job.spec, reputation: reputation, policy: policy, checkerOnline: checker.online,
                    checkerKnown: checker.known, ended: result.state)
            }
            let escrowed = reason != nil || job.checkOf != nil
            // A refunded run (its environment could not be built) has no result to compare: a check run's decides
            // nothing (another takes its place), and an honest checker is never contradicted for it.
            if escrowed && !result.refund {
                let digest = try Self.digest(db, job.id, exitCode: result.exitCode, outputs: outputs)
                try db.execute(
                    sql: "UPDATE jobs SET digest = ? WHERE id = ?",
                    arguments: [String(decoding: try JSONEncoder().encode(digest), as: UTF8.self), job.id])
            }
            var check: JobID?
            let submitterPays = reason == .requested
            // The submitter pays for a `--verify` job's check (from the second run's cost it held), the fund for a
            // probation check or a spot check (`Verification.checkPayer`).
            if reason != nil {
                check = try Self.queueCheck(
                    db, root: job, avoidOwners: [ownerId], submitterPays: submitterPays, fundPays: !submitterPays, now: now)
            }
            let moves = Verification.settleRun(
                job: job.id, held: held, paid: paid, fundSharePercent: policy.fundSharePercent, workerOwner: ownerId, escrowed: escrowed,
                payer: try Self.payer(db, job), reserve: CreditRules.runCost(job.spec), reserveTo: submitterPays ? check.map { .hold($0) } : nil,
                keep: check != nil && Verification.keepsHold(reason))
            try Self.apply(db, moves, job: job.checkOf ?? job.id, now: now)
            if let check { try Self.recordHold(db, check) }
            var detail =
                result.refund
                ? "refunded \(held) credits" : escrowed ? "paid \(paid) credits (held in escrow until checked)" : "paid \(paid) credits"
            if let code = result.exitCode { detail = "exit code \(code); " + detail }
            if let reason = result.reason { detail = reason + "; " + detail }
            try Self.event(db, job.id, result.state, detail, now)
            if let note = result.note { try Self.event(db, job.id, result.state, note, now) }
            var finished = Finished(job: job, checkQueued: check)
            if let reason, let check {
                try db.execute(
                    sql: "UPDATE jobs SET verification = 'unverified', verification_reason = ? WHERE id = ?", arguments: [reason.rawValue, job.id])
                try Self.event(db, job.id, result.state, "unverified: a check run (job \(check)) is queued (\(reason.rawValue))", now)
            }
            if check != nil && Verification.keepsHold(reason), case let kept = try Self.balance(db, .hold(job.id)), kept > 0 {
                try Self.event(db, job.id, result.state, "\(kept) credits of its hold are kept until the check decides", now)
            }
            if let root = job.checkOf {
                let (another, quarantined, outcomes) = try Self.decide(db, root: root, policy: policy, now: now)
                finished.checkQueued = another
                finished.quarantined = quarantined
                finished.outcomes = outcomes
            }
            finished.job = try Self.job(db, job.id)!
            return finished
        }
    }

    /// How a run was interrupted, as the manager saw it.
    public struct Interruption: Hashable, Sendable {
        public var kind: LossPolicy.Kind
        /// The worker the run was on.
        public var worker: WorkerID
        /// In words, for the log and `status`.
        public var reason: String
        /// No other job of this worker was lost in the same outage.
        public var alone: Bool
        public init(kind: LossPolicy.Kind, worker: WorkerID, reason: String, alone: Bool) {
            self.kind = kind
            self.worker = worker
            self.reason = reason
            self.alone = alone
        }
    }

    /// How long a worker that lost other jobs counts as a host that goes away by itself (`LossPolicy.Evidence`).
    static let flakyWindowSeconds: Double = 3600

    /// A running job's run was interrupted (its worker vanished, could not start it, or its report never arrived whole).
    /// The interruption is recorded; the job goes back to `pending` unless it was cancelled or `LossPolicy` gives it up,
    /// and then it ends, refunded in full (the submitter is not charged for a lost run). One transaction.
    public func requeue(_ ref: JobRef, _ interruption: Interruption, limits: LossPolicy.Limits, now: Double) async throws -> JobRecord? {
        try await write { db in
            guard let job = try Self.job(db, ref.jobId), job.state == .running, job.attempt == ref.attempt else { return nil }
            let reason = interruption.reason
            let flaky =
                try Bool.fetchOne(
                    db,
                    sql: "SELECT EXISTS (SELECT 1 FROM job_interruptions WHERE worker_id = ? AND job_id != ? AND kind = ? AND at >= ? AND at < ?)",
                    arguments: [interruption.worker, job.id, LossPolicy.Kind.workerLost.rawValue, now - Self.flakyWindowSeconds, now]) ?? false
            let evidence = LossPolicy.Evidence(
                alone: interruption.alone, hostFlaky: flaky, ranSeconds: now - (job.startedAt ?? now), limitSeconds: Double(job.spec.minutes) * 60)
            let blamed = LossPolicy.blames(interruption.kind, evidence)
            try db.execute(
                sql: "INSERT INTO job_interruptions (job_id, attempt, worker_id, at, kind, blamed, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
                arguments: [job.id, job.attempt, interruption.worker, now, interruption.kind.rawValue, blamed, reason])
            let history = try Self.interruptions(db, job.id).map {
                LossPolicy.Loss(worker: $0.workerId, at: $0.at, kind: $0.kind, blamed: $0.blamed)
            }
            let note = "\n--- \(reason) ---\n"
            try Self.appendLog(db, job.id, Data(note.utf8), total: job.logBytes)
            // A worker that said the job's environment cannot be built: its owner's workers never get the job again
            // (`EnvironmentFailure`), so one owner's word, repeated, cannot use up the job's tries.
            if interruption.kind == .environmentFailed, let owner = try Self.workerOwner(db, interruption.worker), !job.avoidOwners.contains(owner) {
                let avoid = String(decoding: try JSONEncoder().encode((job.avoidOwners + [owner]).sorted()), as: UTF8.self)
                try db.execute(sql: "UPDATE jobs SET avoid_owners = ? WHERE id = ?", arguments: [avoid, job.id])
            }
            if job.cancelRequested {
                try Self.end(db, job, .cancelled, reason: "cancelled (\(reason))", refund: true, now: now)
            } else if case .giveUp(let why) = LossPolicy.decide(history: history, submittedAt: try Self.queuedAt(db, job), now: now, limits: limits) {
                try Self.end(db, job, .failed, reason: "\(reason); \(why)", refund: true, now: now)
            } else {
                try db.execute(sql: "UPDATE jobs SET state = 'pending', worker_id = NULL, started_at = NULL WHERE id = ?", arguments: [job.id])
                try Self.event(db, job.id, .pending, "\(reason); will run again (interruption \(history.count))", now)
            }
            return try Self.job(db, job.id)
        }
    }

    /// When a job was queued, for `LossPolicy`'s age: its submission, or for a check run the moment it was queued (a
    /// check keeps its job's submission time as its place in the queue; a day-old job's check was given up at its first
    /// interruption).
    static func queuedAt(_ db: any StoreSession, _ job: JobRecord) throws -> Double {
        guard job.checkOf != nil else { return job.submittedAt }
        return try Double.fetchOne(db, sql: "SELECT MIN(at) FROM job_events WHERE job_id = ?", arguments: [job.id]) ?? job.submittedAt
    }

    /// The owners of the workers that said job `job`'s Python environment could not be built, in the interruptions
    /// recorded so far (`EnvironmentFailure`).
    public func environmentFailureOwners(of job: JobID) async throws -> Set<UserID> {
        try await read { db in
            Set(
                try StoreRow.fetchAll(
                    db,
                    sql: """
                        SELECT DISTINCT w.owner_id FROM job_interruptions i JOIN workers w ON w.id = i.worker_id
                        WHERE i.job_id = ? AND i.kind = ?
                        """,
                    arguments: [job, LossPolicy.Kind.environmentFailed.rawValue]
                ).map { $0["owner_id"] as UserID })
        }
    }

    /// Every interruption of a job, oldest first.
    public func interruptions(of job: JobID) async throws -> [InterruptionRecord] {
        try await read { db in try Self.interruptions(db, job) }
    }

    static func interruptions(_ db: any StoreSession, _ job: JobID) throws -> [InterruptionRecord] {
        try StoreRow.fetchAll(
            db, sql: "SELECT attempt, worker_id, at, kind, blamed, reason FROM job_interruptions WHERE job_id = ? ORDER BY id", arguments: [job]
        ).map {
            InterruptionRecord(
                attempt: $0["attempt"], workerId: $0["worker_id"], at: $0["at"], kind: LossPolicy.Kind(rawValue: $0["kind"]) ?? .workerLost,
                blamed: $0["blamed"], reason: $0["reason"])
        }
    }

    /// What a cancel request did.
    public enum CancelOutcome: Hashable, Sendable {
        /// The job had not started: it is cancelled and refunded.
        case cancelled
        /// The job is running on `worker`: tell it to stop; the job ends when the worker confirms.
        case stopRunning(JobRef, worker: WorkerID)
    }

    /// Cancels a job on behalf of its owner.
    public func requestCancel(_ id: JobID, by user: UserID, now: Double) async throws -> CancelOutcome {
        try await write { db in
            guard let job = try Self.job(db, id), job.ownerId == user, job.checkOf == nil else {
                throw GridError(.notFound, "no job \(id) of yours")
            }
            switch job.state {
            case .submitted, .pending:
                try Self.end(db, job, .cancelled, reason: "cancelled before it started; refunded", refund: true, now: now)
                return .cancelled
            case .running:
                // The first cancel's time is kept: a second must not move the end of what is billed.
                try db.execute(
                    sql: "UPDATE jobs SET cancel_requested = 1, cancel_requested_at = COALESCE(cancel_requested_at, ?) WHERE id = ?",
                    arguments: [now, id])
                return .stopRunning(job.ref, worker: job.workerId ?? "")
            case .completed, .failed, .timedOut, .cancelled:
                throw GridError(.conflict, "job \(id) already ended (\(job.state.rawValue))")
            }
        }
    }

    // MARK: - Helpers inside transactions

    /// The WHERE clause (and its arguments) selecting jobs of one owner and/or one state.
    static func jobFilter(owner: UserID?, state: JobState?) -> (String, StoreArguments) {
        // Check runs are the manager's, not listed among their submitter's jobs.
        var clauses = ["check_of IS NULL"]
        var args: StoreArguments = []
        if let owner {
            clauses.append("owner_id = ?")
            args.append(owner)
        }
        if let state {
            clauses.append("state = ?")
            args.append(state.rawValue)
        }
        return (clauses.joined(separator: " AND "), args)
    }

    static func job(_ db: any StoreSession, _ id: JobID) throws -> JobRecord? {
        try StoreRow.fetchOne(db, sql: "SELECT * FROM jobs WHERE id = ?", arguments: [id]).map(JobRecord.init(row:))
    }

    static func event(_ db: any StoreSession, _ job: JobID, _ state: JobState, _ detail: String?, _ now: Double) throws {
        try db.execute(sql: "INSERT INTO job_events (job_id, at, state, detail) VALUES (?, ?, ?, ?)", arguments: [job, now, state.rawValue, detail])
    }

    static func appendLog(_ db: any StoreSession, _ job: JobID, _ data: Data, total: Int64) throws {
        try db.execute(sql: "INSERT INTO job_logs (job_id, pos, data) VALUES (?, ?, ?)", arguments: [job, total, data])
        try db.execute(sql: "UPDATE jobs SET log_total = ? WHERE id = ?", arguments: [total + Int64(data.count), job])
    }

    /// Forgets the inputs (the script among them) of job `id`, which ended refunded: it will never run again. Such a
    /// job cost its submitter nothing, so inputs kept after it (48 MiB a submission cancelled at once, or one whose
    /// packages cannot be installed) filled the manager's disk in a free loop.
    static func dropInputs(_ db: any StoreSession, _ id: JobID) throws {
        try db.execute(sql: "DELETE FROM job_files WHERE job_id = ? AND kind = 'input'", arguments: [id])
    }

    /// Ends a job that did not run to a report (cancelled before start, or lost), releasing its whole hold.
    /// `checkWaitedOut`: the job is a check run that waited this long for a worker (see `decide`).
    static func end(
        _ db: any StoreSession, _ job: JobRecord, _ state: JobState, reason: String, refund: Bool, now: Double, checkWaitedOut: String? = nil
    ) throws {
        let held = try balance(db, .hold(job.id))
        if refund {
            try move(db, held, from: .hold(job.id), to: try payer(db, job), reason: "refund", job: job.checkOf ?? job.id, now: now)
            try dropInputs(db, job.id)
        }
        try db.execute(
            sql: "UPDATE jobs SET state = ?, paid = 0, reason = ?, finished_at = ?, pending_reason = NULL WHERE id = ?",
            arguments: [state.rawValue, reason, now, job.id])
        try event(db, job.id, state, reason, now)
        // A check run that ended without a result leaves its job's verification without a decision.
        if let root = job.checkOf { _ = try decide(db, root: root, policy: .off, now: now, checkWaitedOut: checkWaitedOut) }
    }
}

/// The fields of a stored `JobSpec` the scheduler reads on every pass, decoded without the rest (names, outputs,
/// inputs): the whole spec's decoding was most of a pass's read. A spec that does not decode as a `JobSpec` is
/// decoded as `JobSpec(name: "?")` would be: these defaults are that spec's.
struct SchedulingFields: Decodable {
    var cpus = 1
    var ramGb = 1
    var gpus = 0
    var priority = 0
    var minTier = SandboxTier.bwrap
    var requirements: [String]?
    var requiresPython: String?
    var diskGb: Int?

    init() {}

    var resources: Resources { Resources(cpus: cpus, ramGb: ramGb, gpus: gpus) }

    private enum CodingKeys: String, CodingKey {
        case name, cpus, ramGb, gpus, minutes, priority, outputs, minTier, requirements, requiresPython, diskGb
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // The keys a JobSpec must have, so what decodes here is what would decode as one.
        _ = try c.decode(String.self, forKey: .name)
        _ = try c.decode(Int.self, forKey: .minutes)
        guard c.contains(.outputs) else { throw DecodingError.keyNotFound(CodingKeys.outputs, .init(codingPath: [], debugDescription: "")) }
        cpus = try c.decode(Int.self, forKey: .cpus)
        ramGb = try c.decode(Int.self, forKey: .ramGb)
        gpus = try c.decode(Int.self, forKey: .gpus)
        priority = try c.decode(Int.self, forKey: .priority)
        minTier = try c.decode(SandboxTier.self, forKey: .minTier)
        requirements = try c.decodeIfPresent([String].self, forKey: .requirements)
        requiresPython = try c.decodeIfPresent(String.self, forKey: .requiresPython)
        diskGb = try c.decodeIfPresent(Int.self, forKey: .diskGb)
    }
}

/// A job's scheduling fields as stored in their own columns beside the spec (migration v8), written with every job, so
/// that a whole read of the queue decodes no JSON. One rule for both ways in: a `JobSpec` at insert, or the scheduling
/// fields decoded from an older row's spec.
struct SchedulingColumns {
    var cpus: Int
    var ramGb: Int
    var gpus: Int
    var priority: Int
    var minTier: SandboxTier
    /// The digest of the job's Python environment; nil when it declares no packages.
    var env: String?
    var requiresPython: String?
    /// The job's `disk_gb`; nil: it asked for none (`JobSpec.defaultDiskGb`), or a row from before migration v10.
    var diskGb: Int?

    static let names = "sched_cpus, sched_ram_gb, sched_gpus, sched_priority, sched_min_tier, sched_env, sched_requires_python, sched_disk_gb"
    static let placeholders = "?, ?, ?, ?, ?, ?, ?, ?"
    static func names(in table: String) -> String { names.split(separator: ",").map { "\(table).\($0.trimmingCharacters(in: .whitespaces))" }.joined(separator: ", ") }

    init(cpus: Int, ramGb: Int, gpus: Int, priority: Int, minTier: SandboxTier, env: String?, requiresPython: String?, diskGb: Int?) {
        self.diskGb = diskGb
        self.cpus = cpus
        self.ramGb = ramGb
        self.gpus = gpus
        self.priority = priority
        self.minTier = minTier
        self.env = env
        self.requiresPython = requiresPython
    }

    init(_ fields: SchedulingFields) {
        self.init(
            cpus: fields.cpus, ramGb: fields.ramGb, gpus: fields.gpus, priority: fields.priority, minTier: fields.minTier,
            env: Self.env(fields.requirements, fields.requiresPython), requiresPython: fields.requiresPython, diskGb: fields.diskGb)
    }

    static func env(_ requirements: [String]?, _ requiresPython: String?) -> String? {
        guard let requirements, !requirements.isEmpty else { return nil }
        return JobSpec(name: "", requirements: requirements, requiresPython: requiresPython).pythonRequirements.digest
    }

    /// The columns' values for a job of `spec`, in the order of `names`.
    static func values(_ spec: JobSpec) -> StoreArguments {
        [spec.cpus, spec.ramGb, spec.gpus, spec.priority, spec.minTier.rawValue, env(spec.requirements, spec.requiresPython), spec.requiresPython, spec.diskGb]
    }
}

extension JobRecord {
    /// This job as the scheduler sees it, for rules that ask which workers could run it (`EnvironmentFailure`); it has
    /// no avoid sets (those are the queue's).
    public var placementJob: Placement.Job {
        Placement.Job(
            id: id, owner: ownerId, priority: spec.priority, request: Resources(cpus: spec.cpus, ramGb: spec.ramGb, gpus: spec.gpus),
            minTier: spec.minTier, submitted: progress.submittedAt, avoidOwners: Set(avoidOwners),
            env: SchedulingColumns.env(spec.requirements, spec.requiresPython), requiresPython: spec.requiresPython,
            diskGb: spec.diskGb ?? JobSpec.defaultDiskGb)
    }
}
