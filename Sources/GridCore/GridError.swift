/// An error a user or an operator can act on.
///
/// The code is an extensible string (new codes never break callers); the message says what happened and what to do.
/// Errors are mapped to HTTP statuses or protocol `ERROR` messages only at the edges.
public struct GridError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A stable, machine-readable error code.
    public struct Code: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let badRequest = Code("bad_request")
        public static let malformedMessage = Code("malformed_message")
        public static let unknownMessage = Code("unknown_message")
        public static let lineTooLong = Code("line_too_long")
        public static let bulkTooLarge = Code("bulk_too_large")
        public static let truncated = Code("truncated")
        public static let notAuthenticated = Code("not_authenticated")
        public static let unauthorized = Code("unauthorized")
        public static let forbidden = Code("forbidden")
        public static let notFound = Code("not_found")
        public static let conflict = Code("conflict")
        public static let insufficientCredits = Code("insufficient_credits")
        public static let versionMismatch = Code("version_mismatch")
        public static let invalidResources = Code("invalid_resources")
        public static let rateLimited = Code("rate_limited")
        /// A peer has no room for more of what was sent: the person's share of it, or the peer's whole budget, is full.
        public static let insufficientStorage = Code("insufficient_storage")
        /// A peer was sent a mandate's reference it does not hold (it restarted, or forgot it): send the mandate itself.
        public static let mandateUnknown = Code("mandate_unknown")
        public static let sandboxUnavailable = Code("sandbox_unavailable")
        public static let `internal` = Code("internal")
        /// A peer or the manager could not be reached (peer services).
        public static let unreachable = Code("unreachable")
        public static let timeout = Code("timeout")
        /// A job's declared Python packages are malformed, or its environment could not be built.
        public static let invalidRequirements = Code("invalid_requirements")
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(message) [\(code)]" }
}
