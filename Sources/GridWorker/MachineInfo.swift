import Foundation
public import GridCore
import GridSandbox

/// What the machine has: CPUs, RAM, NVIDIA GPUs, current load.
public enum MachineInfo {
    public static func cpuCount() -> Int { ProcessInfo.processInfo.activeProcessorCount }

    /// Total RAM in whole GB.
    public static func memoryGb() -> Int {
        Int(ProcessInfo.processInfo.physicalMemory >> 30)
    }

    /// The 1-minute load average divided by the CPU count (0 = idle, 1 = every core busy).
    public static func load() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8),
            let first = text.split(separator: " ").first, let avg = Double(first)
        else { return 0 }
        return avg / Double(max(1, cpuCount()))
    }

    /// NVIDIA GPUs found by `nvidia-smi`; none when it is missing or fails.
    public static func gpus() -> GPUInventory {
        let candidates = ["/usr/bin/nvidia-smi", "/usr/local/bin/nvidia-smi", "/usr/local/nvidia/bin/nvidia-smi"]
        guard let path = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            return GPUInventory(gpus: [])
        }
        // Bounded: nvidia-smi is known to hang when the driver is wedged; a worker then starts with no GPUs rather than not at all.
        guard let csv = Command.output(path, ["--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"], timeout: 15) else {
            return GPUInventory(gpus: [])
        }
        return GPUInventory.parse(csv: csv)
    }
}
