import Foundation
import GridCore
import GridProtocol
import GridScheduler
import GridStore
import Hummingbird
import HummingbirdBcrypt
import NIOPosix

/// The REST API under `/api/v1`: accounts, credits, jobs, workers, leaderboard. The CLI speaks only this.
struct APIController: Sendable {
    let db: GridDatabase
    let core: ManagerCore
    let config: ManagerConfig
    let loginLimiter: RateLimiter
    /// Logins per client address (an IPv6 /64 as one), whatever the username.
    var loginAddressLimiter = RateLimiter(limit: 100, window: 60)
    /// Failed logins per account, from anywhere.
    var loginFailureLimiter = RateLimiter(limit: 100, window: 3600)
    /// Where each account logged in lately (its failures from elsewhere do not hold those up).
    var knownLoginPlaces = LoginPlaces()
    /// Sign-ups per client address (the API and the dashboard's form share it).
    let registrationLimiter: RateLimiter
    /// Pages and the leaderboard asked for without signing in, per client address (`admitAnonymousRead`).
    /// 120 at once, then 600 a minute (10 a second) by default (`ManagerConfig.tableReadBurst`, `tableReadsPerMinute`):
    /// a class behind one address browsing without signing in stays well under it.
    var anonymousReadLimiter = RateLimiter(burst: 120, perMinute: 600)
    /// The same pages (and `GET /api/v1/workers`, the leaderboard) asked for by a person signed in, per person, as
    /// many: an account is cheap, and a signed-in loop over them kept the store busy for everyone, unlimited.
    var signedInReadLimiter = RateLimiter(burst: 120, perMinute: 600)
    let admins: Admins
    /// Log requests waiting for new bytes (`logs?wait=S`): at most 16 a person, 64 an address and 1,024 in all. Each polls the store
    /// ten times a second for up to 30 s; one past the bound is answered at once, as without `wait`.
    var waitingLogs = LiveStreams(perClient: 16, total: 1_024)

    func addRoutes(to router: Router<APIContext>) {
        let v1 = router.group("api/v1")
        v1.post("register", use: register)
        v1.post("login", use: login)
        v1.post("logout", use: logout)
        v1.get("me", use: me)
        v1.get("credits", use: credits)
        v1.post("tokens", use: createToken)
        v1.post("jobs", use: submit)
        v1.get("jobs", use: listJobs)
        v1.get("jobs/:id", use: jobStatus)
        v1.get("jobs/:id/logs", use: logs)
        v1.post("jobs/:id/cancel", use: cancel)
        v1.get("jobs/:id/outputs/:name", use: output)
        v1.get("workers", use: workers)
        v1.get("leaderboard", use: leaderboard)
        v1.get("peer-ca", use: peerAuthority)
        v1.post("peer-tickets", use: peerTickets)
        v1.get("admin/ledger-check", use: ledgerCheck)
        v1.post("admin/workers/:id/lift-quarantine", use: liftQuarantine)
        router.get("healthz") { _, _ in "ok\n" }
    }

    // MARK: - Accounts

    /// Refuses a sign-up or login that another web page could have had a visitor's browser send: a body not declared
    /// as JSON (a form, `text/plain`: "simple" requests a page may send anywhere without asking), or one a browser
    /// marks as sent from another site. Such a page chose the password, and the sign-ups counted against each
    /// visitor's address (and reached grids firewalled to the campus); from a browser on the manager's machine it could
    /// claim an unregistered admin name. The CLI and the library send JSON.
    func refuseCrossSite(_ request: Request) throws {
        let type = (request.headers[.contentType] ?? "").split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        guard type == "application/json" else {
            throw GridError(.badRequest, "send the body as application/json (Content-Type)")
        }
        if request.headers[.init("Sec-Fetch-Site")!]?.lowercased() == "cross-site" {
            throw GridError(.forbidden, "a sign-up or login from another site's page is refused")
        }
    }

    @Sendable func register(_ request: Request, context: APIContext) async throws -> Response {
        try await refuseJoinToken(request)
        try refuseCrossSite(request)
        try admitRegistration(client: context.clientAddress)
        let body = try await request.decode(as: API.Credentials.self, context: context)
        let user = try await createAccount(username: body.username, password: body.password, client: context.clientAddress)
        let token = try await issueToken(for: user, kind: .api)
        return try jsonResponse(token, status: .created, request: request, context: context)
    }

    @Sendable func login(_ request: Request, context: APIContext) async throws -> API.TokenResponse {
        try await refuseJoinToken(request)
        try refuseCrossSite(request)
        let body = try await request.decode(as: API.Credentials.self, context: context)
        return try await issueToken(
            for: try await checkLogin(username: body.username, password: body.password, client: context.clientAddress), kind: .api)
    }

    /// Counts a sign-up from `client` (shared by the API and the dashboard); throws 429 with `Retry-After` beyond the
    /// limit, before any password is hashed.
    func admitRegistration(client: String) throws {
        let decision = registrationLimiter.admit(Self.registrationKey(client: client))
        if let seconds = decision.retryAfterHeader {
            throw TooManyRequests(message: "too many new accounts from your address; try again in \(seconds) s", retryAfter: seconds)
        }
    }

    /// Counts a page (or the leaderboard) asked for by nobody signed in from `client`; throws 429 with `Retry-After`
    /// beyond `ManagerConfig.tableReadBurst`. Loopback is not counted (the machine's own). Each such page reads whole tables
    /// (workers, the leaderboard, job counts): a stranger asking for them in a loop kept the manager's store busy for
    /// everyone, signed in or not.
    /// Counts a page that reads whole tables asked for by `user`, signed in; throws 429 with `Retry-After` beyond
    /// `ManagerConfig.tableReadBurst` per person (whatever their address: a person is one key however many hosts they use).
    func admitSignedInRead(user: UserID) throws {
        if let seconds = signedInReadLimiter.admit("u:\(user)").retryAfterHeader {
            throw TooManyRequests(message: "too many pages of whole tables from your account; try again in \(seconds) s", retryAfter: seconds)
        }
    }

    func admitAnonymousRead(client: String) throws {
        guard !RateLimit.isLoopback(client) else { return }
        if let seconds = anonymousReadLimiter.admit(RateLimit.addressKey(client)).retryAfterHeader {
            throw TooManyRequests(message: "too many pages from your address without signing in; sign in, or try again in \(seconds) s", retryAfter: seconds)
        }
    }

    /// Creates an account after checking the username and password rules (shared by the API and the dashboard).
    func createAccount(username raw: String, password: String, client: String) async throws -> UserRecord {
        if let refusal = admins.registrationRefusal(username: raw, client: client) { throw refusal }
        let username = raw.trimmingCharacters(in: .whitespaces)
        guard username.count >= 2, username.count <= 32,
            username.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "_-.".unicodeScalars.contains($0)) })
        else {
            throw GridError(.badRequest, "a username is 2–32 letters, digits, '_', '-' or '.'")
        }
        guard password.count >= 8, password.utf8.count <= 72 else {
            throw GridError(.badRequest, "a password is 8–72 characters (at most 72 bytes)")
        }
        let hash = try await hashPassword(password)
        return try await db.createUser(username: username, passwordHash: hash, startingCredits: config.startingCredits, now: wall())
    }

    /// Checks a username and password, rate-limited per username and client address (shared by the API and the
    /// dashboard): someone guessing from one address is stopped without locking the user out everywhere else. Logins
    /// that succeed count too: each costs a bcrypt and makes a token, and a loop of them was limited by nothing.
    func checkLogin(username: String, password: String, client: String) async throws -> UserRecord {
        // No username is longer than 32 bytes: a longer one is wrong at once, and never a key of the limiter (a flood
        // of distinct 60 KB names held half a gigabyte there).
        guard username.utf8.count <= 64 else { throw GridError(.unauthorized, "wrong username or password") }
        let key = Self.loginKey(username: username, client: client)
        // The address first, whatever the username (one address tried every account); then this username from this
        // address; then this account's failures from anywhere (guesses spread over many addresses).
        // Not for the manager's own machine: a reverse proxy there would make every client one address.
        let address = RateLimit.addressKey(client)
        if !RateLimit.isLoopback(client), let seconds = loginAddressLimiter.admit(address).retryAfterHeader {
            throw TooManyRequests(message: "too many login attempts from this address; try again in \(seconds) s", retryAfter: seconds)
        }
        if let seconds = loginLimiter.admit(key).retryAfterHeader {
            throw TooManyRequests(message: "too many login attempts for \(username); try again in \(seconds) s", retryAfter: seconds)
        }
        let account = username.lowercased()
        let failures = Self.failureKey(account: account, address: address, known: knownLoginPlaces.knows(account, address))
        if let seconds = loginFailureLimiter.check(failures).retryAfterHeader {
            throw TooManyRequests(
                message: "too many failed logins for \(username) lately; try again in \(seconds) s (its tokens and open sessions still work)", retryAfter: seconds)
        }
        guard password.utf8.count <= 200, let user = try await db.user(named: username),
            try await verifyPassword(password, hash: user.passwordHash)
        else {
            _ = loginFailureLimiter.admit(failures)
            throw GridError(.unauthorized, "wrong username or password")
        }
        knownLoginPlaces.remember(account, address)
        return user
    }

    /// What a username's login attempts from `client` count by: the username and the address as every limit takes it
    /// (an IPv6 /64 as one: a host holds a whole /64, and each of its addresses got a fresh allowance).
    static func loginKey(username: String, client: String) -> String { username.lowercased() + "|" + RateLimit.addressKey(client) }

    /// Which allowance an account's failed logins from `address` count against (pure): its own, shared by every
    /// address it has not logged in from lately; or, from a place it did (`known`), that place's own. Guessing from
    /// elsewhere so cannot lock the owner out of the machines they use, and a place is no way around the cap: it once
    /// skipped it, and a campus Wi-Fi's /64 or a NAT the owner had used guessed 144,000 times a day.
    static func failureKey(account: String, address: String, known: Bool) -> String {
        known ? account + "|" + address : account
    }

    /// What sign-ups are counted by: the address as logins count it (an IPv6 /64 is one host's: a host holds a whole
    /// /64, and each of its addresses signed up afresh).
    static func registrationKey(client: String) -> String { "register|" + RateLimit.addressKey(client) }

    @Sendable func logout(_ request: Request, context: APIContext) async throws -> Response {
        // A write only for a token that exists: anyone may call this, and every write waits on the one writer.
        guard let token = bearer(request), let found = try await db.token(hash: Tokens.hash(token)) else { return Response(status: .noContent) }
        if let refusal = found.kind.refusal(for: .person) { throw refusal }
        try await db.deleteToken(hash: Tokens.hash(token))
        return Response(status: .noContent)
    }

    @Sendable func me(_ request: Request, context: APIContext) async throws -> API.Me {
        let user = try await authenticate(request)
        return API.Me(id: user.id, username: user.username, balance: try await db.balance(of: .user(user.id)))
    }

    @Sendable func credits(_ request: Request, context: APIContext) async throws -> API.Credits {
        let user = try await authenticate(request)
        let me = LedgerAccount.user(user.id).description
        let rows = try await db.ledger(of: user.id)
        let ledger = rows.map { e in
            let incoming = e.credit == me
            return API.LedgerRow(
                id: e.id, at: e.at, amount: incoming ? e.amount : -e.amount, reason: e.reason, jobId: e.jobId,
                counterparty: incoming ? e.debit : e.credit)
        }
        let held = try await db.held(by: user.id)
        let earned = rows.filter { $0.credit == me && ($0.reason == "payment" || $0.reason == "escrow released") }.reduce(0) { $0 + $1.amount }
        return API.Credits(
            username: user.username, balance: try await db.balance(of: .user(user.id)), held: held, earned: earned, ledger: ledger)
    }

    @Sendable func createToken(_ request: Request, context: APIContext) async throws -> API.TokenResponse {
        let user = try await authenticate(request)
        // A dashboard session (7 days, ended by its logout) mints no token: an API token from it would outlive both.
        if bearer(request)?.hasPrefix("cgs_") == true {
            throw GridError(.unauthorized, "a dashboard session creates no tokens over the API; use an API token (`campusgrid login`)")
        }
        let kind = request.uri.queryParameters["kind"].map(String.init) ?? "worker"
        guard let k = TokenKind(rawValue: kind), k != .session else { throw GridError(.badRequest, "kind is 'worker' or 'api'") }
        return try await issueToken(for: user, kind: k)
    }

    // MARK: - Jobs

    static let idempotencyKey = HTTPFields.Element.Name("Idempotency-Key")!

    @Sendable func submit(_ request: Request, context: APIContext) async throws -> Response {
        let user = try await authenticate(request)
        let body = try await request.decode(as: API.SubmitRequest.self, context: context)
        func file(_ upload: API.FileUpload) throws -> StoredFile {
            try FileName.validate(upload.name)
            guard let data = Data(base64Encoded: upload.contentBase64) else {
                throw GridError(.badRequest, "the content of \(upload.name) is not valid base64")
            }
            return StoredFile(name: upload.name, data: data)
        }
        // How many inputs, before any is decoded; the bundle's size, before the script is read (its PEP 723 block).
        guard body.inputs.count <= Self.maxInputFiles else {
            throw GridError(.badRequest, "a job may have at most \(Self.maxInputFiles) input files (got \(body.inputs.count))")
        }
        let script = try file(body.script)
        guard !script.data.isEmpty else { throw GridError(.badRequest, "the script \(script.name) is empty") }
        let inputs = try body.inputs.map(file)
        // The bundle travels to the worker as one bulk message; keep it well inside the protocol's bulk limit.
        try Self.checkBundle(script: script, inputs: inputs, config: config)
        var spec = try Self.submitted(body.spec, script: script.data)
        if spec.name.isEmpty { spec.name = script.name }
        // A retry of a submission whose answer was lost carries the same key and gets the same job back (SubmitKey).
        let key = request.headers[Self.idempotencyKey]
        let submission = try await db.submitJob(owner: user.id, spec: spec, script: script, inputs: inputs, now: wall(), key: key)
        let job = submission.job
        if !submission.replayed { core.jobsChanged() }
        let status = try await jobStatus(job, owner: user.username, detail: true)
        var answer = API.SubmitResponse(job: status, hold: job.hold, balance: try await db.balance(of: .user(user.id)))
        answer.replayed = submission.replayed ? true : nil
        return try jsonResponse(answer, status: submission.replayed ? .ok : .created, request: request, context: context)
    }

    /// The spec as the manager keeps it: the script's PEP 723 metadata (`# /// script`) added to its requirements, all
    /// normalised (`PythonRequirements`; a malformed block or requirement is refused with the reason), and no seed of
    /// the submitter's: every run gets the manager's (`PeerTrust.Signer.jobSeed(for:)`), which a submitter cannot pick.
    static func submitted(_ spec: JobSpec, script: Data) throws -> JobSpec {
        var spec = spec
        spec.seed = nil
        var requirements = try PythonRequirements(lines: spec.requirements ?? [], requiresPython: spec.requiresPython)
        if let meta = try InlineScriptMetadata.parse(String(decoding: script, as: UTF8.self)) {
            try requirements.add(meta.dependencies)
            if let python = meta.requiresPython { try requirements.require(python: python) }
        }
        spec.requirements = requirements.lines.isEmpty ? nil : requirements.lines
        spec.requiresPython = requirements.requiresPython
        return spec
    }

    @Sendable func listJobs(_ request: Request, context: APIContext) async throws -> API.JobList {
        let user = try await authenticate(request)
        let q = request.uri.queryParameters
        let mine = q["mine"].map { $0 == "1" || $0 == "true" } ?? false
        var state: JobState?
        if let s = q["state"], !s.isEmpty {
            guard let parsed = JobState(rawValue: String(s)) else {
                throw GridError(.badRequest, "state is one of \(JobState.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            state = parsed
        }
        let limit = min(max(Int(q["limit"] ?? "100") ?? 100, 1), 1000)
        let offset = max(Int(q["offset"] ?? "0") ?? 0, 0)
        // Everyone sees the queue; details of other users' jobs (logs, outputs) stay private.
        let jobs = try await db.jobs(owner: mine ? user.id : nil, state: state, limit: limit, offset: offset)
        var names: [UserID: String] = [user.id: user.username]
        // Read once for the whole list (it was read again for every job).
        let workerNames = Dictionary(try await db.workers().map { ($0.id, $0.name) }, uniquingKeysWith: { a, _ in a })
        var out: [API.JobStatus] = []
        for job in jobs {
            if names[job.ownerId] == nil { names[job.ownerId] = try await db.user(id: job.ownerId)?.username ?? "?" }
            var status = try await jobStatus(job, owner: names[job.ownerId]!, detail: false, workerNames: workerNames)
            if job.ownerId != user.id {
                // What the queue needs, no more: not the script's name, nor why it ended (a reason names its grid
                // inputs, and an exit code or a peak says what the job did).
                status.spec = job.spec.forOthers
                status.name = Self.nameForOthers(job)
                status.spec.name = status.name
                status.script = ""
                status.progress.reason = nil
                // Why it waits names what it needs of a worker, its Python version among them (`forOthers` hides that).
                status.progress.pendingReason = nil
                status.progress.exitCode = nil
                status.progress.peakMemoryKb = nil
                status.progress.cpuSeconds = nil
                status.progress.logBytes = 0
            }
            out.append(status)
        }
        return API.JobList(jobs: out)
    }

    @Sendable func jobStatus(_ request: Request, context: APIContext) async throws -> API.JobStatus {
        let user = try await authenticate(request)
        let job = try await ownJob(request, context: context, user: user)
        return try await jobStatus(job, owner: user.username, detail: true)
    }

    /// A piece of the log from `offset`; with `wait=S`, waits up to S seconds for new bytes or the job's end.
    @Sendable func logs(_ request: Request, context: APIContext) async throws -> API.LogChunk {
        let user = try await authenticate(request)
        var job = try await ownJob(request, context: context, user: user)
        let q = request.uri.queryParameters
        let offset = max(Int64(q["offset"] ?? "0") ?? 0, 0)
        let asked = Double(q["wait"] ?? "0") ?? 0
        var wait = asked.isFinite ? min(max(asked, 0), 30) : 0
        let waiter = "\(user.id)"
        let address = ClientAddress.isLoopback(context.clientAddress) ? nil : ClientAddress.key(context.clientAddress)
        let waiting = wait > 0 && waitingLogs.admit(waiter, address: address, signedIn: true)
        defer { if waiting { waitingLogs.release(waiter, address: address, signedIn: true) } }
        if !waiting { wait = 0 }
        let deadline = ContinuousClock.now + .milliseconds(Int(wait * 1000))
        while true {
            var (data, total) = try await db.log(of: job.id, from: offset)
            // A character the piece ends inside waits for the next read (each half would show as U+FFFD).
            data = data.prefix(UTF8Cut.sendable(data, jobEnded: job.state.isFinal, reachesEnd: offset + Int64(data.count) >= total))
            if !data.isEmpty || job.state.isFinal || ContinuousClock.now >= deadline {
                let next = offset + Int64(data.count)
                return API.LogChunk(
                    offset: offset, next: next, text: String(decoding: data, as: UTF8.self), state: job.state,
                    done: job.state.isFinal && next >= total)
            }
            try await Task.sleep(for: .milliseconds(100))
            job = try await db.job(id: job.id) ?? job
        }
    }

    @Sendable func cancel(_ request: Request, context: APIContext) async throws -> API.JobStatus {
        let user = try await authenticate(request)
        let job = try await ownJob(request, context: context, user: user)
        try await core.cancel(job.id, by: user.id)
        let now = try await db.job(id: job.id) ?? job
        return try await jobStatus(now, owner: user.username, detail: true)
    }

    @Sendable func output(_ request: Request, context: APIContext) async throws -> Response {
        let user = try await authenticate(request)
        let job = try await ownJob(request, context: context, user: user)
        let name = try context.parameters.require("name")
        guard let data = try await db.output(of: job.id, name: name) else {
            throw GridError(.notFound, "job \(job.id) has no output named \(name)")
        }
        var headers = HTTPFields()
        headers[.contentType] = "application/octet-stream"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    // MARK: - Cluster

    @Sendable func workers(_ request: Request, context: APIContext) async throws -> API.WorkerList {
        try admitSignedInRead(user: try await authenticate(request).id)
        return API.WorkerList(workers: try await workerInfos())
    }

    func workerInfos() async throws -> [API.WorkerInfo] {
        let live = await core.liveState()
        let sandboxes = await core.sandboxReports()
        return try await db.workers().map { w in
            let l = live[w.id]
            var info = API.WorkerInfo(
                id: w.id, name: w.name, owner: w.ownerName, online: l != nil, resources: w.resources, free: l?.free ?? .zero,
                gpuNames: w.gpuNames, tier: w.tier, slots: w.slots, running: l?.running ?? 0, load: l?.load ?? 0, host: w.host, port: w.port,
                webPort: w.webPort, onlineSince: l != nil ? w.onlineSince : nil, lastSeen: w.lastSeen, cpuHoursGiven: w.cpuSecondsGiven / 3600,
                jobsDone: w.jobsDone)
            if l != nil, let report = sandboxes[w.id] {
                info.sandbox = report
                info.tierLabel = report.label
            }
            info.reputation = API.Reputation(
                verified: w.verified, contradicted: w.contradicted, probation: w.verified < config.verification.reputation.probationResults,
                quarantined: w.quarantined, quarantineReason: w.quarantineReason)
            return info
        }
    }

    /// The peer CA (a TLS grid's): what a client trusts a peer port with. No login: a CA certificate is public.
    @Sendable func peerAuthority(_ request: Request, context: APIContext) async throws -> API.PeerAuthority {
        try await refuseJoinToken(request)
        guard let pem = config.peerCAPEM else { throw GridError(.notFound, "this grid speaks plain text: its peers have no certificates") }
        return API.PeerAuthority(peerCa: pem)
    }

    /// The caller's certificate for a key of its client's, and a forwarding ticket for the peer it names when that
    /// peer is online (`PeerTrust.Grant`): a person's client proves itself to peers with these, never with its API token. A worker's
    /// join token is refused, as everywhere.
    @Sendable func peerTickets(_ request: Request, context: APIContext) async throws -> PeerTrust.Grant {
        let user = try await authenticate(request)
        // A dashboard session lasts hours; a certificate outlives what it was granted for. Only an API token gets one.
        if bearer(request)?.hasPrefix("cgs_") == true {
            throw GridError(.unauthorized, "a dashboard session gets no peer certificate; use an API token (`campusgrid login`)")
        }
        let body = try await request.decode(as: API.PeerTicketRequest.self, context: context)
        guard PeerTrust.isWellFormed(key: body.key) else {
            throw GridError(.badRequest, "key must be an Ed25519 public key: its 32 raw bytes in base64")
        }
        return await core.peerGrant(user: user.username, key: body.key, worker: body.worker, tokenHash: Tokens.hash(bearer(request) ?? ""))
    }

    @Sendable func leaderboard(_ request: Request, context: APIContext) async throws -> API.Leaderboard {
        // Without a person's token it counts as anonymous (a made-up token skips nothing); a worker's join token is
        // refused. The token is looked up once (before, twice).
        if let token = bearer(request), let user = try await person(presenting: token) {
            try admitSignedInRead(user: user.id)
        } else {
            try admitAnonymousRead(client: context.clientAddress)
        }
        let rows = try await db.leaderboard()
        return API.Leaderboard(
            contributors: rows.enumerated().map {
                var row = API.LeaderboardRow(
                    rank: $0.offset + 1, username: $0.element.username, creditsEarned: $0.element.creditsEarned, cpuHours: $0.element.cpuHours,
                    jobsRun: $0.element.jobsRun)
                row.verified = $0.element.verified
                row.contradicted = $0.element.contradicted
                return row
            })
    }

    @Sendable func ledgerCheck(_ request: Request, context: APIContext) async throws -> LedgerCheckResponse {
        try await requireAdmin(try await authenticate(request))
        let c = try await db.checkLedger()
        return LedgerCheckResponse(
            minted: c.minted, held: c.held, holds: c.holds, escrow: c.escrow, fund: c.fund, negativeAccounts: c.negativeAccounts,
            stuckHolds: c.stuckHolds, ok: c.ok)
    }

    /// An admin lifts a worker's quarantine (verification): it takes other users' jobs again.
    @Sendable func liftQuarantine(_ request: Request, context: APIContext) async throws -> API.WorkerInfo {
        try await requireAdmin(try await authenticate(request))
        let id = try context.parameters.require("id")
        guard try await db.workerOwner(id) != nil else { throw GridError(.notFound, "no worker \(id)") }
        guard try await core.liftQuarantine(id) else { throw GridError(.conflict, "worker \(id) is not quarantined") }
        guard let info = try await workerInfos().first(where: { $0.id == id }) else { throw GridError(.notFound, "no worker \(id)") }
        return info
    }

    // MARK: - Helpers

    /// The largest script + inputs a job may carry: three quarters of the grid protocol's bulk limit.
    static func maxBundleBytes(_ config: ManagerConfig) -> Int { config.maxBulkBytes / 4 * 3 }

    /// A job's script and inputs travel to the worker as one bulk message: refuses a bundle over `maxBundleBytes`
    /// (the API and the dashboard's form alike), so that no `JOB_ASSIGN` can exceed what a worker accepts.
    /// Input files per job. Every name travels in the job's one `JOB_ASSIGN` line, which a worker reads to 1 MiB: 1,100
    /// empty files with 1,000-byte names made a line that cut off every worker the job went to (and, refunded after
    /// ten losses, could be sent again for nothing). 256 names of at most 1,024 bytes stay well inside it.
    static let maxInputFiles = 256

    /// A job's name as other users see it: the name its owner gave it, but not the script's file name that stands in
    /// when none was given (`ann-thesis-draft.py` told everyone what Ann works on).
    static func nameForOthers(_ job: JobRecord) -> String {
        job.spec.name.isEmpty || job.spec.name == job.scriptName ? "job \(job.id)" : job.spec.name
    }

    static func checkBundle(script: StoredFile, inputs: [StoredFile], config: ManagerConfig) throws {
        guard inputs.count <= maxInputFiles else {
            throw GridError(
                .badRequest, "a job may have at most \(maxInputFiles) input files (got \(inputs.count)); pack them into one archive, or store them in the grid's files")
        }
        let bundle = inputs.reduce(script.data.count) { $0 + $1.data.count }
        let limit = maxBundleBytes(config)
        guard bundle <= limit else {
            throw GridError(
                .badRequest,
                "the script and inputs are \(size(bundle)); the limit is \(size(limit)) per job (store large inputs in the grid's files and name them as grid inputs)")
        }
    }

    /// A byte count for people: MB above one, else KB.
    static func size(_ bytes: Int) -> String {
        if bytes < 1 << 20 { return "\((bytes + 1023) >> 10) KB" }
        return bytes % (1 << 20) == 0 ? "\(bytes >> 20) MB" : String(format: "%.1f MB", Double(bytes) / Double(1 << 20))
    }

    func wall() -> Double { Date().timeIntervalSince1970 }

    func bearer(_ request: Request) -> String? {
        guard let value = request.headers[.authorization], value.lowercased().hasPrefix("bearer ") else { return nil }
        let token = value.dropFirst(7).trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }

    func authenticate(_ request: Request) async throws -> UserRecord {
        guard let token = bearer(request) else {
            throw GridError(.notAuthenticated, "log in first (`campusgrid login`) or pass a token")
        }
        guard let user = try await person(presenting: token) else {
            throw GridError(.unauthorized, "the token is not valid (expired or logged out); log in again")
        }
        return user
    }

    /// The person `token` stands for (a bearer token or a dashboard session's), nil when it is unknown, revoked or
    /// an expired session; throws the refusal for a worker join token, which never acts as a person. A session's
    /// token (`asSession`, or any "cgs_" token wherever it is presented) expires `WebSession.tokenLifetime` after login.
    func person(presenting token: String, asSession: Bool = false, now: Double = Date().timeIntervalSince1970) async throws -> UserRecord? {
        guard let found = try await db.token(hash: Tokens.hash(token)) else { return nil }
        if let refusal = found.kind.refusal(for: .person) { throw refusal }
        let isSession = found.kind == .session || token.hasPrefix("cgs_")
        // A browser's cookie holds a session token (signing in made it), never an API token: one planted as a cookie
        // would last as long as the token, not a week.
        if asSession && !isSession { return nil }
        if asSession || isSession, found.createdAt < now - Double(WebSession.tokenLifetime(token)) { return nil }
        return found.user
    }

    /// Refuses a request that presents a worker join token on a route that needs no login (register, login, logout,
    /// leaderboard): a join token never stands for a person anywhere.
    ///
    /// Returns whether the request carried a person's token that is on record (the caller need not count it as
    /// anonymous).
    @discardableResult
    func refuseJoinToken(_ request: Request) async throws -> Bool {
        guard let token = bearer(request), let found = try await db.token(hash: Tokens.hash(token)) else { return false }
        if let refusal = found.kind.refusal(for: .person) { throw refusal }
        return true
    }

    /// Throws 403 unless `user` is an admin (`Admins`).
    func requireAdmin(_ user: UserRecord) async throws {
        guard admins.includes(id: user.id, username: user.username, firstUserId: try await db.firstUserId()) else {
            throw Admins.refusal(user.username)
        }
    }

    /// The job named in the path, if it belongs to `user`; another user's job is reported as missing.
    func ownJob(_ request: Request, context: APIContext, user: UserRecord) async throws -> JobRecord {
        let raw = try context.parameters.require("id")
        guard let id = JobID(raw) else { throw GridError(.badRequest, "a job id is a number (got \(raw))") }
        guard let job = try await db.job(id: id), job.readable(by: user.id) else { throw GridError(.notFound, "no job \(id) of yours") }
        return job
    }

    func jobStatus(_ job: JobRecord, owner: String, detail: Bool, workerNames: [WorkerID: String]? = nil) async throws -> API.JobStatus {
        var workerName: String?
        if let w = job.workerId {
            if let workerNames { workerName = workerNames[w] ?? w } else { workerName = try await db.workers().first { $0.id == w }?.name ?? w }
        }
        let events = detail ? try await db.events(of: job.id).map { API.Event(at: $0.at, state: $0.state, detail: $0.detail) } : nil
        let outputs = detail ? try await db.outputList(of: job.id).map { API.OutputFile(name: $0.name, size: $0.size) } : nil
        var status = API.JobStatus(
            id: job.id, name: job.spec.name, owner: owner, spec: job.spec, script: job.scriptName, worker: workerName, progress: job.progress,
            events: events, outputs: outputs)
        if job.state == .running { status.preparing = await core.preparation(of: job.ref, spec: job.spec) }
        if detail {
            let stops = try await db.interruptions(of: job.id)
            let names = stops.isEmpty ? [:] : Dictionary(try await db.workers().map { ($0.id, $0.name) }, uniquingKeysWith: { a, _ in a })
            status.interruptions = stops.map {
                API.Interruption(
                    at: $0.at, attempt: $0.attempt, worker: names[$0.workerId] ?? $0.workerId, kind: $0.kind.rawValue, reason: $0.reason,
                    blamed: $0.blamed)
            }
        }
        status.tierLabel = job.tier?.label
        status.verification = job.verificationStatus
        // A check that waits in the queue says why: the result is not being checked yet.
        if detail, job.verification == .unverified, let check = try await db.checkRuns(of: job.id).last, check.state == .pending {
            status.verification = status.verification?.waiting(check.pendingReason ?? "no worker of another owner has taken it yet")
        }
        return status
    }

    func issueToken(for user: UserRecord, kind: TokenKind) async throws -> API.TokenResponse {
        let token = Tokens.generate(prefix: kind == .worker ? "cgw_" : "cga_")
        try await db.addToken(hash: Tokens.hash(token), userId: user.id, kind: kind, now: wall(), keep: config.maxTokensPerKind)
        let join = kind == .worker ? config.caFingerprint.map { JoinString(token: token, caFingerprint: $0).description } : nil
        return API.TokenResponse(username: user.username, token: token, kind: kind.rawValue, join: join)
    }

    func hashPassword(_ password: String) async throws -> String {
        let cost = config.bcryptCost
        return try await NIOThreadPool.singleton.runIfActive { Bcrypt.hash(password, cost: cost) }
    }

    func verifyPassword(_ password: String, hash: String) async throws -> Bool {
        try await NIOThreadPool.singleton.runIfActive { Bcrypt.verify(password, hash: hash) }
    }

    func jsonResponse<T: Encodable>(_ value: T, status: HTTPResponse.Status, request: Request, context: APIContext) throws -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try GridJSON.encode(value))))
    }
}
