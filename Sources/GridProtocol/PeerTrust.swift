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
            Data("campusgrid-credential-v1\n\(workerId)\n\(host)\n\(port)\n\(key)\n\(expires)".utf8)
        }
    }

    /// A user ticket, signed by the manager when peer `holder` checked `user`'s API token (`AUTH_CHECK`): `holder` may
    /// ask other peers to act for `user` until `expires`.
    public struct Ticket: Hashable, Sendable, Codable {
        public var user: String
        public var holder: String
        public var expires: Int64
        public var signature: String
        public init(user: String, holder: String, expires: Int64, signature: String) {
            self.user = user
            self.holder = holder
            self.expires = expires
            self.signature = signature
        }

        public var signedBytes: Data { Data("campusgrid-ticket-v1\n\(user)\n\(holder)\n\(expires)".utf8) }
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

        /// This worker's proof of its credential: its signature over the other side's nonce, for `role`.
        public func proof(nonce: String, workerId: String, role: Role) -> String {
            sign(PeerTrust.challenge(nonce: nonce, workerId: workerId, role: role))
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
    /// nonce we sent in `HELLO_OK`.
    public static func checkClient(credential: Credential, proof: String, nonce: String, managerKey: String, now: Int64) -> GridError? {
        if let e = check(credential, managerKey: managerKey, now: now) { return e }
        guard isValid(signature: proof, over: challenge(nonce: nonce, workerId: credential.workerId, role: .client), key: credential.key) else {
            return GridError(.unauthorized, "the connecting peer could not sign with its credential's key")
        }
        return nil
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

    /// What a side of the handshake signs: a label, its role, its worker id and the other side's nonce (so a proof
    /// cannot be replayed in the other direction, by another worker, or on another connection).
    public static func challenge(nonce: String, workerId: String, role: Role) -> Data {
        Data("campusgrid-peer-proof-v1\n\(role.rawValue)\n\(workerId)\n\(nonce)".utf8)
    }

    /// What a forwarding peer signs for a request made on a user's behalf: a label, the ticket's signature (binding
    /// the request to that ticket) and the SHA-256 of the request's canonical JSON.
    public static func requestBytes(ticket: Ticket, requestJSON: Data) -> Data {
        let digest = SHA256.hash(data: requestJSON).map { String(format: "%02x", $0) }.joined()
        return Data("campusgrid-request-v1\n\(ticket.signature)\n\(digest)".utf8)
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
    /// Tickets whose manager signature this peer has already checked, under one manager key, so that a peer
    /// forwarding many tasks with one ticket costs one Ed25519 verification rather than one per task (issue 17: the
    /// verifications were a few percent of the task path). The holder and the expiry are still checked at every use;
    /// a ticket differing in any field, signature included, is not the one remembered; a new manager key forgets all.
    public struct TicketMemo: Sendable {
        public private(set) var managerKey: String?
        private var good: Set<Ticket> = []
        /// At most this many tickets are remembered (the expired ones are dropped first, then all).
        public static let capacity = 1024

        public init() {}

        public var count: Int { good.count }

        /// `PeerTrust.check`, verifying the signature only for a ticket not already found good under `managerKey`.
        public mutating func check(_ t: Ticket, managerKey: String, holder: String, now: Int64) -> GridError? {
            if managerKey != self.managerKey {
                good = []
                self.managerKey = managerKey
            }
            if good.contains(t) { return PeerTrust.checkClaims(t, holder: holder, now: now) }
            if let e = PeerTrust.check(t, managerKey: managerKey, holder: holder, now: now) { return e }
            if good.count >= Self.capacity {
                good = good.filter { $0.expires > now }
                if good.count >= Self.capacity { good = [] }
            }
            good.insert(t)
            return nil
        }
    }
}
