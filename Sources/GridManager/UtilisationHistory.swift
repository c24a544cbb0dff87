import Foundation
import ServiceLifecycle
import Synchronization

/// The cluster's utilisation over the last hour, for the overview chart: a ring buffer of samples in memory.
///
/// One owner of the samples (a `Mutex`); the sampler service appends, pages read. Lost on restart by design: the chart
/// shows the last hour of this manager's life.
final class UtilisationHistory: Sendable {
    /// The grid at one moment.
    struct Sample: Sendable, Hashable {
        var at: Double
        var cpusTotal: Int
        var cpusUsed: Int
        var workersOnline: Int
        var running: Int

        /// Used CPUs as a percentage of online CPUs (0 with no worker).
        var percent: Double { cpusTotal > 0 ? min(100, max(0, Double(cpusUsed) * 100 / Double(cpusTotal))) : 0 }
    }

    let capacity: Int
    private let samples = Mutex<[Sample]>([])

    init(capacity: Int = 720) { self.capacity = max(2, capacity) }

    func append(_ sample: Sample) {
        samples.withLock { s in
            s.append(sample)
            if s.count > capacity { s.removeFirst(s.count - capacity) }
        }
    }

    /// Samples taken at or after `since`, oldest first.
    func since(_ since: Double) -> [Sample] {
        samples.withLock { $0.filter { $0.at >= since } }
    }

    /// Takes one sample from the core's live state.
    static func sample(_ core: ManagerCore, now: Double) async -> Sample {
        let u = await core.utilisation()
        return Sample(at: now, cpusTotal: u.cpusTotal, cpusUsed: u.cpusUsed, workersOnline: u.workers, running: u.running)
    }
}

/// Samples the grid every `interval` seconds into a `UtilisationHistory`, until graceful shutdown.
struct UtilisationSampler: Service {
    let core: ManagerCore
    let history: UtilisationHistory
    let interval: Double

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                history.append(await UtilisationHistory.sample(core, now: Date().timeIntervalSince1970))
                try? await Task.sleep(for: .milliseconds(Int(max(0.2, interval) * 1000)))
            }
        }
    }
}
