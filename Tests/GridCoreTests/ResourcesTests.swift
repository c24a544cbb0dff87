import GridCore
import Testing

@Suite("Resources")
struct ResourcesTests {
    let worker = Resources(cpus: 4, ramGb: 16, gpus: 1, gpuMemoryGb: 8)

    @Test func coversAnEqualRequest() {
        #expect(worker.covers(worker))
    }

    @Test func coversASmallerRequest() {
        #expect(worker.covers(Resources(cpus: 1, ramGb: 1)))
        #expect(worker.covers(.zero))
    }

    @Test(arguments: [
        Resources(cpus: 5, ramGb: 1),
        Resources(cpus: 1, ramGb: 17),
        Resources(cpus: 1, ramGb: 1, gpus: 2),
        Resources(cpus: 1, ramGb: 1, gpus: 1, gpuMemoryGb: 9),
    ])
    func doesNotCoverARequestLargerInAnyDimension(request: Resources) {
        #expect(!worker.covers(request))
    }

    @Test func gpuMemoryIsIgnoredWhenNoGpuIsRequested() {
        #expect(worker.covers(Resources(cpus: 1, ramGb: 1, gpus: 0, gpuMemoryGb: 80)))
    }

    @Test func unknownGpuMemoryInTheRequestIsNotChecked() {
        let noMemoryInfo = Resources(cpus: 4, ramGb: 16, gpus: 1, gpuMemoryGb: 0)
        #expect(noMemoryInfo.covers(Resources(cpus: 1, ramGb: 1, gpus: 1)))
        #expect(!noMemoryInfo.covers(Resources(cpus: 1, ramGb: 1, gpus: 1, gpuMemoryGb: 4)))
    }

    @Test func unmetIsEmptyWhenCovered() {
        #expect(worker.unmet(Resources(cpus: 4, ramGb: 16, gpus: 1, gpuMemoryGb: 8)).isEmpty)
    }

    @Test func unmetNamesEachMissingRequirementInWords() {
        let small = Resources(cpus: 2, ramGb: 4)
        #expect(small.unmet(Resources(cpus: 4, ramGb: 8, gpus: 2, gpuMemoryGb: 16)) == ["4 CPUs", "8 GB RAM", "2 GPUs", "16 GB of GPU memory"])
    }

    @Test func unmetUsesTheSingularForOne() {
        #expect(Resources.zero.unmet(Resources(cpus: 1, ramGb: 0, gpus: 1)) == ["1 CPU", "1 GPU"])
    }

    @Test func unmetNamesOnlyTheMissingOnes() {
        #expect(worker.unmet(Resources(cpus: 2, ramGb: 32)) == ["32 GB RAM"])
    }

    @Test func subtractionAndAdditionAreInverse() {
        let job = Resources(cpus: 1, ramGb: 3, gpus: 1)
        #expect(worker - job == Resources(cpus: 3, ramGb: 13, gpus: 0, gpuMemoryGb: 8))
        #expect((worker - job) + job == worker)
    }
}
