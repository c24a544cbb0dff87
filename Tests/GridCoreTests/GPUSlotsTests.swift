import GridCore
import Testing

@Suite("GPU slots")
struct GPUSlotsTests {
    @Test func jobsGetDistinctDevicesAndGiveThemBack() {
        var slots = GPUSlots(indices: [1, 0, 2])
        #expect(slots.take(2) == [0, 1])
        #expect(slots.take(2) == nil, "only one is left")
        #expect(slots.take(1) == [2])
        slots.give([1, 0])
        #expect(slots.free == [0, 1])
        #expect(GPUSlots.visibleDevices([0, 1]) == "0,1")
    }

    @Test func aJobWithoutGPUsTakesNothing() {
        var slots = GPUSlots(indices: [])
        #expect(slots.take(0) == [])
        #expect(slots.take(1) == nil)
    }
}
