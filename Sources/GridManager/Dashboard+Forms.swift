import Foundation
import GridCore
import GridProtocol
import GridScheduler
import GridStore
import Hummingbird

/// The forms of the dashboard: every POST checks the CSRF token first.
extension Dashboard {
    @Sendable func login(_ request: Request, _ session: WebSession) async throws -> Response {
        let form = try await form(request, session, limit: 64 << 10)
        let username = (form["username"] ?? "").trimmingCharacters(in: .whitespaces)
        let next = Self.safeNext(form["next"])
        do {
            let user = try await api.checkLogin(username: username, password: form["password"] ?? "", client: session.client)
            return try await startSession(user, request: request, to: next, keep: form["keep"] == "1")
        } catch let error as GridError where error.code == .unauthorized {
            return try await page(
                "login", title: "Log in · CampusGrid", session: session, request: request, nav: "login", status: error.status,
                ["error": error.message, "username": username, "next": next])
        } catch let limited as TooManyRequests {
            var response = try await page(
                "login", title: "Log in · CampusGrid", session: session, request: request, nav: "login", status: limited.status,
                ["error": limited.message, "username": username, "next": next])
            response.headers[.retryAfter] = String(limited.retryAfter)
            return response
        }
    }

    @Sendable func register(_ request: Request, _ session: WebSession) async throws -> Response {
        let form = try await form(request, session, limit: 64 << 10)
        let username = form["username"] ?? ""
        let password = form["password"] ?? ""
        do {
            try api.admitRegistration(client: session.client)
            guard password == (form["password2"] ?? password) else { throw GridError(.badRequest, "the two passwords differ") }
            let user = try await api.createAccount(username: username, password: password, client: session.client)
            return try await startSession(user, request: request, to: "/", keep: form["keep"] == "1")
        } catch let error as GridError where error.code == .badRequest || error.code == .conflict || error.code == .forbidden {
            return try await page(
                "register", title: "Register · CampusGrid", session: session, request: request, nav: "register", status: error.status,
                ["error": error.message, "username": username])
        } catch let limited as TooManyRequests {
            var response = try await page(
                "register", title: "Register · CampusGrid", session: session, request: request, nav: "register", status: limited.status,
                ["error": limited.message, "username": username])
            response.headers[.retryAfter] = String(limited.retryAfter)
            return response
        }
    }

    /// A new session for `user`: a token stored by its hash, handed to the browser in an HttpOnly cookie. `keep` (the
    /// form's "keep me signed in"): the cookie lasts the session's week; else it is the browser's session cookie,
    /// forgotten when the browser closes, as a lab's shared machine needs (a week-long one left the next student at the
    /// machine signed in as the last), and its token ends 12 hours after login (`WebSession.browserSessionMaxAge`).
    func startSession(_ user: UserRecord, request: Request, to location: String, keep: Bool) async throws -> Response {
        let token = Tokens.generate(prefix: keep ? "cgs_" : WebSession.browserSessionPrefix)
        // A kind of its own, capped as the API's are (the oldest sessions go), apart from the CLI's tokens: each login
        // was a row kept for good, and evicting the oldest API token took the person's long-lived CLI token first.
        try await db.addToken(hash: Tokens.hash(token), userId: user.id, kind: .session, now: wall(), keep: api.config.maxTokensPerKind)
        var response = redirect(location)
        response.setCookie(
            WebSession.cookie(WebSession.cookieName, token, maxAge: keep ? WebSession.maxAge : nil, request: request, tls: api.config.caFingerprint != nil))
        return response
    }

    @Sendable func logout(_ request: Request, _ session: WebSession) async throws -> Response {
        _ = try await form(request, session, limit: 16 << 10)
        if let token = session.token { try await db.deleteToken(hash: Tokens.hash(token)) }
        var response = redirect("/")
        response.setCookie(WebSession.cookie(WebSession.cookieName, "", maxAge: 0, request: request, tls: api.config.caFingerprint != nil))
        return response
    }

    @Sendable func createJoinToken(_ request: Request, _ session: WebSession) async throws -> Response {
        let user = try requireUser(session, request)
        _ = try await form(request, session, limit: 16 << 10)
        let token = try await api.issueToken(for: user, kind: .worker)
        return try await accountPage(user, request: request, session: session, newToken: token.token)
    }

    @Sendable func revokeJoinToken(_ request: Request, _ session: WebSession) async throws -> Response {
        let user = try requireUser(session, request)
        let form = try await form(request, session, limit: 16 << 10)
        let hash = form["hash"] ?? ""
        // A worker that joined with it is let go now, not at its next reconnect.
        if try await db.revokeToken(hash: hash, of: user.id) { await core.joinTokenRevoked(hash: hash) }
        return redirect("/account")
    }

    @Sendable func cancelJob(_ request: Request, _ session: WebSession) async throws -> Response {
        let user = try requireUser(session, request)
        let job = try await ownJob(request, user: user)
        _ = try await form(request, session, limit: 16 << 10)
        if !job.state.isFinal { try await core.cancel(job.id, by: user.id) }
        return redirect("/jobs/\(job.id)")
    }

    // MARK: - Submitting

    /// The submit form's fields with their defaults (or what was sent, to show again after an error).
    struct SubmitFields {
        var name = ""
        var script = "print('hello from CampusGrid')\n"
        var cpus = 1
        var ramGb = 1
        var gpus = 0
        var minutes = 5
        var priority = 0
        var outputs = ""
        /// Python packages, as a requirements file (one a line).
        var requirements = ""
        /// The weakest sandbox the job accepts (default bwrap: never a worker without a real sandbox).
        var minTier = SandboxTier.bwrap
        /// Verification: a second run checks the result, paid by the submitter (`--verify`); or the job says its runs
        /// may differ (`--nondeterministic`) and is never spot-checked.
        var verify = false
        var nondeterministic = false
        /// This form's submission key (`SubmitKey`), new each time the form is shown: a second click or a resent POST
        /// of the same form returns the job the first made instead of making another.
        var key = UUID().uuidString

        var spec: JobSpec {
            JobSpec(
                name: name, cpus: cpus, ramGb: ramGb, gpus: gpus, minutes: minutes, priority: priority,
                outputs: outputs.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\n" }).map(String.init), minTier: minTier,
                verify: verify ? true : nil, nondeterministic: nondeterministic ? true : nil)
        }

        init() {}

        init(_ form: FormData) throws {
            func number(_ key: String, _ label: String, default value: Int) throws -> Int {
                guard let raw = form[key]?.trimmingCharacters(in: .whitespaces), !raw.isEmpty else { return value }
                guard let n = Int(raw) else { throw GridError(.badRequest, "\(label) must be a whole number (got \(raw))") }
                return n
            }
            name = (form["name"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            script = (form["script"] ?? "").replacingOccurrences(of: "\r\n", with: "\n")
            cpus = try number("cpus", "CPUs", default: 1)
            ramGb = try number("ram_gb", "RAM", default: 1)
            gpus = try number("gpus", "GPUs", default: 0)
            minutes = try number("minutes", "Minutes", default: 5)
            priority = try number("priority", "Priority", default: 0)
            outputs = form["outputs"] ?? ""
            verify = !(form["verify"] ?? "").isEmpty
            nondeterministic = !(form["nondeterministic"] ?? "").isEmpty
            requirements = (form["requirements"] ?? "").replacingOccurrences(of: "\r\n", with: "\n")
            if let raw = form["submit_key"], !raw.isEmpty { key = try SubmitKey.validate(raw, field: "the form's submission key (reload the form)") }
            if let raw = form["min_tier"], !raw.isEmpty {
                guard let tier = SandboxTier(rawValue: raw) else { throw GridError(.badRequest, "sandbox must be restricted, bwrap or oci (got \(raw))") }
                minTier = tier
            }
        }

        /// The hold this job would take, when its fields are valid (never computed from out-of-range numbers).
        var hold: Int? { (try? spec.validate()) != nil ? CreditRules.hold(spec) : nil }

        var values: [String: Any] {
            [
                "name": name, "script": script, "cpus": cpus, "ram_gb": ramGb, "gpus": gpus, "minutes": minutes, "priority": priority,
                "outputs": outputs, "requirements": requirements, "hold": hold.map(String.init) ?? "—", "verify": verify,
                "nondeterministic": nondeterministic, "submit_key": key,
                "tiers": SandboxTier.allCases.map { ["value": $0.rawValue, "label": $0.label, "selected": $0 == minTier] },
            ]
        }
    }

    @Sendable func submitForm(_ request: Request, _ session: WebSession) async throws -> Response {
        let user = try requireUser(session, request)
        return try await submitPage(SubmitFields(), user: user, request: request, session: session)
    }

    func submitPage(
        _ fields: SubmitFields, user: UserRecord, request: Request, session: WebSession, error: GridError? = nil
    ) async throws -> Response {
        var values = fields.values
        let balance = try await db.balance(of: .user(user.id))
        values["balance"] = balance
        values["fund_share"] = api.config.verification.fundSharePercent
        if let hold = fields.hold {
            values["after"] = balance - hold
            values["short"] = balance < hold
        }
        if let error {
            values["error"] = error.message
            // Nothing was made: the corrected form is a new submission.
            values["submit_key"] = UUID().uuidString
        }
        return try await page(
            "submit", title: "Submit a job · CampusGrid", session: session, request: request, nav: "submit", status: error?.status ?? .ok,
            values)
    }

    @Sendable func submit(_ request: Request, _ session: WebSession) async throws -> Response {
        let user = try requireUser(session, request)
        let form = try await form(request, session)
        var fields = SubmitFields()
        do {
            fields = try SubmitFields(form)
            var script = StoredFile(name: "main.py", data: Data(fields.script.utf8))
            if let upload = form.files["script_file"]?.first, !upload.data.isEmpty {
                script = StoredFile(name: upload.filename.isEmpty ? "main.py" : upload.filename, data: upload.data)
                fields.script = String(decoding: upload.data.prefix(200_000), as: UTF8.self)
            }
            guard !script.data.isEmpty, !fields.script.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw GridError(.badRequest, "paste a script or choose a file to upload")
            }
            let inputs = (form.files["inputs"] ?? []).filter { !$0.filename.isEmpty }.map { StoredFile(name: $0.filename, data: $0.data) }
            try APIController.checkBundle(script: script, inputs: inputs, config: api.config)
            var spec = fields.spec
            let packages = try PythonRequirements.parseFile(fields.requirements, name: "Python packages")
            if !packages.isEmpty { spec.requirements = packages }
            spec = try APIController.submitted(spec, script: script.data)
            if spec.name.isEmpty { spec.name = script.name }
            let submission = try await db.submitJob(
                owner: user.id, spec: spec, script: script, inputs: inputs, now: wall(), key: fields.key)
            if !submission.replayed { core.jobsChanged() }
            return redirect("/jobs/\(submission.job.id)")
        } catch let error as GridError where error.status.code < 500 {
            return try await submitPage(fields, user: user, request: request, session: session, error: error)
        }
    }

    /// The cost of a job before it is sent, computed by `CreditRules` as the server will: JSON for the form's script.
    @Sendable func costPreview(_ request: Request, _ session: WebSession) async throws -> Response {
        let q = request.uri.queryParameters
        func n(_ key: Substring, _ d: Int) -> Int { q[key].flatMap { Int($0) } ?? d }
        let spec = JobSpec(
            name: "preview", cpus: n("cpus", 1), ramGb: n("ram_gb", 1), gpus: n("gpus", 0), minutes: n("minutes", 5),
            verify: n("verify", 0) == 1 ? true : nil)
        var problem: String?
        do { try spec.validate() } catch { problem = error.message }
        let hold = problem == nil ? CreditRules.hold(spec) : 0
        var balance: Int?
        if let user = session.user { balance = try await db.balance(of: .user(user.id)) }
        struct Preview: Encodable {
            var hold: Int
            var balance: Int?
            var after: Int?
            var error: String?
        }
        let body = Preview(hold: hold, balance: balance, after: balance.map { $0 - hold }, error: problem)
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try GridJSON.encode(body))))
    }
}
