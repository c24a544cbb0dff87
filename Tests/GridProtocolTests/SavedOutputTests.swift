import Foundation
import GridCore
import GridProtocol
import Testing

/// `JOB_DONE.saved`: a worker's claim of what became of the outputs it saved in the grid, made a line of the job's
/// history. Only the run's own outputs count, each once; reasons are cut to one short line.
@Suite struct SavedOutputTests {
    let files = [FileEntry(name: "a.txt", size: 1), FileEntry(name: "b.txt", size: 2)]

    @Test func storedAndFailedOutputsAreNamed() {
        let note = Msg.SavedOutput.note(
            [.init(name: "a.txt"), .init(name: "b.txt", error: "peer unreachable")], files: files, prefix: "results/")
        #expect(note == "outputs saved in the grid as results/NAME: a.txt; outputs not saved in the grid: b.txt (peer unreachable)")
    }

    @Test func namesThatAreNotOutputsAndRepeatsAreIgnored() {
        let note = Msg.SavedOutput.note(
            [.init(name: "../x"), .init(name: "a.txt"), .init(name: "a.txt", error: "contrary"), .init(name: "zzz", error: "x")],
            files: files, prefix: "r/")
        #expect(note == "outputs saved in the grid as r/NAME: a.txt")
        #expect(Msg.SavedOutput.note([.init(name: "nope")], files: files, prefix: "r/") == nil)
    }

    @Test func aJobThatSavesNothingOrARunThatSaysNothingRecordsNothing() {
        #expect(Msg.SavedOutput.note([.init(name: "a.txt")], files: files, prefix: nil) == nil)
        #expect(Msg.SavedOutput.note(nil, files: files, prefix: "r/") == nil)
        #expect(Msg.SavedOutput.note([], files: files, prefix: "r/") == nil)
    }

    @Test func aLongOrManyLinedReasonIsCutToOneShortLine() throws {
        let reason = "first\nsecond\u{1b}[31m\u{202e}" + String(repeating: "é", count: 1000)
        let note = try #require(Msg.SavedOutput.note([.init(name: "a.txt", error: reason)], files: files, prefix: "r/"))
        #expect(!note.unicodeScalars.contains { FileName.isControlOrFormat($0) }, "\(note.debugDescription)")
        #expect(note.hasPrefix("outputs not saved in the grid: a.txt (first second [31m éé"))
        #expect(note.utf8.count < 300)
    }

    /// One character may carry thousands of combining marks: the cut is on bytes, for each reason and for the line.
    @Test func combiningMarksCannotStretchTheLine() throws {
        let heavy = "e" + String(repeating: "\u{301}", count: 4_000)
        let many = (0..<20).map { FileEntry(name: String(repeating: "n", count: 200) + "\($0)", size: 0) }
        let note = try #require(Msg.SavedOutput.note(many.map { .init(name: $0.name, error: heavy) }, files: many, prefix: "r/"))
        #expect(note.utf8.count <= 4_096 + 3)
        let one = try #require(Msg.SavedOutput.note([.init(name: "a.txt", error: heavy)], files: files, prefix: "r/"))
        #expect(one.utf8.count < 300)
    }

    @Test func thousandsOfOutputsAreSummedUpAfterTwenty() throws {
        let many = (0..<5000).map { FileEntry(name: "f\($0)", size: 0) }
        let note = try #require(Msg.SavedOutput.note(many.map { .init(name: $0.name) }, files: many, prefix: "r/"))
        #expect(note.hasSuffix("f19 and 4980 more"))
    }

    /// The field travels as `saved`, and a report without it (an older worker's) still decodes.
    @Test func theFieldIsOptionalOnTheWire() throws {
        let line = #"{"type":"JOB_DONE","job":{"job_id":1,"attempt":1},"outcome":"completed","exit_code":0,"runtime_ms":1,"peak_memory_kb":1,"cpu_seconds":0,"files":[]}"#
        guard case .jobDone(let done) = try GridMessage.decode(type: "JOB_DONE", from: Data(line.utf8)) else {
            Issue.record("not a JOB_DONE")
            return
        }
        #expect(done.saved == nil)
    }
}

/// `JOB_DONE.public_inputs`: a worker's claim of which grid inputs were strangers' public files, made a line of the job's
/// history (never its log: verification compares logs). Only the job's own inputs count, each once; controls a
/// stranger put in a name are not obeyed.
@Suite struct PublicInputNoteTests {
    @Test func theJobsOwnPublicInputsAreNamedWithTheirPublisher() {
        let note = Msg.PublicInput.note(
            [.init(name: "data.csv", publishedBy: "mallory"), .init(name: "other.csv", publishedBy: "mallory"),
             .init(name: "data.csv", publishedBy: "eve"), .init(name: "w.bin", publishedBy: "bob")],
            declared: ["data.csv", "w.bin"])
        #expect(note == "input grid:data.csv was the public file published by mallory, grid:w.bin was the public file published by bob (you store no file of that name)")
        #expect(Msg.PublicInput.note([.init(name: "x", publishedBy: "m")], declared: ["y"]) == nil)
        #expect(Msg.PublicInput.note(nil, declared: ["y"]) == nil)
        #expect(Msg.PublicInput.note([.init(name: "y", publishedBy: "m")], declared: nil) == nil)
    }

    @Test func manyOrHostileNamesMakeOneShortLine() throws {
        let names = (0..<300).map { "in-\($0)\n\u{1b}[2J" }
        let note = try #require(Msg.PublicInput.note(names.map { .init(name: $0, publishedBy: "mallory") }, declared: names))
        #expect(!note.unicodeScalars.contains { FileName.isControlOrFormat($0) }, "\(note.debugDescription)")
        #expect(note.contains("and 280 more") && note.utf8.count <= 4_100)
    }

    @Test func aReportsPublicInputsAreBoundedAndDroppedWhenItIsFitted() {
        let ref = JobRef(jobId: 1, attempt: 1)
        var done = Msg.JobDone(
            job: ref, outcome: .completed, exitCode: 0, runtimeMs: 1, peakMemoryKb: 1, cpuSeconds: 0, reason: nil, files: [],
            publicInputs: [.init(name: "a", publishedBy: String(repeating: "m", count: 65))])
        #expect(WorkerClaims.problem(.jobDone(done)) != nil)
        #expect(WorkerClaims.fitted(done).publicInputs == nil)
        done.publicInputs = [.init(name: "a", publishedBy: "mallory")]
        #expect(WorkerClaims.problem(.jobDone(done)) == nil)
        // Boundaries: an empty name or publisher, a name past 1 KiB, more than 1,024 entries.
        for bad: [Msg.PublicInput] in [
            [.init(name: "", publishedBy: "mallory")], [.init(name: "a", publishedBy: "")],
            [.init(name: String(repeating: "a", count: 1025), publishedBy: "mallory")],
            Array(repeating: .init(name: "a", publishedBy: "mallory"), count: 1025),
        ] {
            done.publicInputs = bad
            #expect(WorkerClaims.problem(.jobDone(done)) != nil, "\(bad.count) entries")
        }
        done.publicInputs = Array(repeating: .init(name: String(repeating: "a", count: 1024), publishedBy: String(repeating: "m", count: 64)), count: 1024)
        #expect(WorkerClaims.problem(.jobDone(done)) == nil)
    }
}
