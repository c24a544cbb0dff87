/// The result of one `campusgrid bench` run: the machine, then every figure with its raw samples, its reference runs
/// from the same run, and the ratio to each. Written as JSON (snake_case keys) and printed as a table.
public struct BenchReport: Sendable, Codable {
    /// Bumped when a field changes meaning. 2: `curves` added.
    public var schema = 2
    /// `full`, `quick` or `tiny`.
    public var mode: String
    /// When the run started (ISO 8601, UTC).
    public var startedAt: String
    public var durationSeconds: Double
    public var machine: MachineDescription
    public var figures: [Figure]
    /// How costs grow with the work (`bench --only curves`); empty in reports from before schema 2.
    public var curves: [Curve]

    public init(
        mode: String, startedAt: String, durationSeconds: Double, machine: MachineDescription, figures: [Figure], curves: [Curve] = []
    ) {
        self.mode = mode
        self.startedAt = startedAt
        self.durationSeconds = durationSeconds
        self.machine = machine
        self.figures = figures
        self.curves = curves
    }

    enum CodingKeys: String, CodingKey {
        case schema, mode, startedAt, durationSeconds, machine, figures, curves
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        schema = try c.decode(Int.self, forKey: .schema)
        mode = try c.decode(String.self, forKey: .mode)
        startedAt = try c.decode(String.self, forKey: .startedAt)
        durationSeconds = try c.decode(Double.self, forKey: .durationSeconds)
        machine = try c.decode(MachineDescription.self, forKey: .machine)
        figures = try c.decode([Figure].self, forKey: .figures)
        curves = try c.decodeIfPresent([Curve].self, forKey: .curves) ?? []
    }
}

/// A scaling curve: one quantity measured at several sizes of the work (`x`), in one or more series (e.g. one per
/// worker count), each point with its raw samples.
public struct Curve: Sendable, Codable {
    /// Stable dotted identifier, e.g. `curve.placements`.
    public var id: String
    public var title: String
    /// Unit of every point's samples.
    public var unit: String
    public var better: Better
    /// What `x` counts, e.g. `queued jobs`.
    public var x: String
    public var workload: String
    public var series: [Series]
    /// Why the curve (or part of it) was not measured.
    public var notMeasured: String?

    public struct Series: Sendable, Codable {
        public var name: String
        public var points: [Point]
        public init(name: String, points: [Point] = []) {
            self.name = name
            self.points = points
        }
    }

    public struct Point: Sendable, Codable {
        public var x: Double
        public var samples: [Double]
        /// The median of the samples.
        public var value: Double?
        /// Extra measured detail at this point (e.g. the scheduler pass's steps).
        public var detail: [String: Double]
        public init(x: Double, samples: [Double], detail: [String: Double] = [:]) {
            self.x = x
            self.samples = samples
            self.value = Stats.median(samples)
            self.detail = detail
        }
    }

    public init(id: String, title: String, unit: String, better: Better, x: String, workload: String) {
        self.id = id
        self.title = title
        self.unit = unit
        self.better = better
        self.x = x
        self.workload = workload
        self.series = []
    }

    /// The curve with every series, marked not measured (so the report always names every curve).
    public static func missing(_ id: String, title: String, unit: String, better: Better, x: String, because reason: String) -> Curve {
        var c = Curve(id: id, title: title, unit: unit, better: better, x: x, workload: "")
        c.notMeasured = reason
        return c
    }
}

/// Which way is better for a figure.
public enum Better: String, Sendable, Codable {
    case higher
    case lower
}

/// One measured quantity (e.g. `job.submit_to_start`), or the reason it could not be measured.
public struct Figure: Sendable, Codable {
    /// Stable dotted identifier, e.g. `tasks.throughput`.
    public var id: String
    public var title: String
    /// Unit of `samples` and `value`: `ms`, `jobs/s`, `MB/s`, …
    public var unit: String
    public var better: Better
    /// What was run: sizes, concurrency, repetitions.
    public var workload: String
    /// Raw samples, in run order. Empty when not measured.
    public var samples: [Double]
    /// The headline: the median of the samples (for latencies, the p50).
    public var value: Double?
    public var p50: Double?
    public var p99: Double?
    /// Why there is no value (`nil` when measured).
    public var notMeasured: String?
    /// Reference tools run with the same workload in the same run.
    public var references: [Reference]
    /// The acceptance target, if the issue sets one.
    public var target: Target?
    /// Extra measured detail (e.g. the scheduler pass broken into its steps), each a median in `unit`s named in its key.
    public var detail: [String: Double]

    public init(id: String, title: String, unit: String, better: Better, workload: String) {
        self.id = id
        self.title = title
        self.unit = unit
        self.better = better
        self.workload = workload
        self.samples = []
        self.references = []
        self.detail = [:]
    }

    /// Sets the samples and the summary statistics; `headline` picks the value (median for rates, p50 for latencies).
    public mutating func record(_ samples: [Double]) {
        self.samples = samples
        self.value = Stats.median(samples)
        self.p50 = Stats.percentile(samples, 50)
        self.p99 = Stats.percentile(samples, 99)
        self.notMeasured = samples.isEmpty ? (notMeasured ?? "no samples") : nil
        refreshRatios()
    }

    /// Marks the figure as not measured, with the reason in words.
    public mutating func skip(_ reason: String) {
        samples = []
        value = nil
        p50 = nil
        p99 = nil
        notMeasured = reason
        refreshRatios()
    }

    public mutating func add(_ reference: Reference) {
        references.append(reference)
        refreshRatios()
    }

    /// Recomputes every reference's ratio (ours ÷ reference) and whether the target is met.
    mutating func refreshRatios() {
        for i in references.indices {
            if let ours = value, let theirs = references[i].value, theirs > 0 {
                references[i].ratio = ours / theirs
            } else {
                references[i].ratio = nil
            }
            if let goal = references[i].targetRatio, let ratio = references[i].ratio {
                references[i].targetMet = better == .higher ? ratio >= goal : ratio <= goal
            } else {
                references[i].targetMet = nil
            }
        }
        if target != nil {
            target!.met = value.map { target!.better == .higher ? $0 >= target!.value : $0 <= target!.value }
        }
    }

    /// Sets the acceptance target.
    public mutating func setTarget(_ value: Double, better: Better, description: String) {
        target = Target(value: value, better: better, description: description, met: nil)
        refreshRatios()
    }
}

/// A reference tool's run of the same workload.
public struct Reference: Sendable, Codable {
    /// e.g. `ray 2.58.0`, `redis-server 7.0.15`, `plain process start`.
    public var name: String
    public var samples: [Double]
    public var value: Double?
    public var p50: Double?
    public var p99: Double?
    /// Ours ÷ reference, in the figure's unit. With `better: higher`, above 1 means ours is faster; with `lower`,
    /// below 1 means ours is faster. `nil` when either side was not measured.
    public var ratio: Double?
    /// Why the reference did not run (`nil` when it did).
    public var notMeasured: String?
    /// The target for `ratio` (e.g. 1.0: at least Ray's throughput), if any; met in the figure's `better` sense.
    public var targetRatio: Double?
    public var targetMet: Bool?

    public init(name: String, samples: [Double], targetRatio: Double? = nil) {
        self.name = name
        self.targetRatio = targetRatio
        self.samples = samples
        value = Stats.median(samples)
        p50 = Stats.percentile(samples, 50)
        p99 = Stats.percentile(samples, 99)
        notMeasured = samples.isEmpty ? "no samples" : nil
    }

    public static func missing(_ name: String, because reason: String, targetRatio: Double? = nil) -> Reference {
        var r = Reference(name: name, samples: [], targetRatio: targetRatio)
        r.notMeasured = reason
        return r
    }
}

/// An acceptance target from the issue, e.g. submit→start p50 under 50 ms.
public struct Target: Sendable, Codable {
    public var value: Double
    public var better: Better
    public var description: String
    public var met: Bool?
}
