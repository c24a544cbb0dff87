import Foundation
import GridCore
import GridScheduler
import Testing

@testable import GridStore

/// The queue read decodes only a spec's scheduling fields (issue 17). They must be exactly what the whole `JobSpec`
/// decodes to, or a change to `JobSpec`'s coding would silently schedule jobs with default resources.
@Suite struct SchedulingFieldsTests {
    @Test func theyMatchTheWholeSpecForEveryFieldTheSchedulerReads() throws {
        let spec = JobSpec(
            name: "n", cpus: 3, ramGb: 7, gpus: 1, minutes: 9, priority: -4, outputs: ["*.csv"], minTier: .oci, gridInputs: ["a"],
            verify: true, requirements: ["numpy==2.1.0"], requiresPython: ">=3.11", diskGb: 42)
        let stored = try JSONEncoder().encode(spec)  // as the store writes it
        let fields = try JSONDecoder().decode(SchedulingFields.self, from: stored)
        let whole = try JSONDecoder().decode(JobSpec.self, from: stored)
        #expect(fields.resources == whole.resources)
        #expect(fields.priority == whole.priority && fields.minTier == whole.minTier)
        #expect(fields.requirements == whole.requirements && fields.requiresPython == whole.requiresPython)
        #expect(fields.diskGb == 42 && whole.diskGb == 42)
    }

    @Test func whatIsNotAJobSpecIsNotOneHereEither() {
        let defaults = SchedulingFields()
        let fallback = JobSpec(name: "?")
        #expect(defaults.resources == fallback.resources && defaults.priority == fallback.priority && defaults.minTier == fallback.minTier)
        for bad in [#"{}"#, #"{"name":"x","cpus":2}"#, #"{"name":"x","cpus":2,"ramGb":1,"gpus":0,"minutes":1,"priority":0,"minTier":"bwrap"}"#] {
            #expect(throws: (any Error).self) { try JSONDecoder().decode(SchedulingFields.self, from: Data(bad.utf8)) }
            #expect(throws: (any Error).self) { try JSONDecoder().decode(JobSpec.self, from: Data(bad.utf8)) }
        }
    }
    /// Jobs stored before the scheduling columns (migration v8) have NULL there: their spec is decoded instead, to the
    /// same job the columns give, on both backends.
    @Test(arguments: StoreBackend.allCases) func aRowWithoutSchedulingColumnsIsReadFromItsSpecAlike(_ backend: StoreBackend) async throws {
        let db = try await backend.open()
        let ada = try await db.createUser(username: "ada", passwordHash: "h", startingCredits: 1_000, now: 0)
        let specs = [
            JobSpec(
                name: "a", cpus: 3, ramGb: 7, gpus: 1, minutes: 9, priority: -4, minTier: .oci, requirements: ["numpy==2.1.0"], requiresPython: ">=3.11",
                diskGb: 3),
            JobSpec(name: "b", cpus: 1, ramGb: 1, gpus: 0, minutes: 1, priority: 10, minTier: .restricted),
        ]
        for spec in specs {
            _ = try await db.submitJob(owner: ada.id, spec: spec, script: StoredFile(name: "main.py", data: Data("print(1)".utf8)), inputs: [], now: 1)
        }
        let fromColumns = try await db.queueSync(after: nil).pending.map(\.job)
        #expect(fromColumns.count == 2)
        #expect(fromColumns.first?.env != nil && fromColumns.first?.requiresPython == ">=3.11" && fromColumns.first?.minTier == .oci)
        #expect(fromColumns.first?.request == Resources(cpus: 3, ramGb: 7, gpus: 1) && fromColumns.first?.priority == -4)
        // The scratch-disk limit (a job that asked for none has the default).
        #expect(fromColumns.map(\.diskGb) == [3, JobSpec.defaultDiskGb])
        try await db.write { s in
            try s.execute(
                sql: "UPDATE jobs SET sched_cpus = NULL, sched_ram_gb = NULL, sched_gpus = NULL, sched_priority = NULL, sched_min_tier = NULL, "
                    + "sched_env = NULL, sched_requires_python = NULL, sched_disk_gb = NULL")
        }
        let fromSpecs = try await db.queueSync(after: nil).pending.map(\.job)
        #expect(fromSpecs == fromColumns)
    }

}
