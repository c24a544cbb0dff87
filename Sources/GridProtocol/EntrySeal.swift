import Crypto
public import Foundation
public import GridCore
import Synchronization

/// Who may write a memory entry (a value, a file's manifest, a deletion), proven to every peer that keeps a copy.
///
/// Any proven peer may send `MEM_SYNC`, so an entry must show, by itself, that its key's person wanted it written: a
/// **seal**. The peer that wrote it (`origin`) signs the key, the version, the value's digest and its **authority**
/// with the key its credential names, and the authority says on whose word it wrote:
/// * a person's write grant to that peer: their certificate (the manager's), and their signature giving that peer
///   the right to write for them until a time (`SESSION`'s `write_grant`, from a client that writes): it counts for
///   entries versioned within the grant's last hour and the certificate's life;
/// * or the manager's write ticket for that peer (`JOB_ASSIGN`): a job's outputs, stored under one name prefix of its
///   owner's files, within the job's time.
///
/// What a seal cannot stop: the peer a person writes through could write something else in their name within its
/// grant (it sees their values anyway, and could change them on the way); a replica can replay an older sealed
/// version (the newer one wins where it is held). Nothing here does I/O or reads a clock.
extension PeerTrust {
    /// The manager's word that worker `holder` may store `user`'s files whose names start with `prefix`, between
    /// `notBefore` and `expires` (seconds since 1970): a job's outputs (`submit --save-outputs`).
    public struct WriteTicket: Hashable, Sendable, Codable {
        public var user: String
        public var holder: String
        public var prefix: String
        public var notBefore: Int64
        public var expires: Int64
        public var signature: String
        public init(user: String, holder: String, prefix: String, notBefore: Int64, expires: Int64, signature: String) {
            self.user = user
            self.holder = holder
            self.prefix = prefix
            self.notBefore = notBefore
            self.expires = expires
            self.signature = signature
        }

        public var signedBytes: Data { PeerTrust.signedText("campusgrid-write-v1", [user, holder, prefix, "\(notBefore)", "\(expires)"]) }
    }

    /// On whose word a peer writes an entry: a person's write grant to it, or the manager's write ticket for it.
    public struct Authority: Hashable, Sendable, Codable {
        public var certificate: UserCertificate?
        /// The person's grant to the writing peer (with `certificate`, whose key signed it).
        public var grant: WriteGrant?
        public var ticket: WriteTicket?
        public init(certificate: UserCertificate? = nil, grant: WriteGrant? = nil, ticket: WriteTicket? = nil) {
            self.certificate = certificate
            self.grant = grant
            self.ticket = ticket
        }

        /// What a `SESSION` lets its peer write with: its write grant, if it gave one.
        public static func session(_ session: Msg.Session) -> Authority? {
            session.writeGrant.map { Authority(certificate: session.certificate, grant: $0) }
        }

        /// The person it speaks for (unchecked).
        public var user: String? { ticket?.user ?? certificate?.user }

        /// What the entry's signature names it by: its signatures, which only their signers can make.
        var ref: String { ticket.map { "w:" + $0.signature } ?? "g:" + (certificate?.signature ?? "") + ":" + (grant?.signature ?? "") }
    }

    /// A memory entry's seal: the writing peer's credential, its authority, and its signature over the entry.
    public struct Seal: Hashable, Sendable, Codable {
        public var credential: Credential
        public var authority: Authority
        public var signature: String
        public init(credential: Credential, authority: Authority, signature: String) {
            self.credential = credential
            self.authority = authority
            self.signature = signature
        }

        /// The seal as an entry carries it: JSON text, kept and passed on byte for byte (never encoded again).
        public func text() -> String { (try? GridJSON.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "" }

        /// A seal read back from its text; nil when it is not one.
        public init?(text: String) {
            guard let seal = try? GridJSON.decode(Seal.self, from: Data(text.utf8)) else { return nil }
            self = seal
        }

        /// The person a seal's text names (its certificate's, or its write ticket's), unchecked: for an entry this
        /// peer holds, whose seal was checked when it came. nil when the text is no seal.
        public static func person(text: String?) -> String? { text.flatMap(Seal.init(text:))?.authority.user }
    }

    /// What a writer's signature covers: the stored key, the version, the origin, the value's digest (`-` for a
    /// deletion) and the authority's reference.
    public static func entryBytes(key: String, version: Int64, origin: String, value: JSONValue?, authority: Authority) -> Data {
        signedText("campusgrid-entry-v1", [key, "\(version)", origin, value.map(digest(of:)) ?? "-", authority.ref])
    }

    /// The SHA-256 (hex) of a value's structure: the same for every peer that decoded the same JSON, however it was
    /// written (key order, spacing, `1` or `1.0`). Each part is tagged and its length given, so no two values share one.
    public static func digest(of value: JSONValue) -> String {
        var hasher = SHA256()
        func feed(_ v: JSONValue) {
            switch v {
            case .null: hasher.update(data: [0])
            case .bool(let b): hasher.update(data: [1, b ? 1 : 0])
            case .number(let n):
                // -0 is written as 0, and read back as 0.
                var bits = (n == 0 ? 0 : n).bitPattern.bigEndian
                hasher.update(data: [2])
                withUnsafeBytes(of: &bits) { hasher.update(bufferPointer: $0) }
            case .string(let s): text(3, s)
            case .array(let a):
                count(4, a.count)
                for x in a { feed(x) }
            case .object(let o):
                count(5, o.count)
                for (k, x) in o.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }) {
                    text(6, k)
                    feed(x)
                }
            }
        }
        func count(_ tag: UInt8, _ n: Int) {
            var big = UInt64(n).bigEndian
            hasher.update(data: [tag])
            withUnsafeBytes(of: &big) { hasher.update(bufferPointer: $0) }
        }
        func text(_ tag: UInt8, _ s: String) {
            count(tag, s.utf8.count)
            hasher.update(data: Array(s.utf8))
        }
        feed(value)
        return Hex.string(hasher.finalize())
    }

    /// Why a peer will not seal writes under write grant `grant` it got at `now` (its clock), or nil: expired, or
    /// running longer ahead than a grant counts for (`writeGrantSeconds`) and the skew: the client's clock is ahead of
    /// the peer's, and every replica would refuse what it sealed. Said at once, not after each write. Never traps.
    public static func grantRefusal(_ grant: WriteGrant, now: Int64) -> String? {
        if grant.expires <= now { return "this session's write grant expired; open a new session to write" }
        let ahead = grant.expires.subtractingSaturated(now)
        if ahead > writeGrantSeconds.addingSaturated(versionSkewSeconds) {
            return "this session's write grant runs \(ahead) s ahead of this peer's clock, more than the \(writeGrantSeconds) s a grant counts for: "
                + "the client's clock runs \(ahead.subtractingSaturated(writeGrantSeconds)) s or so ahead; set it right to write"
        }
        return nil
    }

    /// How far a writer's clock may be behind the issuer's when it versions an entry: as far as a version may be ahead
    /// of a receiver's (`VersionRules.maxSkewMs` in GridPeer, 5 minutes; a test holds them equal).
    public static let versionSkewSeconds: Int64 = 300

    /// A checked seal: the person its entry was written for, and, for a write ticket, the only file names it covers.
    public struct Sealed: Hashable, Sendable {
        public var user: String
        public var filePrefix: String?
        public init(user: String, filePrefix: String?) {
            self.user = user
            self.filePrefix = filePrefix
        }
    }

    /// Checks seals, remembering the credentials, certificates, grants and tickets it has found good (by their whole
    /// content, not by their signature alone), so a batch from one writer costs one signature check per entry.
    public struct SealChecker: Sendable {
        public let managerKey: String
        /// The SHA-256 of each part found good (its key, signature and signed bytes), shared by every copy of this
        /// checker: a copy checks a batch off its peer's actor, and a set held by value was copied whole (16,384
        /// digests) by every batch that learned one part.
        private let good = GoodParts()
        /// How many good parts it remembers before it starts again (32 bytes each).
        public static let remembered = 16_384
        /// How many signatures it has checked (those it remembered as good cost none): what a sender of entries that
        /// fail cost this peer (`SealStrikes`).
        public private(set) var signatureChecks = 0

        public init(managerKey: String) { self.managerKey = managerKey }

        /// Whether entry (`key`, `value`, `version`, `origin`) carries a good seal (`seal`, its text): the writer's
        /// credential is the manager's and was in date at `version`; its authority is the person's write grant to
        /// that writer, or the manager's write ticket for it, in date at `version`; the writer signed this entry
        /// under it. Which keys the person may write is `PeerNamespace.mayWrite`'s to say: `mayKeep` is asked with the
        /// person the seal claims before any signature is checked (a forgery for a key its person may not write costs
        /// no signature check). Never traps.
        public mutating func check(
            key: String, value: JSONValue?, version: Int64, origin: String, seal text: String?, mayKeep: (Sealed) -> GridError? = { _ in nil }
        ) -> Result<Sealed, GridError> {
            func refuse(_ why: String) -> Result<Sealed, GridError> { .failure(GridError(.forbidden, "a memory entry \(why)")) }
            guard let text else { return refuse("has no seal (peers keep only entries their writer sealed)") }
            guard text.utf8.count <= EntrySealRules.maxSealBytes, let seal = Seal(text: text) else { return refuse("has a malformed seal") }
            let claimed: Sealed
            switch (seal.authority.certificate, seal.authority.ticket) {
            case (let cert?, nil): claimed = Sealed(user: cert.user, filePrefix: nil)
            case (nil, let ticket?): claimed = Sealed(user: ticket.user, filePrefix: ticket.prefix)
            default: return refuse("has no authority (a write grant or a write ticket)")
            }
            if let e = mayKeep(claimed) { return .failure(e) }
            let c = seal.credential
            guard c.workerId == origin else { return refuse("was sealed by \(c.workerId.prefix(64)), not by its origin \(origin.prefix(64))") }
            // Versions are milliseconds; the credential's and authority's times whole seconds.
            let at = version / 1000
            guard remember(c.signedBytes, c.signature, key: managerKey) else { return refuse("has a credential the manager did not sign") }
            // A peer cut off from its manager keeps writing with its last credential for as long as sessions still
            // open without a manager (`userCertificateSeconds`); a barred peer is refused by every honest one anyway.
            guard within(at, from: c.expires.subtractingSaturated(credentialSeconds), to: c.expires.addingSaturated(userCertificateSeconds), early: true) else {
                return refuse("is versioned outside its writer's credential (version \(version), credential until \(c.expires))")
            }
            // The person was taken from the authority above (`claimed`); here its signatures and times are checked.
            let a = seal.authority
            if let cert = a.certificate {
                guard let grant = a.grant else { return refuse("has a certificate without its write grant") }
                guard grant.holder == origin else { return refuse("has a write grant to \(grant.holder.prefix(64)), not to its writer") }
                guard remember(cert.signedBytes, cert.signature, key: managerKey) else { return refuse("has a certificate the manager did not sign") }
                guard remember(grant.signedBytes(user: cert.user), grant.signature, key: cert.key) else {
                    return refuse("has a write grant \(cert.user.prefix(64))'s key did not sign")
                }
                guard within(at, from: cert.expires.subtractingSaturated(userCertificateSeconds), to: cert.expires, early: true) else {
                    return refuse("is versioned outside its person's certificate")
                }
                guard within(at, from: grant.expires.subtractingSaturated(writeGrantSeconds), to: grant.expires, early: true) else {
                    return refuse("is versioned outside its write grant (version \(version), grant until \(grant.expires))")
                }
            } else if let ticket = a.ticket {
                guard ticket.holder == origin else { return refuse("has a write ticket for \(ticket.holder.prefix(64)), not its writer") }
                guard remember(ticket.signedBytes, ticket.signature, key: managerKey) else { return refuse("has a write ticket the manager did not sign") }
                guard within(at, from: ticket.notBefore, to: ticket.expires, early: true) else { return refuse("is versioned outside its write ticket") }
            }
            // Remembered too: an entry sent again (a replay, or a repair pass's copy) costs a hash, not a check.
            guard remember(entryBytes(key: key, version: version, origin: origin, value: value, authority: a), seal.signature, key: c.key)
            else { return refuse("was not signed by its writer as it stands (key, version, value or authority changed)") }
            return .success(claimed)
        }

        /// Whether `at` lies in `from...to`, give or take the clock skew; never traps. `early`: the start is the
        /// manager's clock at issue and `at` the writer's, which may run behind it by as much as a version may run
        /// ahead (`VersionRules.maxSkewMs`): a writer a minute slow would have every write after a renewal refused.
        private func within(_ at: Int64, from: Int64, to: Int64, early: Bool = false) -> Bool {
            let behind = early ? versionSkewSeconds : clockSkewSeconds
            return at >= from.subtractingSaturated(behind) && at <= to.addingSaturated(clockSkewSeconds)
        }

        /// Whether `signature` is `key`'s over `bytes`: from memory when this exact part was found good before.
        private mutating func remember(_ bytes: Data, _ signature: String, key: String) -> Bool {
            var hash = SHA256()
            hash.update(data: Data(key.utf8))
            hash.update(data: [0])
            hash.update(data: Data(signature.utf8))
            hash.update(data: [0])
            hash.update(data: bytes)
            let whole = Data(hash.finalize())
            if good.contains(whole) { return true }
            signatureChecks &+= 1
            guard isValid(signature: signature, over: bytes, key: key) else { return false }
            good.insert(whole, keeping: Self.remembered)
            return true
        }
    }

    /// The parts a `SealChecker` found good: a cache, shared by its copies (a lock, held only to look up or add one).
    final class GoodParts: Sendable {
        private let parts = Mutex<Set<Data>>([])

        func contains(_ part: Data) -> Bool { parts.withLock { $0.contains(part) } }

        /// Adds `part`; past `keeping` parts it starts again.
        func insert(_ part: Data, keeping: Int) {
            parts.withLock { set in
                if set.count >= keeping { set.removeAll(keepingCapacity: true) }
                set.insert(part)
            }
        }
    }
}

/// The bounds of a seal a peer accepts.
public enum EntrySealRules {
    /// A credential, a certificate, a grant and a signature take about 1.2 KB; a write ticket's prefix up to 400
    /// bytes more. (A seal is kept with its entry, deletions included: no more room than that for padding.)
    public static let maxSealBytes = 2_560
}

extension PeerTrust.Signer {
    /// The manager's write ticket: worker `holder` may store `user`'s files named `prefix`… from now for `seconds`.
    public func writeTicket(user: String, holder: String, prefix: String, now: Int64, seconds: Int64) -> PeerTrust.WriteTicket {
        var t = PeerTrust.WriteTicket(
            user: user, holder: holder, prefix: prefix, notBefore: now, expires: now.addingSaturated(max(0, seconds)), signature: "")
        t.signature = sign(t.signedBytes)
        return t
    }

    /// A writing peer's seal over an entry, under `authority`, with its credential `credential` (this key's).
    public func seal(key: String, value: JSONValue?, version: Int64, origin: String, authority: PeerTrust.Authority, credential: PeerTrust.Credential)
        -> String
    {
        let signature = sign(PeerTrust.entryBytes(key: key, version: version, origin: origin, value: value, authority: authority))
        return PeerTrust.Seal(credential: credential, authority: authority, signature: signature).text()
    }
}
