import Crypto
public import Foundation
public import GridCore
import SwiftASN1
import X509

/// Trust in the manager's certificate authority, decided without I/O: a CA is named by the SHA-256 of its DER
/// certificate (`sha256:` and 64 hex digits, as kubeadm's discovery hash); a join string carries that name, and a
/// worker trusts a TLS peer only if the chain it presents holds that CA and the CA signed its leaf, in date.
public enum ManagerTrust {
    /// `sha256:<hex>` of a DER certificate.
    public static func fingerprint(der: some Sequence<UInt8>) -> String {
        "sha256:" + Hex.string(SHA256.hash(data: Array(der)))
    }

    /// Whether `text` looks like a fingerprint (`sha256:` and 64 lower-case hex digits; upper case is accepted).
    public static func normalise(fingerprint text: String) -> String? {
        let lower = text.lowercased()
        guard lower.hasPrefix("sha256:") else { return nil }
        let hex = lower.dropFirst(7)
        guard hex.count == 64, hex.allSatisfy({ $0.isHexDigit }) else { return nil }
        return lower
    }

    /// Checks a chain a TLS peer presented (DER, leaf first) against the CA pinned by `fingerprint`: the chain must
    /// carry that CA, and the CA must have signed the leaf, which must be valid at `now`. nil: trusted; otherwise the
    /// refusal, which names both fingerprints when the CA is not the pinned one.
    public static func check(chain: [[UInt8]], pinned fingerprint: String, now: Date) -> GridError? {
        guard let leafDER = chain.first else { return GridError(.unauthorized, "the manager presented no certificate") }
        let pinned = normalise(fingerprint: fingerprint) ?? fingerprint
        guard let caDER = chain.first(where: { Self.fingerprint(der: $0) == pinned }) else {
            let presented = chain.count > 1 ? Self.fingerprint(der: chain[chain.count - 1]) : Self.fingerprint(der: leafDER)
            return GridError(
                .unauthorized,
                "the manager's certificate authority is \(presented), but the join string pins \(pinned): this is not the manager "
                    + "the join string was made for (or its CA was replaced); nothing was sent. Ask for a new join string "
                    + "(`campusgrid token create --worker`) if the manager really changed")
        }
        if let error = verify(leaf: leafDER, ca: caDER, now: now) { return error }
        // A peer port's certificate (a worker owner holds one, and its key) never stands for the manager, whichever CA
        // signed it: the grid's own peer CA does now, but the manager's CA signed them before, and those last 30 days.
        if let leaf = try? Certificate(derEncoded: leafDER), leaf != (try? Certificate(derEncoded: caDER)), isPeerCertificate(leaf) {
            return GridError(
                .unauthorized,
                "the certificate presented (\(leaf.subject)) is a worker's peer certificate, not the manager's: someone is posing as "
                    + "the manager; nothing was sent")
        }
        return nil
    }

    /// Whether `der` is a root: its issuer is its subject and its own key signed it (a private CA, the manager's
    /// own). An operator's chain that ends below a root (a public CA's intermediate, which signs anyone's certificate)
    /// cannot be pinned as the manager's identity: the manager's certificate itself is then (`ManagerTLS.load`).
    public static func isRoot(der: [UInt8]) -> Bool {
        guard let certificate = try? Certificate(derEncoded: der), certificate.issuer == certificate.subject else { return false }
        return certificate.publicKey.isValidSignature(certificate.signature, for: certificate)
    }

    /// Whether `chain` (DER, leaf first) has the shape of a grid's own: the manager's certificate and the root that
    /// signed it, nothing else (what `ManagerCA` makes). Only such a chain is trusted on first use.
    public static func isGridShape(_ chain: [[UInt8]]) -> Bool {
        guard chain.count == 2, isRoot(der: chain[1]) else { return false }
        return verify(leaf: chain[0], ca: chain[1], now: Date()) == nil
    }

    /// The organisational unit of every peer-port certificate, and of the peer CA.
    public static let peerUnit = "peer"

    /// Whether `pem` (a certificate) is a grid's peer CA: a CA whose name says it is for peers.
    public static func isPeerAuthority(pem: String) -> Bool {
        guard let certificate = try? Certificate(pemEncoded: pem), isPeerCertificate(certificate) else { return false }
        return (try? certificate.extensions.basicConstraints).map { if case .isCertificateAuthority = $0 { true } else { false } } ?? false
    }

    /// The worker a peer port's certificate (DER) names: its common name, when its subject says it is a peer's; nil
    /// for any other certificate. (The peer CA, which the client trusts, checked the chain already.)
    public static func peerWorkerId(certificate der: [UInt8]) -> String? {
        guard let certificate = try? Certificate(derEncoded: der), isPeerCertificate(certificate) else { return nil }
        for rdn in certificate.subject {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName { return String(describing: attribute.value) }
        }
        return nil
    }

    /// Whether `certificate` names itself a peer port's (its subject's organisational unit is `peerUnit`).
    static func isPeerCertificate(_ certificate: Certificate) -> Bool {
        certificate.subject.contains { rdn in
            rdn.contains { $0.type == .RDNAttributeType.organizationalUnitName && String(describing: $0.value) == peerUnit }
        }
    }

    /// Whether `leaf` was signed by `ca` and is valid at `now` (both DER). nil: yes.
    public static func verify(leaf leafDER: [UInt8], ca caDER: [UInt8], now: Date) -> GridError? {
        guard let ca = try? Certificate(derEncoded: caDER), let leaf = try? Certificate(derEncoded: leafDER) else {
            return GridError(.unauthorized, "the presented certificate does not parse")
        }
        if leafDER == caDER {
            return ca.notValidBefore <= now && now <= ca.notValidAfter ? nil : GridError(.unauthorized, "the CA certificate is out of date")
        }
        guard leaf.issuer == ca.subject, ca.publicKey.isValidSignature(leaf.signature, for: leaf) else {
            return GridError(.unauthorized, "the certificate (\(leaf.subject)) was not issued by the grid's CA (\(ca.subject))")
        }
        guard leaf.notValidBefore <= now, now <= leaf.notValidAfter else {
            return GridError(.unauthorized, "the certificate (\(leaf.subject)) is not valid now (\(leaf.notValidBefore)…\(leaf.notValidAfter))")
        }
        return nil
    }
}

/// Trust on first use for the CLI (as SSH does for hosts): what to do with the CA fingerprints an `https` manager
/// presents, given the one trusted for its URL before (if any). Pure.
public enum FirstUse: Sendable, Hashable {
    /// Never seen: trust `fingerprint` from now on, and say so.
    case trustNew(fingerprint: String)
    /// The chain carries the CA trusted before.
    case same
    /// The chain does not carry the CA trusted before: refuse, naming both.
    case changed(trusted: String, presented: String)

    /// `presented`: fingerprints of the chain, leaf first (its last one is the CA trusted on first use).
    public static func decide(trusted: String?, presented: [String]) -> FirstUse? {
        guard let top = presented.last else { return nil }
        guard let trusted else { return .trustNew(fingerprint: top) }
        return presented.contains(trusted) ? .same : .changed(trusted: trusted, presented: top)
    }

    /// The fingerprint of a PEM certificate (the first one in `pem`), or nil when it does not decode.
    public static func fingerprint(pem: String) -> String? {
        let lines = pem.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        let body = lines.drop { !$0.hasPrefix("-----BEGIN CERTIFICATE") }.dropFirst().prefix { !$0.hasPrefix("-----END") }.joined()
        guard let der = Data(base64Encoded: body), !der.isEmpty else { return nil }
        return ManagerTrust.fingerprint(der: der)
    }
}

/// What `campusgrid token create --worker` prints and `worker` takes: the join token and the fingerprint of the
/// manager's CA, `TOKEN@sha256:HEX`. A bare token (no `@`) is accepted where plain text is allowed.
public struct JoinString: Sendable, Hashable, CustomStringConvertible {
    public var token: String
    public var caFingerprint: String?

    public init(token: String, caFingerprint: String?) {
        self.token = token
        self.caFingerprint = caFingerprint
    }

    public init(parsing text: String) throws(GridError) {
        let text = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let at = text.firstIndex(of: "@") else {
            self.init(token: text, caFingerprint: nil)
            return
        }
        let token = String(text[..<at])
        guard !token.isEmpty, let fp = ManagerTrust.normalise(fingerprint: String(text[text.index(after: at)...])) else {
            throw GridError(.badRequest, "a join string is TOKEN@sha256:<64 hex digits> (from `campusgrid token create --worker`)")
        }
        self.init(token: token, caFingerprint: fp)
    }

    public var description: String { caFingerprint.map { "\(token)@\($0)" } ?? token }
}

/// Whether a listener speaks TLS: pure, from where it binds and what the operator asked for. Loopback may stay plain
/// text (everything on one machine, as `up` runs it) and says so; anything bound beyond loopback is TLS unless the
/// operator explicitly chose `--insecure-plaintext`, and then every start logs a warning.
public enum TransportChoice: Sendable, Hashable {
    case tls
    /// Plain text on loopback only.
    case plaintextLoopback
    /// Plain text beyond loopback, because the operator said `--insecure-plaintext`.
    case plaintextInsecure

    public static func decide(bindHost: String, tlsAsked: Bool, insecurePlaintext: Bool) -> TransportChoice {
        if tlsAsked { return .tls }
        if isLoopback(bindHost) { return .plaintextLoopback }
        return insecurePlaintext ? .plaintextInsecure : .tls
    }

    public var isTLS: Bool { self == .tls }

    /// What a process says at start about its choice (nil for TLS).
    public func notice(_ what: String) -> String? {
        switch self {
        case .tls: nil
        case .plaintextLoopback: "\(what) speaks plain text on loopback only (nothing leaves this machine); pass --tls to encrypt it anyway"
        case .plaintextInsecure:
            "WARNING: \(what) speaks PLAIN TEXT beyond loopback (--insecure-plaintext): tokens, passwords and data cross the network unencrypted"
        }
    }

    /// How a worker reaches its manager: TLS pinned to the join string's CA when it carries one; else plain text to a
    /// loopback manager, or beyond loopback only with `--insecure-plaintext`. A worker never sends its token in clear
    /// text across the network by default.
    public static func forWorker(managerHost: String, pinned: Bool, insecurePlaintext: Bool) -> Result<TransportChoice, GridError> {
        if pinned { return .success(.tls) }
        if isLoopback(managerHost) { return .success(.plaintextLoopback) }
        if insecurePlaintext { return .success(.plaintextInsecure) }
        return .failure(
            GridError(
                .badRequest,
                "the join token carries no CA fingerprint, so the manager at \(managerHost) cannot be verified and the token would cross "
                    + "the network in clear text; use the join string from `campusgrid token create --worker` (TOKEN@sha256:…), "
                    + "or pass --insecure-plaintext to a manager started with it"))
    }

    public static func isLoopback(_ host: String) -> Bool {
        let h = host.lowercased()
        // 127.0.0.0/8 as an address only: a name that starts with "127." is anyone's.
        let v4 = h.hasPrefix("127.") && h.split(separator: ".", omittingEmptySubsequences: false).count == 4
            && h.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { !$0.isEmpty && $0.count <= 3 && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }
        return h == "localhost" || h == "::1" || h == "[::1]" || v4
    }
}
