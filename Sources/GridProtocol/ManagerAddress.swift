import Foundation
import GridCore

/// One manager's worker-protocol address, `host:port` (issue 16: a grid may have several managers).
public struct ManagerAddress: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    /// The longest `host:port` accepted, from the command line or the wire (a DNS name is at most 253 bytes).
    public static let maxLength = 260

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host`, `host:port`, `[v6]:port` or a URL's authority (`scheme://host:port/…`); nil if it is not one.
    public init?(parsing text: String, defaultPort: Int = 9999) {
        guard !text.isEmpty, text.utf8.count <= Self.maxLength else { return nil }
        var s = Substring(text)
        if let r = s.range(of: "://") { s = s[r.upperBound...] }
        if let slash = s.firstIndex(of: "/") { s = s[..<slash] }
        guard !s.isEmpty, s.allSatisfy({ $0.isASCII && !$0.isWhitespace && $0 != "," && $0 != "@" && !$0.isNewline }),
            s.unicodeScalars.allSatisfy({ $0.value >= 0x21 && $0.value < 0x7F })
        else { return nil }
        var host = s
        var port = defaultPort
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            host = s[s.index(after: s.startIndex)..<close]
            let rest = s[s.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let p = Int(rest.dropFirst()) else { return nil }
                port = p
            }
        } else if let colon = s.lastIndex(of: ":") {
            // More than one colon without brackets: a bare IPv6 address, no port.
            if s.firstIndex(of: ":") == colon {
                host = s[..<colon]
                guard let p = Int(s[s.index(after: colon)...]) else { return nil }
                port = p
            }
        }
        guard !host.isEmpty, (1...65535).contains(port) else { return nil }
        self.host = String(host)
        self.port = port
    }

    /// Parses a comma-separated list (`-m host1,host2:9998`); throws on any bad entry, an empty list, or duplicates
    /// are dropped keeping the first.
    public static func list(_ text: String, defaultPort: Int = 9999) throws -> [ManagerAddress] {
        var out: [ManagerAddress] = []
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: " ") }
        guard parts.count <= 64 else { throw GridError(.badRequest, "at most 64 managers in a list") }
        for part in parts where !part.isEmpty {
            guard let a = ManagerAddress(parsing: String(part), defaultPort: defaultPort) else {
                throw GridError(.badRequest, "not a manager address: \(String(reflecting: String(part.prefix(80))))")
            }
            if !out.contains(a) { out.append(a) }
        }
        guard !out.isEmpty else { throw GridError(.badRequest, "no manager address given") }
        return out
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: String) -> Substring {
        var s = self
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return s
    }
}

/// Which of its configured managers a worker talks to next. Pure.
///
/// A worker starts with the first; a connection that fails moves on to the next (round robin); a manager that answers
/// `NOT_LEADER` naming another is followed only when the named one is in the worker's own list (a stranger cannot
/// redirect a worker anywhere), else the worker moves on to the next.
public struct ManagerRotation: Sendable, Hashable {
    public let managers: [ManagerAddress]
    public private(set) var index = 0

    public init(_ managers: [ManagerAddress]) {
        precondition(!managers.isEmpty, "a worker needs at least one manager")
        self.managers = managers
    }

    public var current: ManagerAddress { managers[index] }

    /// The current manager could not be reached or dropped the link.
    public mutating func failed() { index = (index + 1) % managers.count }

    /// The current manager said another one leads. Returns whether the named one is followed (it is in the list).
    @discardableResult
    public mutating func notLeader(naming leader: String) -> Bool {
        if let named = ManagerAddress(parsing: leader, defaultPort: current.port), let i = managers.firstIndex(of: named), i != index {
            index = i
            return true
        }
        failed()
        return false
    }
}
