import Foundation
import GridCore
import GridStore
import Hummingbird

/// The live regions of the pages: each is a template rendered from a context built here, once into the page and again
/// into the event stream whenever it changes. User text only ever reaches HTML through `{{ }}`, which escapes it.
extension Dashboard {
    func statsRegion() async throws -> [String: Any] {
        let counts = try await db.jobCounts()
        let workers = try await db.workers()
        let u = await core.utilisation()
        let states: [[String: Any]] = JobState.allCases.filter { $0 != .submitted }.map {
            ["state": $0.rawValue, "label": $0.rawValue.replacingOccurrences(of: "_", with: " "), "count": counts[$0] ?? 0]
        }
        return [
            "workers_online": u.workers, "workers_total": workers.count, "cpus_used": u.cpusUsed, "cpus_total": u.cpusTotal,
            "running": u.running, "queued": (counts[.pending] ?? 0) + (counts[.submitted] ?? 0), "states": states,
            "jobs_total": counts.values.reduce(0, +),
        ]
    }

    /// The utilisation chart of the last hour as inline SVG (numbers only, no user text).
    func chartRegion() async -> [String: Any] {
        let now = wall()
        var samples = history.since(now - 3600)
        samples.append(await UtilisationHistory.sample(core, now: now))
        let w = 600.0
        let h = 160.0
        func x(_ t: Double) -> Double { max(0, min(w, (t - (now - 3600)) / 3600 * w)) }
        func y(_ p: Double) -> Double { h - p / 100 * h }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        let line = samples.map { "\(f(x($0.at))),\(f(y($0.percent)))" }.joined(separator: " ")
        let first = samples.first.map { x($0.at) } ?? w
        let area = "\(f(first)),\(f(h)) " + line + " \(f(w)),\(f(h))"
        let maxRunning = max(1, samples.map(\.running).max() ?? 1)
        let jobs = samples.map { "\(f(x($0.at))),\(f(h - Double($0.running) / Double(maxRunning) * h * 0.9))" }.joined(separator: " ")
        let last = samples.last!
        var svg = """
            <svg class="chart" viewBox="-36 -8 \(Int(w) + 44) \(Int(h) + 30)" role="img" aria-labelledby="chart-title" \
            data-samples="\(samples.count)" data-cpus-used="\(last.cpusUsed)" data-cpus-total="\(last.cpusTotal)">
            <title id="chart-title">CPU utilisation over the last hour: now \(Int(last.percent.rounded()))%</title>
            """
        for p in [0.0, 50, 100] {
            svg += "<line class=\"grid\" x1=\"0\" x2=\"\(Int(w))\" y1=\"\(f(y(p)))\" y2=\"\(f(y(p)))\"/>"
            svg += "<text class=\"axis\" x=\"-6\" y=\"\(f(y(p) + 4))\" text-anchor=\"end\">\(Int(p))%</text>"
        }
        for (label, t) in [("−60 min", now - 3600), ("−30 min", now - 1800), ("now", now)] {
            svg += "<text class=\"axis\" x=\"\(f(x(t)))\" y=\"\(Int(h) + 18)\" text-anchor=\"\(t == now ? "end" : t == now - 3600 ? "start" : "middle")\">\(label)</text>"
        }
        svg += "<polygon class=\"area\" points=\"\(area)\"/><polyline class=\"line\" points=\"\(line)\"/>"
        svg += "<polyline class=\"jobs\" points=\"\(jobs)\"/></svg>"
        return [
            "svg": svg, "percent": Int(last.percent.rounded()), "cpus_used": last.cpusUsed, "cpus_total": last.cpusTotal,
            "running": last.running, "max_running": maxRunning,
        ]
    }

    func leaderboardRegion(limit: Int) async throws -> [String: Any] {
        let rows = try await db.leaderboard(limit: limit).enumerated().map { i, r -> [String: Any] in
            [
                "rank": i + 1, "username": r.username, "earned": r.creditsEarned, "cpu_hours": String(format: "%.2f", r.cpuHours), "jobs": r.jobsRun,
                "verified": r.verified, "contradicted": r.contradicted,
            ]
        }
        return ["rows": rows, "empty": rows.isEmpty]
    }

    func workersRegion() async throws -> [String: Any] {
        let infos = try await api.workerInfos()
        let earnings = try await db.earningsByWorker()
        let rows = infos.sorted { ($0.online ? 0 : 1, $0.name) < ($1.online ? 0 : 1, $1.name) }.map { w -> [String: Any] in
            var row: [String: Any] = [
                "id": w.id, "name": w.name, "owner": w.owner, "online": w.online, "cpus": w.resources.cpus, "free_cpus": w.free.cpus,
                "ram": w.resources.ramGb, "gpus": w.resources.gpus, "has_gpu": w.resources.gpus > 0, "gpu_names": w.gpuNames.joined(separator: ", "), "tier": w.tierLabel,
                "tier_class": w.tier.rawValue, "slots": w.slots, "running": w.running, "load": String(format: "%.2f", w.load),
                "load_pct": Int(min(100, w.load / Double(max(1, w.resources.cpus)) * 100)), "jobs_done": w.jobsDone,
                "cpu_hours": String(format: "%.2f", w.cpuHoursGiven), "earned": earnings[w.id] ?? 0, "last_seen": Self.time(w.lastSeen),
            ]
            if let since = w.onlineSince { row["online_since"] = Self.time(since) }
            row["unsandboxed"] = w.unsandboxed
            if let r = w.reputation {
                row["verified"] = r.verified
                row["contradicted"] = r.contradicted
                row["probation"] = r.probation && !r.quarantined
                row["quarantined"] = r.quarantined
                if let why = r.quarantineReason { row["quarantine_reason"] = why }
            }
            if let s = w.sandbox {
                row["owner_only"] = !s.acceptsOthers
                row["skipped"] = s.skipped
                row["has_skipped"] = !s.skipped.isEmpty
            }
            return row
        }
        return ["rows": rows, "empty": rows.isEmpty, "online": infos.filter(\.online).count]
    }

    func jobsRegion(user: UserRecord, mine: Bool, state: JobState?, page: Int) async throws -> [String: Any] {
        let owner = mine ? user.id : nil
        let total = try await db.jobCount(owner: owner, state: state)
        let jobs = try await db.jobs(owner: owner, state: state, limit: Self.pageSize, offset: (page - 1) * Self.pageSize)
        var names: [UserID: String] = [user.id: user.username]
        var rows: [[String: Any]] = []
        for job in jobs {
            if names[job.ownerId] == nil { names[job.ownerId] = try await db.user(id: job.ownerId)?.username ?? "?" }
            rows.append([
                "id": job.id, "name": job.ownerId == user.id ? job.spec.name : APIController.nameForOthers(job), "owner": names[job.ownerId]!,
                "state": job.state.rawValue,
                "state_label": job.state.rawValue.replacingOccurrences(of: "_", with: " "), "mine": job.ownerId == user.id,
                "resources": Self.resources(job.spec), "cost": job.paid ?? job.hold, "submitted": Self.time(job.submittedAt),
            ])
        }
        let pages = max(1, (total + Self.pageSize - 1) / Self.pageSize)
        let base = (mine ? "/my-jobs" : "/jobs") + "?" + (state.map { "state=\($0.rawValue)&" } ?? "")
        var values: [String: Any] = ["rows": rows, "empty": rows.isEmpty, "page": page, "pages": pages, "total": total]
        if page > 1 { values["prev"] = base + "page=\(page - 1)" }
        if page < pages { values["next"] = base + "page=\(page + 1)" }
        return values
    }

    /// The summary, timeline and outputs of a job page.
    func jobRegions(_ job: JobRecord, user: UserRecord, csrf: String) async throws -> [String: Any] {
        let status = try await api.jobStatus(job, owner: user.username, detail: true)
        var summary: [String: Any] = [
            "id": job.id, "state": job.state.rawValue, "state_label": job.state.rawValue.replacingOccurrences(of: "_", with: " "),
            "final": job.state.isFinal, "cancellable": !job.state.isFinal && !job.cancelRequested, "cancel_requested": job.cancelRequested,
            "resources": Self.resources(job.spec), "priority": job.spec.priority, "minutes": job.spec.minutes, "hold": job.hold,
            "attempt": job.attempt, "script": job.scriptName, "submitted": Self.time(job.submittedAt), "tier": job.spec.minTier.label, "csrf": csrf,
        ]
        if let w = status.worker { summary["worker"] = w }
        if let packages = job.spec.requirements, !packages.isEmpty { summary["packages"] = packages.joined(separator: ", ") }
        if let preparing = status.preparing { summary["preparing"] = preparing }
        if let paid = job.paid { summary["paid"] = "\(paid)" }
        if let code = job.exitCode { summary["exit_code"] = "\(code)" }
        if let ms = job.runtimeMs { summary["runtime"] = Self.duration(ms) }
        if let kb = job.peakMemoryKb { summary["memory"] = String(format: "%.1f MB", Double(kb) / 1024) }
        if let r = job.reason, !r.isEmpty { summary["reason"] = r }
        if let v = status.verification {
            summary["verification"] = v.label
            summary["verification_state"] = v.state.rawValue
        } else if job.spec.isNondeterministic {
            summary["verification"] = "nondeterministic: never spot-checked"
            summary["verification_state"] = "nondeterministic"
        }
        if job.state == .pending || job.state == .submitted {
            summary["pending_reason"] = job.pendingReason ?? "waiting for the scheduler's next pass"
        }
        if let t = job.startedAt { summary["started"] = Self.time(t) }
        if let t = job.finishedAt { summary["finished"] = Self.time(t) }
        let timeline = (status.events ?? []).map { e -> [String: Any] in
            var row: [String: Any] = [
                "state": e.state.rawValue, "label": e.state.rawValue.replacingOccurrences(of: "_", with: " "), "at": Self.time(e.at),
            ]
            if let d = e.detail, !d.isEmpty { row["detail"] = d }
            return row
        }
        let outputs = (status.outputs ?? []).map { o -> [String: Any] in
            [
                "name": o.name, "size": Self.bytes(o.size),
                "href": "/jobs/\(job.id)/outputs/" + (o.name.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(["/"])) ?? ""),
            ]
        }
        return [
            "summary": summary, "timeline": ["events": timeline],
            "outputs": ["files": outputs, "empty": outputs.isEmpty, "final": job.state.isFinal],
        ]
    }

    func accountRegion(_ user: UserRecord) async throws -> [String: Any] {
        let me = LedgerAccount.user(user.id).description
        let entries = try await db.ledger(of: user.id, limit: 100)
        let held = try await db.held(by: user.id)
        let earned = entries.filter { $0.credit == me && ($0.reason == "payment" || $0.reason == "escrow released") }.reduce(0) { $0 + $1.amount }
        let rows = entries.map { e -> [String: Any] in
            let incoming = e.credit == me
            var row: [String: Any] = [
                "at": Self.time(e.at), "amount": (incoming ? "+" : "−") + "\(e.amount)", "incoming": incoming, "reason": e.reason,
                "counterparty": incoming ? e.debit : e.credit,
            ]
            if let j = e.jobId { row["job"] = j }
            return row
        }
        return [
            "username": user.username, "balance": try await db.balance(of: .user(user.id)), "held": held, "earned": earned, "ledger": rows,
            "empty": rows.isEmpty,
        ]
    }

    // MARK: - Formatting

    /// A time for `<time datetime="{{iso}}">{{text}}</time>` (the script shows it in the reader's time zone).
    static func time(_ t: Double) -> [String: Any] {
        let date = Date(timeIntervalSince1970: t)
        let iso = date.formatted(.iso8601)
        let text = iso.replacingOccurrences(of: "T", with: " ").replacingOccurrences(of: "Z", with: " UTC")
        return ["iso": iso, "text": text]
    }

    static func duration(_ ms: Int64) -> String {
        if ms < 1000 { return "\(ms) ms" }
        if ms < 60_000 { return String(format: "%.1f s", Double(ms) / 1000) }
        let s = ms / 1000
        if s < 3600 { return "\(s / 60) min \(s % 60) s" }
        return "\(s / 3600) h \((s % 3600) / 60) min"
    }

    static func bytes(_ n: Int) -> String {
        if n < 1024 { return "\(n) B" }
        if n < 1 << 20 { return String(format: "%.1f KB", Double(n) / 1024) }
        return String(format: "%.1f MB", Double(n) / 1_048_576)
    }

    static func resources(_ spec: JobSpec) -> String {
        var parts = ["\(spec.cpus) CPU\(spec.cpus == 1 ? "" : "s")", "\(spec.ramGb) GB"]
        if spec.gpus > 0 { parts.append("\(spec.gpus) GPU\(spec.gpus == 1 ? "" : "s")") }
        parts.append("\(spec.minutes) min")
        return parts.joined(separator: " · ")
    }
}
