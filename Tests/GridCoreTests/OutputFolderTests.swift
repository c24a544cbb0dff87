import Foundation
import GridCore
import Testing

/// `OutputFolder`: a job's outputs, named by a stranger's worker, land in the folder the user chose and nowhere else,
/// and never over a file already there.
@Suite struct OutputFolderTests {
    let root = NSTemporaryDirectory() + "output-folder-\(UUID().uuidString)"
    var fm: FileManager { .default }

    init() throws { try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true) }

    func contents(_ path: String) -> String? { fm.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) } }

    @Test func outputsAndTheirFoldersAreMadeInside() throws {
        defer { try? fm.removeItem(atPath: root) }
        let folder = try OutputFolder(root + "/job-7", fresh: true)
        #expect(try folder.write(Data("a".utf8), name: "result.txt") == root + "/job-7/result.txt")
        try folder.write(Data("b".utf8), name: "plots/epoch 1/loss.png")
        #expect(!fm.fileExists(atPath: root + "/job-7"), "nothing named job-7 until every output is in")
        try folder.finish()
        #expect(contents(root + "/job-7/result.txt") == "a")
        #expect(contents(root + "/job-7/plots/epoch 1/loss.png") == "b")
    }

    @Test func aDefaultFolderThatExistsIsRefusedAndANamedOneIsUsed() throws {
        defer { try? fm.removeItem(atPath: root) }
        // Another local user may have made `job-7` in a shared folder, as a link to the victim's home.
        try fm.createSymbolicLink(atPath: root + "/job-7", withDestinationPath: root)
        let error = #expect(throws: GridError.self) { try OutputFolder(root + "/job-7", fresh: true) }
        #expect(error?.message.contains("already exists") == true)
        try fm.createDirectory(atPath: root + "/mine", withIntermediateDirectories: false)
        try OutputFolder(root + "/mine", fresh: false).write(Data("x".utf8), name: "x.txt")
        #expect(contents(root + "/mine/x.txt") == "x")
        fm.createFile(atPath: root + "/file", contents: Data())
        #expect(throws: GridError.self) { try OutputFolder(root + "/file", fresh: false) }
    }

    @Test func anExistingFileIsNeverOverwritten() throws {
        defer { try? fm.removeItem(atPath: root) }
        // The user saves into a repository: the worker names an output `.git/config` (with a hook command in it).
        try fm.createDirectory(atPath: root + "/repo/.git", withIntermediateDirectories: true)
        fm.createFile(atPath: root + "/repo/.git/config", contents: Data("[core]\n".utf8))
        let folder = try OutputFolder(root + "/repo", fresh: false)
        let error = #expect(throws: GridError.self) { try folder.write(Data("[core]\n\tfsmonitor = \"sh -c evil\"\n".utf8), name: ".git/config") }
        #expect(error?.message.contains("not overwritten") == true, "\(String(describing: error))")
        #expect(contents(root + "/repo/.git/config") == "[core]\n")
        // Nor a link planted where a new file would go.
        try fm.createSymbolicLink(atPath: root + "/repo/notes.txt", withDestinationPath: root + "/victim.txt")
        #expect(throws: GridError.self) { try folder.write(Data("x".utf8), name: "notes.txt") }
        #expect(!fm.fileExists(atPath: root + "/victim.txt"))
    }

    @Test func aLinkOnTheWayIsNeverFollowed() throws {
        defer { try? fm.removeItem(atPath: root) }
        try fm.createDirectory(atPath: root + "/outside", withIntermediateDirectories: true)
        let folder = try OutputFolder(root + "/job-8", fresh: true)
        try fm.createSymbolicLink(atPath: folder.filling + "/a", withDestinationPath: root + "/outside")
        let error = #expect(throws: GridError.self) { try folder.write(Data("x".utf8), name: "a/planted.txt") }
        #expect(error?.message.contains("is a link or not a folder") == true, "\(String(describing: error))")
        #expect(try fm.contentsOfDirectory(atPath: root + "/outside").isEmpty, "nothing was written through the link")
        // A name the validator refuses never reaches the disk.
        for bad in ["../escape.txt", "/etc/passwd", "a/../../x", "a\u{1B}b", ""] {
            #expect(throws: GridError.self, "\(String(reflecting: bad))") { try folder.write(Data("x".utf8), name: bad) }
        }
        #expect(!fm.fileExists(atPath: root + "/escape.txt"))
    }

    /// A download that fails part way leaves nothing under the default name (it can be run again) and no part folder.
    @Test func anUnfinishedFreshFolderLeavesNothing() throws {
        defer { try? fm.removeItem(atPath: root) }
        do {
            let folder = try OutputFolder(root + "/job-9", fresh: true)
            try folder.write(Data("x".utf8), name: "first.txt")
        }
        let left = try fm.contentsOfDirectory(atPath: root)
        #expect(left.isEmpty, "\(left)")
        // And a name taken while it filled is never replaced.
        let folder = try OutputFolder(root + "/job-9", fresh: true)
        try folder.write(Data("x".utf8), name: "first.txt")
        fm.createFile(atPath: root + "/job-9", contents: Data("someone else's".utf8))
        #expect(throws: GridError.self) { try folder.finish() }
        #expect(contents(root + "/job-9") == "someone else's")
    }
}
