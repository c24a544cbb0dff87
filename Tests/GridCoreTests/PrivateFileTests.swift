import Foundation
import GridCore
import Testing

/// `PrivateFile`: a secret's file is its owner's alone from the moment it exists, and replaced whole.
@Suite struct PrivateFileTests {
    func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    @Test func aNewFileAndItsNewFolderAreTheOwnersAlone() throws {
        let root = NSTemporaryDirectory() + "private-file-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = root + "/deep/key"
        try PrivateFile.write(Data("secret".utf8), to: path)
        #expect(try mode(path) == 0o600)
        #expect(try mode(root + "/deep") == 0o700)
        #expect(FileManager.default.contents(atPath: path) == Data("secret".utf8))
        #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/deep") == ["key"], "no temporary file is left")
    }

    @Test func anExistingReadableFileIsReplacedByAPrivateOne() throws {
        let root = NSTemporaryDirectory() + "private-file-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = root + "/credentials.json"
        FileManager.default.createFile(atPath: path, contents: Data("old, and longer than the new".utf8), attributes: [.posixPermissions: 0o644])
        try PrivateFile.write(Data("new".utf8), to: path)
        #expect(try mode(path) == 0o600)
        #expect(FileManager.default.contents(atPath: path) == Data("new".utf8))
    }

    @Test func aFolderThatCannotBeWrittenFailsWithTheReason() {
        #expect(throws: (any Error).self) { try PrivateFile.write(Data("x".utf8), to: "/proc/no-such-folder/key") }
    }
}
