import Foundation
import GridCore

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
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = ["--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return GPUInventory(gpus: []) }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { return GPUInventory(gpus: []) }
        return GPUInventory.parse(csv: String(decoding: data, as: UTF8.self))
    }
}
