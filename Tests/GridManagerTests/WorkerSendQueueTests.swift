import GridProtocol
import NIOCore
import Testing

@testable import GridManager

/// The manager's queue of what it sends one worker (`WorkerSendQueue`): in order, never waiting for the worker, and
/// given up once a worker that does not read lets it pass its limits.
@Suite struct WorkerSendQueueTests {
    static func frame(_ id: Int, bytes: Int = 0) -> GridFrame {
        GridFrame(id: id, .ping, payload: bytes > 0 ? ByteBuffer(repeating: 1, count: bytes) : nil)
    }

    @Test func framesComeOutInOrderAndAWaitingWriterIsHandedTheNext() async {
        let q = WorkerSendQueue()
        #expect(q.enqueue(Self.frame(1)) && q.enqueue(Self.frame(2)))
        #expect(await q.next()?.id == 1)
        #expect(await q.next()?.id == 2)
        async let waiting = q.next()
        // The writer waits; a frame queued now goes straight to it.
        #expect(q.enqueue(Self.frame(3)))
        #expect(await waiting?.id == 3)
    }

    @Test func aQueuePastItsBytesOrFramesIsClosedAndEnqueueingFails() async {
        let q = WorkerSendQueue(limitBytes: 3 * (4096 + 1000), limitFrames: 100)
        for i in 0..<3 { #expect(q.enqueue(Self.frame(i, bytes: 1000)), "frame \(i)") }
        #expect(!q.enqueue(Self.frame(3, bytes: 1000)), "a fourth is past the limit")
        let after = await q.next()
        #expect(q.isClosed && after == nil, "what was queued is dropped with it")
        #expect(!q.enqueue(Self.frame(4)))
        let counted = WorkerSendQueue(limitBytes: .max, limitFrames: 2)
        #expect(counted.enqueue(Self.frame(1)) && counted.enqueue(Self.frame(2)) && !counted.enqueue(Self.frame(3)))
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
