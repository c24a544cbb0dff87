public import GridCore

extension PeerTrust {
    /// Whether a person's certificate still stands: the API token it was granted under has not been revoked. A
    /// certificate is checked offline (so sessions open while no manager is reachable), and lasts
    /// `userCertificateSeconds`; without this, a logout or a revoked token left a copied key and certificate opening
    /// sessions at peers, and reading that person's data, for up to 12 hours. A peer that reaches the manager asks it
    /// (`AUTH_CHECK {certificate}`), and keeps the answer in a `Memo`: a standing one for a short while, a revoked one
    /// until the certificate expires. With no manager reachable, a certificate stands as before: the grid keeps
    /// working through an outage, and a revocation then reaches peers once the manager is back.
    ///
    /// Pure: the manager passes what its store says of the token, the peer passes the time.
    public enum Standing {
        /// The manager's answer to `AUTH_CHECK {certificate}`: nil when `certificate` is one it signed (`managerKey`,
        /// its own), in date, and names a token that is still a person's (`kind` "api") API token of the same user
        /// (`holder`: what the store holds under the certificate's token hash, nil when nothing does); otherwise why not.
        public static func check(
            _ certificate: UserCertificate, managerKey: String, now: Int64, holder: (user: String, kind: String)?
        ) -> GridError? {
            if let e = checkSigned(certificate, managerKey: managerKey, now: now) { return e }
            guard let holder, holder.kind == "api", holder.user == certificate.user else { return revoked }
            return nil
        }

        /// The refusal of a certificate whose token no longer stands (the manager's and a peer's alike).
        public static let revoked = GridError(
            .unauthorized, "the API token this certificate was granted under was revoked (logout, or revoked on the account page); log in again")

        /// The part of `check` that needs no store: the manager signed it, it is in date, and it names a token. The
        /// manager reads its store only for a certificate that passes (a forged one costs a signature check).
        public static func checkSigned(_ certificate: UserCertificate, managerKey: String, now: Int64) -> GridError? {
            guard isValid(signature: certificate.signature, over: certificate.signedBytes, key: managerKey) else {
                return GridError(.unauthorized, "the user certificate was not signed by this grid's manager")
            }
            guard certificate.expires >= now.subtractingSaturated(clockSkewSeconds) else {
                return GridError(.unauthorized, "the user certificate expired")
            }
            guard certificate.tokenHash != nil else {
                return GridError(.badRequest, "the user certificate names no token (a manager older than this one granted it)")
            }
            return nil
        }

        /// What a peer knows of tokens' standing, by token hash, bounded.
        public struct Memo: Sendable {
            /// How many answers are kept (expired ones go first, then all, when more come).
            public static let limit = 10_000
            public enum Verdict: Sendable, Equatable {
                /// Asked a moment ago: it stands.
                case stands
                /// The manager said it was revoked.
                case revoked
                /// Not known, or known too long ago: ask the manager (when reachable).
                case ask
            }

            /// Token hash → (stands, until when the answer counts).
            private var answers: [String: (stands: Bool, until: Int64)] = [:]

            public init() {}

            public var count: Int { answers.count }

            public func verdict(token: String, now: Int64) -> Verdict {
                guard let a = answers[token], now < a.until else { return .ask }
                return a.stands ? .stands : .revoked
            }

            /// Keeps the manager's answer for `token`: a standing one for `standsFor` seconds (then asked again), a
            /// revoked one until `certificateExpires` (a revoked token never comes back; past that the certificate is
            /// refused as expired anyway). A revoked answer is never replaced by a standing one (a late or failed ask
            /// that raced it), and a flood of answers drops the standing ones first.
            public mutating func record(token: String, stands: Bool, now: Int64, standsFor: Int64, certificateExpires: Int64) {
                if stands, verdict(token: token, now: now) == .revoked { return }
                let until = stands ? now.addingSaturated(max(0, standsFor)) : max(certificateExpires, now)
                if answers[token] == nil, answers.count >= Self.limit {
                    answers = answers.filter { $0.value.until > now }
                    if answers.count >= Self.limit { answers = answers.filter { !$0.value.stands } }
                    if answers.count >= Self.limit { answers = [:] }
                }
                answers[token] = (stands, until)
            }
        }
    }
}

extension Int64 {
    /// `self + other`, stopping at the bounds rather than trapping.
    func addingSaturated(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }

    /// `self - other`, stopping at the bounds rather than trapping.
    func subtractingSaturated(_ other: Int64) -> Int64 {
        let (difference, overflow) = subtractingReportingOverflow(other)
        return overflow ? (other > 0 ? .min : .max) : difference
    }
}
