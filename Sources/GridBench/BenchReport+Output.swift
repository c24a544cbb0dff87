public import Foundation

extension BenchReport {
    /// The report as JSON: snake_case keys, sorted, indented.
    public func json() throws -> Data {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return try e.encode(self)
    }

    public static func decode(_ data: Data) throws -> BenchReport {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        return try d.decode(BenchReport.self, from: data)
    }

    /// The report as a table for people: one row per figure and reference, ratios as ours ÷ reference.
    public func table() -> String {
        var rows: [[String]] = [["figure", "ours", "reference", "theirs", "ratio", "target"]]
        for f in figures {
            let ours = f.notMeasured == nil ? Self.format(f) : "not measured"
            let target = f.target.map { t in "\(t.description): \(t.met.map { $0 ? "met" : "MISSED" } ?? "—")" } ?? ""
            if f.references.isEmpty {
                rows.append([f.title, ours, "—", "", "", target])
            }
            for (i, r) in f.references.enumerated() {
                let theirs = r.notMeasured == nil ? Self.format(r.value, r.p99, unit: f.unit, latency: f.unit == "ms") : "not run"
                var ratio = r.ratio.map { String(format: "%.2f×", $0) } ?? ""
                if let goal = r.targetRatio {
                    let want = f.better == .higher ? "≥" : "≤"
                    ratio += " (target \(want) \(String(format: "%.2g", goal))\(r.targetMet.map { $0 ? ", met" : ", MISSED" } ?? ""))"
                }
                rows.append([i == 0 ? f.title : "", i == 0 ? ours : "", r.name, theirs, ratio, i == 0 ? target : ""])
            }
        }
        let widths = rows[0].indices.map { c in min(rows.map { $0[c].count }.max() ?? 0, c == 2 ? 48 : 60) }
        var out = ""
        for (n, row) in rows.enumerated() {
            out += row.enumerated().map { c, cell in
                let text = cell.count > widths[c] ? String(cell.prefix(widths[c] - 1)) + "…" : cell
                return text.padding(toLength: widths[c], withPad: " ", startingAt: 0)
            }.joined(separator: "  ").trimmingCharacters(in: .whitespaces) + "\n"
            if n == 0 { out += widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n" }
        }
        var notes: [String] = []
        for f in figures {
            if let why = f.notMeasured { notes.append("\(f.id): \(why)") }
            for r in f.references where r.notMeasured != nil { notes.append("\(f.id) / \(r.name): \(r.notMeasured!)") }
        }
        let m = machine
        var header = "CampusGrid bench (\(mode)) on \(m.cpuModel), \(m.cores) cores, \(m.memoryGb) GB, \(m.os); "
        header += "commit \(m.gitCommit.prefix(12))\(m.gitDirty ? "+dirty" : ""); load \(m.loadAverageAtStart) at start; "
        header += String(format: "%.0f s\n", durationSeconds)
        header += "Ratios are ours ÷ theirs: above 1 is faster for rates, below 1 is faster for times. Values are medians (p50/p99 for times).\n\n"
        return header + out + (notes.isEmpty ? "" : "\n" + notes.map { "  - " + $0 }.joined(separator: "\n") + "\n") + curveTable()
    }

    /// The scaling curves, one line per series: each point as `x → median`.
    func curveTable() -> String {
        guard !curves.isEmpty else { return "" }
        var out = "\nScaling curves (medians):\n"
        for c in curves {
            out += "  \(c.title) (\(c.unit), by \(c.x))"
            if let why = c.notMeasured { out += ": not measured: \(why)" }
            out += "\n"
            for s in c.series {
                let points = s.points.map { p in "\(c.x == "bytes" ? Self.bytes(p.x) : Self.count(p.x)) → \(p.value.map(Self.number) ?? "—")" }
                out += "    \(s.name): " + points.joined(separator: ", ") + "\n"
            }
        }
        return out
    }

    /// A count for people: 1000 → 1k, 1000000 → 1M (whole thousands and millions), other whole numbers as they are.
    static func count(_ x: Double) -> String {
        guard x.isFinite, abs(x) < 1e15 else { return number(x) }
        if x >= 1_000_000, x.truncatingRemainder(dividingBy: 1_000_000) == 0 { return "\(Int(x / 1_000_000))M" }
        if x >= 1_000, x.truncatingRemainder(dividingBy: 1_000) == 0 { return "\(Int(x / 1_000))k" }
        if x.rounded() == x { return "\(Int(x))" }
        return number(x)
    }

    /// A size in bytes for people: whole MiB or GiB where it is one.
    static func bytes(_ x: Double) -> String {
        let gib = Double(1 << 30)
        let mib = Double(1 << 20)
        guard x.isFinite, abs(x) < 1e15 else { return number(x) }
        if x >= gib, x.truncatingRemainder(dividingBy: gib) == 0 { return "\(Int(x / gib)) GiB" }
        if x >= mib, x.truncatingRemainder(dividingBy: mib) == 0 { return "\(Int(x / mib)) MiB" }
        return count(x)
    }

    static func format(_ f: Figure) -> String { format(f.value, f.p99, unit: f.unit, latency: f.unit == "ms") }

    static func format(_ value: Double?, _ p99: Double?, unit: String, latency: Bool) -> String {
        guard let value else { return "—" }
        if latency, let p99 { return "\(number(value)) / \(number(p99)) \(unit)" }
        return "\(number(value)) \(unit)"
    }

    static func number(_ x: Double) -> String {
        if x >= 100 { return String(format: "%.0f", x) }
        if x >= 10 { return String(format: "%.1f", x) }
        return String(format: "%.2f", x)
    }
}
