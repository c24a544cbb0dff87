import Crypto
public import Foundation
public import GridCore

/// Trust between peers, decided here and nowhere else: the manager's Ed25519 key signs short-lived **credentials**
/// (a worker id, the address `PEERS` lists for it, and that worker's own public key) and **user tickets** (a user, the
/// peer that checked the user's token, an expiry). A peer proves itself by signing the other side's nonce with the key
/// its credential names; it forwards work on a user's behalf with the ticket the manager gave it at `AUTH_CHECK`,
/// signing the request's digest with that same key. Nothing here does I/O or reads a clock: times are passed in
/// (whole seconds since 1970).
public enum PeerTrust {
    /// How long a credential is valid; a worker asks for a new one when less than half of it is left.
    public static let credentialSeconds: Int64 = 600
    /// How long a user ticket is valid (longer than the peer's 60 s token cache plus the longest forwarded task).
    public static let ticketSeconds: Int64 = 900
    /// How far the other side's clock may be behind ours before its credential counts as expired.
    public static let clockSkewSeconds: Int64 = 30
    /// How long a person's certificate is valid: how long sessions still open at peers while no manager is
    /// reachable (a client gets a fresh one whenever it reaches the manager), and how long a revoked token's
    /// certificate may still open them.
    public static let userCertificateSeconds: Int64 = 12 * 3600
    /// How long a peer a person opened a session with may read that person's data from other peers (`Delegation`).
    public static let delegationSeconds: Int64 = 3600

    /// A worker's credential, signed by the manager: "the worker `workerId`, reachable at `host:port`, holds the
    /// private half of `key` until `expires`".
    public struct Credential: Hashable, Sendable, Codable {
        public var workerId: String
        public var host: String
        public var port: Int
        /// The worker's own Ed25519 public key (raw, base64).
        public var key: String
        /// Seconds since 1970.
        public var expires: Int64
        /// The manager's signature over `signedBytes` (base64).
        public var signature: String
        public init(workerId: String, host: String, port: Int, key: String, expires: Int64, signature: String) {
            self.workerId = workerId
            self.host = host
            self.port = port
            self.key = key
            self.expires = expires
            self.signature = signature
        }

        /// What the manager signs: every field but the signature, one per line, behind a label of its own kind.
        public var signedBytes: Data {
            PeerTrust.signedText("campusgrid-credential-v2", [workerId, host, "\(port)", key, "\(expires)"])
        }
    }

    /// A user ticket, signed by the manager when peer `holder` checked `user`'s API token (`AUTH_CHECK`): `holder` may
    /// ask other peers to act for `user` until `expires`.
    public struct Ticket: Hashable, Sendable, Codable {
        public var user: String
        public var holder: String
        public var expires: Int64
        public var signature: String
        /// A job's read ticket (`JOB_ASSIGN`): only these grid files of `user` may be read with it, and it forwards
        /// nothing. nil: an ordinary ticket.
        public var files: [String]?
        public init(user: String, holder: String, expires: Int64, signature: String, files: [String]? = nil) {
            self.user = user
            self.holder = holder
            self.expires = expires
            self.signature = signature
            self.files = files
        }

        /// A read ticket signs its files (their SHA-256, names one per line: a file name has no control character)
        /// behind a label of its own, so it never passes for an ordinary ticket.
        public var signedBytes: Data {
            guard let files else { return PeerTrust.signedText("campusgrid-ticket-v2", [user, holder, "\(expires)"]) }
            return PeerTrust.signedText("campusgrid-read-v2", [user, holder, "\(expires)"] + files)
        }
    }

    /// A person's certificate, signed by the manager (`POST /api/v1/peer-tickets`): "`user` holds the private half of
    /// `key` until `expires`". The person's client made that key and keeps it; it proves the person to a peer by
    /// signing the peer's nonce and id (`SESSION`), so the API token never goes to a peer, and what a peer sees opens
    /// nothing elsewhere: the proof is for that peer and that connection, and the certificate is useless without the key.
    /// A peer checks it offline, with the manager's key: sessions open while no manager is reachable.
    public struct UserCertificate: Hashable, Sendable, Codable {
        public var user: String
        /// The person's own Ed25519 public key (raw, base64).
        public var key: String
        /// Seconds since 1970.
        public var expires: Int64
        public var signature: String
        /// The SHA-256 (hex) of the API token the certificate was granted under (`Standing`): once that token is
        /// revoked (logout, or revoked on the dashboard), peers that reach the manager refuse the certificate. Signed
        /// with the rest, so it can be neither removed nor changed. nil only in a certificate of a manager older than
        /// this field (it lapses within `userCertificateSeconds`).
        public var tokenHash: String?
        public init(user: String, key: String, expires: Int64, signature: String, tokenHash: String? = nil) {
            self.user = user
            self.key = key
            self.expires = expires
            self.signature = signature
            self.tokenHash = tokenHash
        }

        /// A label of its own: a certificate never passes for a credential or a ticket, nor the other way round; one
        /// that names its token has a label of its own too (one without cannot be made from one with).
        public var signedBytes: Data {
            guard let tokenHash else { return PeerTrust.signedText("campusgrid-user-untokened-v2", [user, key, "\(expires)"]) }
            return PeerTrust.signedText("campusgrid-user-v3", [user, key, "\(expires)", tokenHash])
        }
    }

    /// What the manager grants a person's key: its certificate, a forwarding ticket for the peer it is about to talk to
    /// (so that peer may hand the person's tasks on), and the manager's public key, with which the client checks that
    /// the peer is the worker it says before it proves anything to it.
    public struct Grant: Hashable, Sendable, Codable {
        public var certificate: UserCertificate
        public var forward: Ticket?
        public var managerKey: String
        public init(certificate: UserCertificate, forward: Ticket?, managerKey: String) {
            self.certificate = certificate
            self.forward = forward
            self.managerKey = managerKey
        }
    }

    /// A grant with the private key its certificate names: what a client opens a session with. `delegationSeconds`:
    /// how long the peer may read this person's data from other peers (nil: not at all; a client that only runs tasks
    /// or writes gives none).
    public struct Pass: Sendable {
        public var grant: Grant
        public var signer: Signer
        public var delegationSeconds: Int64?
        /// How long the peer may write this person's data (`WriteGrant`; nil: not at all: a client that only reads or
        /// runs tasks gives none), at most `writeGrantSeconds`.
        public var writeSeconds: Int64?
        public init(
            grant: Grant, signer: Signer, delegationSeconds: Int64? = PeerTrust.delegationSeconds, writeSeconds: Int64? = PeerTrust.writeGrantSeconds
        ) {
            self.grant = grant
            self.signer = signer
            self.delegationSeconds = delegationSeconds
            self.writeSeconds = writeSeconds
        }

        /// The `SESSION` for peer `holder`, whose `HELLO_OK` carried `nonce`: the proof, and, when this pass gives one,
        /// a delegation that lets that peer read this person's data from other peers (no longer than the certificate).
        public func session(holder: String, nonce: String, now: Int64) -> Msg.Session {
            let user = grant.certificate.user
            let delegation = delegationSeconds.map { seconds -> Delegation in
                var d = Delegation(holder: holder, expires: min(now + max(0, seconds), grant.certificate.expires), signature: "")
                d.signature = signer.sign(d.signedBytes(user: user))
                return d
            }
            let write = writeSeconds.map { seconds -> WriteGrant in
                let expires = min(now + min(max(0, seconds), writeGrantSeconds), grant.certificate.expires)
                var w = WriteGrant(holder: holder, expires: expires, signature: "")
                w.signature = signer.sign(w.signedBytes(user: user))
                return w
            }
            return Msg.Session(
                certificate: grant.certificate, proof: signer.sign(PeerTrust.sessionChallenge(nonce: nonce, holder: holder, user: user)),
                forward: grant.forward?.holder == holder ? grant.forward : nil, delegation: delegation, writeGrant: write)
        }
    }

    /// A person's word, signed with the key of their certificate: "peer `holder` may write my data (values, files,
    /// deletions) until `expires`". It comes with `SESSION` from a client that writes, and is what that peer seals
    /// the person's writes under (`Authority`): every replica checks it, so a peer the person only read through, or
    /// ran tasks on, can write nothing in their name, and one they wrote through only within the grant.
    public struct WriteGrant: Hashable, Sendable, Codable {
        public var holder: String
        public var expires: Int64
        public var signature: String
        public init(holder: String, expires: Int64, signature: String) {
            self.holder = holder
            self.expires = expires
            self.signature = signature
        }

        public func signedBytes(user: String) -> Data { PeerTrust.signedText("campusgrid-write-grant-v1", [user, holder, "\(expires)"]) }
    }

    /// How long a write grant counts for at most: an entry sealed under one is versioned within this before its expiry.
    public static let writeGrantSeconds: Int64 = 3600

    /// A person's word, signed with the key of their certificate: "peer `holder` may read my data from other peers
    /// until `expires`". It comes with `SESSION`, and needs no manager, so a peer serves its users' reads while no
    /// manager is reachable.
    public struct Delegation: Hashable, Sendable, Codable {
        public var holder: String
        public var expires: Int64
        public var signature: String
        public init(holder: String, expires: Int64, signature: String) {
            self.holder = holder
            self.expires = expires
            self.signature = signature
        }

        public func signedBytes(user: String) -> Data { PeerTrust.signedText("campusgrid-delegation-v2", [user, holder, "\(expires)"]) }
    }

    /// What a peer shows another to read a person's data there (`MEM_FETCH`, `LIST_MEM`): a ticket the manager signed
    /// for it (at `AUTH_CHECK`, `SESSION`, or with a job's `JOB_ASSIGN`), or the person's certificate with their
    /// delegation to it.
    public struct Mandate: Hashable, Sendable, Codable {
        public var ticket: Ticket?
        public var certificate: UserCertificate?
        public var delegation: Delegation?
        public init(ticket: Ticket? = nil, certificate: UserCertificate? = nil, delegation: Delegation? = nil) {
            self.ticket = ticket
            self.certificate = certificate
            self.delegation = delegation
        }

        /// The person it speaks for (unchecked).
        public var user: String? { ticket?.user ?? certificate?.user }

        /// A name for it that a peer which checked it may keep it under (`MemFetch.mandateRef`): its signatures, which
        /// nobody but its signers can make.
        public var ref: String {
            if let ticket { return "t:" + ticket.signature }
            return "d:" + (delegation?.signature ?? "") + ":" + (certificate?.signature ?? "")
        }

        /// When it stops counting (unchecked).
        public var expires: Int64 {
            if let ticket { return ticket.expires }
            return min(certificate?.expires ?? .min, delegation?.expires ?? .min)
        }
    }

    /// Which side of a peer handshake signs a nonce: the side that was connected to, or the side that connected.
    public enum Role: String, Sendable {
        case server
        case client
    }

    /// An Ed25519 private key: the manager's (signing credentials and tickets) or a worker's (proving itself).
    public struct Signer: Sendable {
        let key: Curve25519.Signing.PrivateKey

        /// A fresh random key.
        public init() { key = Curve25519.Signing.PrivateKey() }

        /// A key read back from its 32 raw bytes.
        public init(rawRepresentation: Data) throws {
            key = try Curve25519.Signing.PrivateKey(rawRepresentation: rawRepresentation)
        }

        /// The 32 raw bytes of the private key (to keep it in a file of mode 0600).
        public var rawRepresentation: Data { key.rawRepresentation }

        /// The public key, raw, base64: what credentials name and `HELLO_OK` hands out.
        public var publicKey: String { key.publicKey.rawRepresentation.base64EncodedString() }

        /// The seed every run of job `id` gets (`CAMPUSGRID_SEED`): keyed with this private key (HMAC-SHA256), so the
        /// same for every run and on every manager of the grid (they share the key), and no worker can tell from a
        /// run's seed which job it belongs to. (A fixed function of the id let a checker recognise a check run, and
        /// the job it checks, on sight.)
        public func jobSeed(for id: Int64) -> UInt32 {
            let mac = HMAC<SHA256>.authenticationCode(for: Data("campusgrid-job-seed-v1\n\(id)".utf8), using: SymmetricKey(data: key.rawRepresentation))
            return mac.withUnsafeBytes { raw in raw.prefix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) } }
        }

        /// A signature over `data`, base64.
        public func sign(_ data: Data) -> String {
            ((try? key.signature(for: data)) ?? Data()).base64EncodedString()
        }

        /// A credential for a worker (the manager's key signs it).
        public func credential(workerId: String, host: String, port: Int, key workerKey: String, now: Int64) -> Credential {
            var c = Credential(workerId: workerId, host: host, port: port, key: workerKey, expires: now + credentialSeconds, signature: "")
            c.signature = sign(c.signedBytes)
            return c
        }

        /// A ticket letting peer `holder` act for `user` (the manager's key signs it).
        public func ticket(user: String, holder: String, now: Int64) -> Ticket {
            var t = Ticket(user: user, holder: holder, expires: now + ticketSeconds, signature: "")
            t.signature = sign(t.signedBytes)
            return t
        }

        /// A job's read ticket: peer `holder` (the job's worker) may read `user`'s grid files `files`, and nothing else.
        public func readTicket(user: String, holder: String, files: [String], now: Int64) -> Ticket {
            var t = Ticket(user: user, holder: holder, expires: now + ticketSeconds, signature: "", files: files)
            t.signature = sign(t.signedBytes)
            return t
        }

        /// What person `user` is granted for `key` (raw, base64): a certificate, and a forwarding ticket for peer
        /// `holder` when one is named (the manager's key signs both).
        /// `tokenHash`: the SHA-256 of the API token the person asked with (`UserCertificate.tokenHash`).
        public func grant(user: String, key: String, holder: String?, now: Int64, tokenHash: String? = nil) -> Grant {
            var c = UserCertificate(user: user, key: key, expires: now + userCertificateSeconds, signature: "", tokenHash: tokenHash)
            c.signature = sign(c.signedBytes)
            return Grant(certificate: c, forward: holder.map { ticket(user: user, holder: $0, now: now) }, managerKey: publicKey)
        }

        /// This worker's proof of its credential: its signature over the other side's nonce, for `role`; a connecting
        /// peer's (`.client`) names the worker it proves itself to (`audience`, from that one's checked credential).
        public func proof(nonce: String, workerId: String, role: Role, audience: String = "") -> String {
            sign(PeerTrust.challenge(nonce: nonce, workerId: workerId, role: role, audience: audience))
        }
    }

    /// Where a peer expects to find a worker: the id and the address `PEERS` lists for it.
    public struct Expected: Hashable, Sendable {
        public var workerId: String
        public var host: String
        public var port: Int
        public init(workerId: String, host: String, port: Int) {
            self.workerId = workerId
            self.host = host
            self.port = port
        }
    }

    /// Whether a person's session opened with `certificate` is over at `now`: the certificate expired (past the skew).
    /// Checked on each request, not only at `SESSION`.
    public static func sessionLapsed(certificate: UserCertificate, now: Int64) -> Bool {
        certificate.expires < now.subtractingSaturated(clockSkewSeconds)
    }

    /// Whether a peer's link, proven with a credential that expires at `credentialExpires`, serves nothing more at
    /// `now`: its credential expired (past the skew) and the manager no longer lists it among the peers. A member's link
    /// outlives its credential (it renews that with the manager); one that left, or was barred, does not.
    public static func peerLinkLapsed(credentialExpires: Int64?, isMember: Bool, now: Int64) -> Bool {
        guard !isMember else { return false }
        return (credentialExpires ?? .min) < now.subtractingSaturated(clockSkewSeconds)
    }

    /// The bytes a signature covers: a label of its own kind, then each field behind its length in bytes
    /// (`"12:w-0123456789\n"`), so that no field's content can move where the next begins. (Fields joined by newlines
    /// let a worker that chose the id `"w-victim\nx"` have the manager sign what read as the victim's credential.)
    public static func signedText(_ label: String, _ fields: [String]) -> Data {
        var text = label + "\n"
        for field in fields { text += "\(field.utf8.count):\(field)\n" }
        return Data(text.utf8)
    }

    /// Whether `signature` (base64) is `key`'s (base64, raw Ed25519) over `data`. Malformed input is simply false.
    public static func isValid(signature: String, over data: Data, key: String) -> Bool {
        guard let raw = Data(base64Encoded: key), let sig = Data(base64Encoded: signature),
            let pub = try? Curve25519.Signing.PublicKey(rawRepresentation: raw)
        else { return false }
        return pub.isValidSignature(sig, for: data)
    }

    /// Checks a credential: the manager signed it, it has not expired, and (when `expected` is given) it is for that
    /// worker at that address. Returns why not, or nil when it is good.
    public static func check(_ c: Credential, managerKey: String, now: Int64, expected: Expected? = nil) -> GridError? {
        guard isValid(signature: c.signature, over: c.signedBytes, key: managerKey) else {
            return GridError(.unauthorized, "the peer's credential was not signed by this grid's manager")
        }
        guard c.expires >= now - clockSkewSeconds else {
            return GridError(.unauthorized, "the peer's credential expired; it must renew it with the manager")
        }
        if let e = expected {
            guard c.workerId == e.workerId else {
                return GridError(.unauthorized, "the peer at \(e.host):\(e.port) is \(c.workerId), not \(e.workerId) as the manager lists")
            }
            guard c.host == e.host, c.port == e.port else {
                return GridError(.unauthorized, "the credential of \(c.workerId) is for \(c.host):\(c.port), not \(e.host):\(e.port)")
            }
        }
        return nil
    }

    /// Checks the whole answer of a peer that was connected to: a good credential for `expected`, and its proof over
    /// our `nonce`.
    public static func checkServer(credential: Credential?, proof: String?, nonce: String, managerKey: String, now: Int64, expected: Expected)
        -> GridError?
    {
        guard let credential, let proof else {
            return GridError(.unauthorized, "the peer at \(expected.host):\(expected.port) did not prove it is a worker of this grid")
        }
        if let e = check(credential, managerKey: managerKey, now: now, expected: expected) { return e }
        guard isValid(signature: proof, over: challenge(nonce: nonce, workerId: credential.workerId, role: .server), key: credential.key) else {
            return GridError(.unauthorized, "the peer at \(expected.host):\(expected.port) could not sign with its credential's key")
        }
        return nil
    }

    /// Checks a connecting peer's `PEER_AUTH`: a good credential (any worker of this grid) and its proof over the
    /// nonce we sent in `HELLO_OK`, made out to us (`audience`, this worker's id): a proof a worker made for another
    /// peer, which that one relayed here with our nonce in its own `HELLO_OK`, does not pass.
    public static func checkClient(
        credential: Credential, proof: String, nonce: String, managerKey: String, now: Int64, audience: String, link: LinkIdentity
    ) -> GridError? {
        if let e = check(credential, managerKey: managerKey, now: now) { return e }
        guard
            isValid(
                signature: proof, over: challenge(nonce: nonce, workerId: credential.workerId, role: .client, audience: audience), key: credential.key)
        else {
            return GridError(.unauthorized, "the connecting peer could not sign with its credential's key")
        }
        return checkLink(link, proves: credential.workerId)
    }

    /// Over TLS, whether the certificate the other side of a link showed (from the grid's peer CA) names the worker it
    /// proves itself to be: a worker that relays another's handshake (a man in the middle with a certificate of its
    /// own) is caught, whichever side it sits on. A link with no certificate on a TLS grid names nobody, and is refused.
    /// Plain text says nothing (nil).
    public static func checkLink(_ link: LinkIdentity, proves workerId: String) -> GridError? {
        guard case .certificate(let name) = link, name != workerId else { return nil }
        return GridError(
            .unauthorized, "the peer's certificate is \(name ?? "nobody")'s but it proves \(workerId): it relays another worker")
    }

    /// Checks a ticket presented by peer `holder`: the manager signed it, for this holder, and it has not expired.
    public static func check(_ t: Ticket, managerKey: String, holder: String, now: Int64) -> GridError? {
        guard isValid(signature: t.signature, over: t.signedBytes, key: managerKey) else {
            return GridError(.forbidden, "the user ticket was not signed by this grid's manager")
        }
        return checkClaims(t, holder: holder, now: now)
    }

    /// The checks of a ticket other than its signature: for this holder, not expired.
    static func checkClaims(_ t: Ticket, holder: String, now: Int64) -> GridError? {
        guard t.holder == holder else {
            return GridError(.forbidden, "the user ticket was given to peer \(t.holder), not to \(holder)")
        }
        guard t.expires > now else { return GridError(.forbidden, "the user ticket expired") }
        return nil
    }

    /// How long a nonce a peer or a client may send is, in bytes (a fresh one is 32 hex digits).
    public static let nonceBytes = 16...128

    /// Whether `nonce` may be signed into a proof: `nonceBytes` long, ASCII letters and digits only (no separator
    /// of the signed text can hide in it).
    public static func isWellFormed(nonce: String) -> Bool {
        nonceBytes.contains(nonce.utf8.count) && nonce.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) }
    }

    /// Whether `key` is an Ed25519 public key (raw, base64): what a person's certificate may name.
    public static func isWellFormed(key: String) -> Bool {
        key.utf8.count <= 64 && Data(base64Encoded: key).flatMap { try? Curve25519.Signing.PublicKey(rawRepresentation: $0) } != nil
    }

    /// What person `user` signs to open a session at peer `holder` on the connection where it sent `nonce` (the user
    /// too: a certificate another user got for the same public key cannot take the proof over).
    public static func sessionChallenge(nonce: String, holder: String, user: String) -> Data {
        signedText("campusgrid-session-v2", [user, holder, nonce])
    }

    /// Checks a `SESSION` shown to peer `holder` on the connection where it sent `nonce`: the manager signed the
    /// person's certificate, in date; the certificate's key signed this peer's id and nonce; a forwarding ticket, when
    /// one comes, is the manager's, for this peer and the same person (otherwise the session is refused: it was
    /// tampered with). nil: the session is the certificate's user's.
    public static func check(_ session: Msg.Session, managerKey: String, holder: String, nonce: String, now: Int64) -> GridError? {
        let c = session.certificate
        guard isValid(signature: c.signature, over: c.signedBytes, key: managerKey) else {
            return GridError(.unauthorized, "the user certificate was not signed by this grid's manager")
        }
        guard c.expires >= now - clockSkewSeconds else {
            return GridError(.unauthorized, "the user certificate expired; reach the manager once (any command) for a new one")
        }
        guard isValid(signature: session.proof, over: sessionChallenge(nonce: nonce, holder: holder, user: c.user), key: c.key) else {
            return GridError(.unauthorized, "the session was not signed with the certificate's key for this peer and this connection")
        }
        if let d = session.delegation {
            guard d.holder == holder, isValid(signature: d.signature, over: d.signedBytes(user: c.user), key: c.key) else {
                return GridError(.unauthorized, "the delegation is not the certificate key's for this peer")
            }
        }
        if let w = session.writeGrant {
            guard w.holder == holder, isValid(signature: w.signature, over: w.signedBytes(user: c.user), key: c.key) else {
                return GridError(.unauthorized, "the write grant is not the certificate key's for this peer")
            }
        }
        if let forward = session.forward {
            guard forward.user == c.user else {
                return GridError(.unauthorized, "the forwarding ticket is for \(forward.user), not for \(c.user)")
            }
            if let e = check(forward, managerKey: managerKey, holder: holder, now: now) { return GridError(.unauthorized, e.message) }
        }
        return nil
    }

    /// The signatures of a mandate: the manager's over its ticket or certificate, and the person's (the certificate's
    /// key) over their delegation. nil: both good. (Holder and expiry: `checkClaims`.)
    public static func checkSignatures(_ m: Mandate, managerKey: String) -> GridError? {
        if let t = m.ticket {
            return isValid(signature: t.signature, over: t.signedBytes, key: managerKey)
                ? nil : GridError(.forbidden, "the ticket was not signed by this grid's manager")
        }
        guard let c = m.certificate, let d = m.delegation else {
            return GridError(.forbidden, "a mandate is a ticket, or a certificate with its delegation")
        }
        guard isValid(signature: c.signature, over: c.signedBytes, key: managerKey) else {
            return GridError(.forbidden, "the user certificate was not signed by this grid's manager")
        }
        guard isValid(signature: d.signature, over: d.signedBytes(user: c.user), key: c.key) else {
            return GridError(.forbidden, "the delegation was not signed with the certificate's key")
        }
        return nil
    }

    /// Whom a reading peer reads for: the person, and, for a job's read ticket, the only grid files it may read.
    public struct Reader: Sendable, Equatable {
        public var user: String
        public var files: [String]?
        /// The person's certificate, when the mandate was one with a delegation: it stands only while the token it
        /// was granted under does (`Standing`), which is asked again however the mandate is named later.
        public var certificate: UserCertificate?
        public init(user: String, files: [String]? = nil, certificate: UserCertificate? = nil) {
            self.user = user
            self.files = files
            self.certificate = certificate
        }
    }

    /// The claims of a mandate whose signatures are good: for peer `holder`, not expired. Returns whom it lets the
    /// peer read for.
    public static func checkClaims(_ m: Mandate, holder: String, now: Int64) -> Result<Reader, GridError> {
        if let t = m.ticket {
            // Only a job's read ticket reads, and only its files. A forwarding ticket lets its holder hand the person's
            // tasks on, never read their data: a peer a person merely wrote to would otherwise list and read it all.
            guard let files = t.files else {
                return .failure(GridError(.forbidden, "a forwarding ticket reads nothing; reading needs the person's delegation"))
            }
            if let e = checkClaims(t, holder: holder, now: now) { return .failure(e) }
            return .success(Reader(user: t.user, files: files))
        }
        guard let c = m.certificate, let d = m.delegation else {
            return .failure(GridError(.forbidden, "a mandate is a ticket, or a certificate with its delegation"))
        }
        guard d.holder == holder else { return .failure(GridError(.forbidden, "the delegation is for peer \(d.holder), not for \(holder)")) }
        guard d.expires > now, c.expires >= now - clockSkewSeconds else { return .failure(GridError(.forbidden, "the delegation expired")) }
        return .success(Reader(user: c.user, certificate: c))
    }

    /// Whether `ticket` may come with a forwarded task: an ordinary ticket, not a job's read ticket (which lets a
    /// worker read the job's input files, never act as the job's owner).
    public static func checkForwarding(_ ticket: Ticket) -> GridError? {
        ticket.files == nil ? nil : GridError(.forbidden, "a job's read ticket forwards no task; it only reads that job's input files")
    }

    /// Checks, on a person's side, the peer's answer to `HELLO {nonce}` before any ticket is shown to it: the manager
    /// (`managerKey`) signed its credential, in date, for the worker it says it is; it signed our `nonce` with that
    /// credential's key; over TLS, its certificate names that same worker, so a peer that relays another's handshake is
    /// caught; and, when the address dialled (`host:port`) and the one the manager lists for that worker are both IP
    /// addresses and the dialled one is not loopback, they are the same, so traffic for one worker redirected to
    /// another's peer port (ARP spoofing) is caught too. (A name is not resolved here, and on loopback a tunnel or a
    /// forwarded port is the user's own doing.) `worker`: the id the grant was asked for. nil: the person may prove
    /// itself.
    public static func checkPeerForSession(
        _ ok: Msg.HelloOk, nonce: String, managerKey: String, now: Int64, worker: String, link: LinkIdentity, host: String, port: Int
    ) -> GridError? {
        guard let credential = ok.credential, let proof = ok.proof else {
            return GridError(.unauthorized, "the peer did not prove which worker it is; nothing was sent")
        }
        if let e = check(credential, managerKey: managerKey, now: now) { return e }
        guard credential.workerId == ok.workerId, credential.workerId == worker else {
            return GridError(.unauthorized, "the peer says it is \(ok.workerId) but proves \(credential.workerId); nothing was sent")
        }
        guard isValid(signature: proof, over: challenge(nonce: nonce, workerId: credential.workerId, role: .server), key: credential.key) else {
            return GridError(.unauthorized, "the peer could not sign with \(credential.workerId)'s key; nothing was sent")
        }
        if let e = checkLink(link, proves: credential.workerId) { return GridError(e.code, e.message + "; nothing was sent") }
        let compared = isIPAddress(host) && !isLoopback(host) && isIPAddress(credential.host)
        if compared && (credential.host != host || credential.port != port) {
            return GridError(
                .unauthorized,
                "the peer at \(host):\(port) is \(credential.workerId), whom the manager lists at \(credential.host):\(credential.port); "
                    + "nothing was sent (dial the address `campusgrid workers` shows)")
        }
        return nil
    }

    /// Whether `host` is an IPv4 or IPv6 address written out (not a name).
    static func isIPAddress(_ host: String) -> Bool {
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count == 4, parts.allSatisfy({ !$0.isEmpty && $0.count <= 3 && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }) { return true }
        return host.contains(":") && host.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isASCIIHexDigit || $0 == ":" || $0 == ".") }
    }

    /// Whether `host` names this machine's loopback.
    static func isLoopback(_ host: String) -> Bool { host == "localhost" || host == "::1" || host.hasPrefix("127.") }

    /// What the link itself says of the peer at its other end.
    public enum LinkIdentity: Sendable, Equatable {
        /// Plain text: nothing.
        case plainText
        /// TLS: the worker id its certificate (from the grid's peer CA) names, nil when it names none.
        case certificate(String?)
    }

    /// What a side of the handshake signs: a label, its role, its worker id, the worker it proves itself to (the
    /// connecting side knows it; empty for the answering side) and the other side's nonce (so a proof cannot be replayed
    /// in the other direction, by another worker, on another connection, or relayed to a third worker).
    public static func challenge(nonce: String, workerId: String, role: Role, audience: String = "") -> Data {
        signedText("campusgrid-peer-proof-v2", [role.rawValue, workerId, audience, nonce])
    }

    /// What a forwarding peer signs for a request made on a user's behalf: a label, the ticket's signature (binding
    /// the request to that ticket) and the SHA-256 of the request's canonical JSON.
    public static func requestBytes(ticket: Ticket, requestJSON: Data) -> Data {
        let digest = Hex.string(SHA256.hash(data: requestJSON))
        return signedText("campusgrid-request-v2", [ticket.signature, digest])
    }

    /// Whether `renewAt` has come for a credential: less than half its life is left.
    public static func needsRenewal(_ c: Credential?, now: Int64) -> Bool {
        guard let c else { return true }
        return c.expires < now + credentialSeconds / 2
    }

    /// A fresh random nonce (128 bits, hex).
    public static func nonce() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<2).map { _ in String(format: "%016llx", g.next() as UInt64) }.joined()
    }
}

extension PeerTrust {
    /// Tickets (or mandates) whose signatures this peer has already checked, under one manager key, so that a peer
    /// forwarding many tasks with one ticket costs one Ed25519 verification rather than one per task (issue 17: the
    /// verifications were a few percent of the task path), and a peer reading many keys with one mandate likewise.
    /// The holder and the expiry are still checked at every use; an item differing in any field, signature included,
    /// is not the one remembered; a new manager key forgets all.
    public struct SignedMemo<Item: Hashable & Sendable>: Sendable {
        public private(set) var managerKey: String?
        private var good: Set<Item> = []
        /// At most this many items are remembered (the expired ones are dropped first, then all).
        public static var capacity: Int { 1024 }

        public init() {}

        public var count: Int { good.count }

        /// Whether `item`'s signatures were found good under `managerKey` before; if not, `verify` checks them, and
        /// the item is remembered when they are good. nil: good.
        mutating func signatures(_ item: Item, managerKey: String, now: Int64, expires: (Item) -> Int64, verify: (Item) -> GridError?) -> GridError? {
            if managerKey != self.managerKey {
                good = []
                self.managerKey = managerKey
            }
            if good.contains(item) { return nil }
            if let e = verify(item) { return e }
            if good.count >= Self.capacity {
                good = good.filter { expires($0) > now }
                if good.count >= Self.capacity { good = [] }
            }
            good.insert(item)
            return nil
        }
    }

    public typealias TicketMemo = SignedMemo<Ticket>
    public typealias MandateMemo = SignedMemo<Mandate>
}

extension PeerTrust.SignedMemo where Item == PeerTrust.Ticket {
    /// `PeerTrust.check`, verifying the signature only for a ticket not already found good under `managerKey`.
    public mutating func check(_ t: PeerTrust.Ticket, managerKey: String, holder: String, now: Int64) -> GridError? {
        if let e = signatures(t, managerKey: managerKey, now: now, expires: \.expires, verify: {
            PeerTrust.isValid(signature: $0.signature, over: $0.signedBytes, key: managerKey)
                ? nil : GridError(.forbidden, "the user ticket was not signed by this grid's manager")
        }) { return e }
        return PeerTrust.checkClaims(t, holder: holder, now: now)
    }
}

extension PeerTrust.SignedMemo where Item == PeerTrust.Mandate {
    /// The person a mandate shown by peer `holder` speaks for, its signatures verified only when not already found
    /// good under `managerKey`.
    public mutating func check(_ m: PeerTrust.Mandate, managerKey: String, holder: String, now: Int64) -> Result<PeerTrust.Reader, GridError> {
        if let e = signatures(m, managerKey: managerKey, now: now, expires: \.expires, verify: { PeerTrust.checkSignatures($0, managerKey: managerKey) }) {
            return .failure(e)
        }
        return PeerTrust.checkClaims(m, holder: holder, now: now)
    }
}

extension PeerTrust {
    /// Mandates other peers showed this one (`MEM_FETCH`), checked, kept by peer and reference (`Mandate.ref`), so that
    /// a peer reading again for the same person names the mandate by its reference alone (`MemFetch.mandateRef`).
    /// A reference stands for a mandate only from the peer that showed it, and only until the mandate expires; at
    /// most `perPeer` are kept for each peer. Pure: times are passed in.
    public struct ShownMandates: Sendable {
        public static let perPeer = 256
        private var byPeer: [String: [String: (reader: Reader, expires: Int64)]] = [:]

        public init() {}

        /// Keeps `mandate`, already checked and found to let `peer` read for `reader`.
        public mutating func keep(_ mandate: Mandate, reader: Reader, from peer: String, now: Int64) {
            var kept = byPeer[peer, default: [:]]
            if kept.count >= Self.perPeer { kept = kept.filter { $0.value.expires > now } }
            if kept.count >= Self.perPeer { kept = [:] }
            kept[mandate.ref] = (reader, mandate.expires)
            byPeer[peer] = kept
        }

        /// Whom the mandate `peer` showed under `ref` lets it read for; nil when it showed none (or it expired).
        public mutating func reader(_ ref: String, from peer: String, now: Int64) -> Reader? {
            guard let (reader, expires) = byPeer[peer]?[ref] else { return nil }
            guard expires > now else {
                byPeer[peer]?[ref] = nil
                return nil
            }
            return reader
        }

        /// Forgets the mandates of peers no longer online.
        public mutating func keepOnly(peers: Set<String>) { byPeer = byPeer.filter { peers.contains($0.key) } }

        public func count(from peer: String) -> Int { byPeer[peer]?.count ?? 0 }
    }
}
