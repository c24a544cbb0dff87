import Foundation
import GridCore
import Testing

@testable import GridStore

/// The queue read decodes only a spec's scheduling fields (issue 17). They must be exactly what the whole `JobSpec`
/// decodes to, or a change to `JobSpec`'s coding would silently schedule jobs with default resources.
@Suite struct SchedulingFieldsTests {
    @Test func theyMatchTheWholeSpecForEveryFieldTheSchedulerReads() throws {
        let spec = JobSpec(
            name: "n", cpus: 3, ramGb: 7, gpus: 1, minutes: 9, priority: -4, outputs: ["*.csv"], minTier: .oci, gridInputs: ["a"],
            verify: true, requirements: ["numpy==2.1.0"], requiresPython: ">=3.11")
        let stored = try JSONEncoder().encode(spec)  // as the store writes it
        let fields = try JSONDecoder().decode(SchedulingFields.self, from: stored)
        let whole = try JSONDecoder().decode(JobSpec.self, from: stored)
        #expect(fields.resources == whole.resources)
        #expect(fields.priority == whole.priority && fields.minTier == whole.minTier)
        #expect(fields.requirements == whole.requirements && fields.requiresPython == whole.requiresPython)
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
}
