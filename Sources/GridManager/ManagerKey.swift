import Foundation
import GridCore
import GridProtocol

/// The manager's Ed25519 key, which signs peer credentials and user tickets. Kept in `<data>/manager-key` (the 32 raw
/// bytes, mode 0600), made on first start; every worker learns the public half from `HELLO_OK`.
enum ManagerKey {
    static let fileName = "manager-key"

    /// The key in `directory`, made (and written with mode 0600) when there is none. A key file that is not exactly
    /// 32 bytes, or that others may read, is refused rather than silently replaced or used.
    static func loadOrCreate(directory: String) throws -> PeerTrust.Signer {
        let path = (directory as NSString).appendingPathComponent(fileName)
        let fm = FileManager.default
        if fm.fileExists(atPath: path) {
            let attributes = try fm.attributesOfItem(atPath: path)
            if let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue, mode & 0o077 != 0 {
                throw GridError(.internal, "\(path) may be read by other users (mode \(String(mode, radix: 8))); run `chmod 600 \(path)`")
            }
            guard let data = fm.contents(atPath: path), data.count == 32 else {
                throw GridError(.internal, "\(path) is not a manager key (32 bytes); move it away to make a new one")
            }
            return try PeerTrust.Signer(rawRepresentation: data)
        }
        let signer = PeerTrust.Signer()
        // Mode 0600 from the moment the file exists (`PrivateFile`): the key is never readable by others.
        try PrivateFile.write(signer.rawRepresentation, to: path)
        return signer
    }
}
