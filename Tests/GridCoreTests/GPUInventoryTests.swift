import GridCore
import Testing

@Suite("GPU inventory")
struct GPUInventoryTests {
    @Test func parsesNvidiaSmiCSVWithoutHeader() {
        let csv = "0, NVIDIA H100 80GB HBM3, 81559\n1, NVIDIA H100 80GB HBM3, 81559\n"
        let inventory = GPUInventory.parse(csv: csv)
        #expect(inventory.gpus.map(\.index) == [0, 1])
        #expect(inventory.gpus.first?.name == "NVIDIA H100 80GB HBM3")
        #expect(inventory.gpus.first?.memoryMiB == 81559)
        #expect(inventory.smallestMemoryGb == 79)
    }

    @Test func parsesTheHeaderAndUnitsFormAndSkipsJunk() {
        let csv = "index, name, memory.total [MiB]\n0, Tesla T4, 15360 MiB\nNo devices were found\n"
        let inventory = GPUInventory.parse(csv: csv)
        #expect(inventory.gpus.count == 1)
        #expect(inventory.gpus[0].memoryMiB == 15360)
        #expect(inventory.smallestMemoryGb == 15)
    }

    @Test func noOutputMeansNoGPUs() {
        #expect(GPUInventory.parse(csv: "").gpus.isEmpty)
        #expect(GPUInventory.parse(csv: "").smallestMemoryGb == 0)
    }
}
