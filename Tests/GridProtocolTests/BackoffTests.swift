import GridProtocol
import Testing

@Suite("Backoff")
struct BackoffTests {
    @Test func delaysDoubleFromInitialUpToMaximum() {
        var b = Backoff(initial: 0.25, maximum: 3)
        #expect((0..<7).map { _ in b.next() } == [0.25, 0.5, 1, 2, 3, 3, 3])
    }

    @Test func defaultsStartAtTwoTenthsAndCapAtTwoSeconds() {
        var b = Backoff()
        #expect(b.next() == 0.2)
        for _ in 0..<10 { _ = b.next() }
        #expect(b.next() == 2)
    }

    @Test func resetStartsOverFromInitial() {
        var b = Backoff(initial: 1, maximum: 10)
        _ = b.next()
        _ = b.next()
        _ = b.next()
        b.reset()
        #expect(b.next() == 1)
        #expect(b.next() == 2)
    }

    @Test func neverExceedsTheMaximum() {
        var b = Backoff(initial: 0.3, maximum: 5)
        for _ in 0..<100 { #expect(b.next() <= 5) }
    }
}
