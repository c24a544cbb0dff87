import Foundation

/// What a client's address counts as when its requests or connections are limited.
public enum ClientAddress {
    /// The key an address is limited under: an IPv4 address as it is (also one mapped into IPv6), an IPv6 address by
    /// its /64 (one host is given a whole /64, so per address it had as many tries, or connections, as it liked).
    /// Anything unreadable is its own key.
    public static func key(_ address: String) -> String {
        guard address.contains(":") else { return address }
        var raw = in6_addr()
        guard inet_pton(AF_INET6, address, &raw) == 1 else { return address }
        let bytes = withUnsafeBytes(of: raw) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff {
            return bytes[12..<16].map { String($0) }.joined(separator: ".")
        }
        return stride(from: 0, to: 8, by: 2).map { String(format: "%02x%02x", bytes[$0], bytes[$0 + 1]) }.joined(separator: ":") + "::/64"
    }

    /// Whether `address` is this machine's own (127.0.0.0/8, ::1, or IPv4 loopback mapped into IPv6).
    public static func isLoopback(_ address: String) -> Bool {
        address == "::1" || address.hasPrefix("127.") || address.lowercased().hasPrefix("::ffff:127.")
    }
}
