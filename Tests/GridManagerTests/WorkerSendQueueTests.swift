import GridCore
import GridProtocol
import NIOCore
import Testing

@testable import GridManager

/// The manager's queue of what it sends one worker (`WorkerSendQueue`): in order, never waiting for the worker, and
/// given up once a worker that does not read lets it pass its limits.
@Suite struct WorkerSendQueueTests {
    static func frame(_ id: Int, bytes: Int = 0) -> WorkerSendQueue.Entry {
        .frame(GridFrame(id: id, .ping, payload: bytes > 0 ? ByteBuffer(repeating: 1, count: bytes) : nil))
    }

    static func id(_ entry: WorkerSendQueue.Entry?) -> Int? {
        switch entry {
        case .frame(let f)?: f.id
        case .assign(let a)?: Int(a.job.jobId)
        case nil: nil
        }
    }

    static func assign(_ job: Int) -> WorkerSendQueue.Entry {
        .assign(
            Msg.JobAssign(
                job: JobRef(jobId: JobID(job), attempt: 1), spec: JobSpec(name: "j", cpus: 1, ramGb: 1, minutes: 1), script: "main.py",
                files: [FileEntry(name: "main.py", size: 40 << 20)], owner: "ann"))
    }

    @Test func entriesComeOutInOrderAndAWaitingWriterIsHandedTheNext() async {
        let q = WorkerSendQueue()
        #expect(q.enqueue(Self.frame(1)) && q.enqueue(Self.assign(2)))
        #expect(Self.id(await q.next()) == 1)
        #expect(Self.id(await q.next()) == 2)
        async let waiting = q.next()
        // The writer waits (or not yet): either way the entry queued now is the next it gets.
        #expect(q.enqueue(Self.frame(3)))
        #expect(Self.id(await waiting) == 3)
    }

    @Test func aQueuePastItsBytesOrEntriesIsClosedAndEnqueueingFails() async {
        let q = WorkerSendQueue(limitBytes: 3 * (4096 + 1000), limitEntries: 100)
        for i in 0..<3 { #expect(q.enqueue(Self.frame(i, bytes: 1000)), "frame \(i)") }
        #expect(!q.enqueue(Self.frame(3, bytes: 1000)), "a fourth is past the limit")
        let after = await q.next()
        #expect(q.isClosed && after == nil, "what was queued is dropped with it")
        #expect(!q.enqueue(Self.frame(4)))
        let counted = WorkerSendQueue(limitBytes: .max, limitEntries: 2)
        #expect(counted.enqueue(Self.frame(1)) && counted.enqueue(Self.frame(2)) && !counted.enqueue(Self.frame(3)))
    }

    /// A job's files are read as its assignment is written, not held in the queue: sixteen 40 MB jobs given to a
    /// worker at once fit in a queue of 1 MiB (before, their bytes passed the limit and cut the worker off).
    @Test func assignmentsWaitWithoutTheirFiles() async {
        let q = WorkerSendQueue(limitBytes: 1 << 20, limitEntries: 4_096)
        for job in 1...16 { #expect(q.enqueue(Self.assign(job)), "job \(job)") }
        #expect(q.waiting == 16 && !q.isClosed)
        // Taken in order, many times over the array's compaction point.
        let long = WorkerSendQueue(limitBytes: .max, limitEntries: 10_000)
        for i in 0..<5_000 { _ = long.enqueue(Self.frame(i)) }
        var got: [Int] = []
        for _ in 0..<3_000 { got.append(Self.id(await long.next()) ?? -1) }
        for i in 5_000..<6_000 { _ = long.enqueue(Self.frame(i)) }
        while long.waiting > 0 { got.append(Self.id(await long.next()) ?? -1) }
        #expect(got == Array(0..<6_000))
    }

    @Test func closingEndsAWaitingWriter() async {
        let q = WorkerSendQueue()
        async let waiting = q.next()
        // Closed whether or not the writer is waiting yet: either way it ends with nil.
        q.close()
        let ended = await waiting
        #expect(ended == nil)
        #expect(!q.enqueue(Self.frame(1)))
    }
}
