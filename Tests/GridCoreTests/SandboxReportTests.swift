import GridCore
import Testing

@Suite struct SandboxReportTests {
    @Test func onlyTheRestrictedTierNeedsAllowUnsandboxedToTakeOthersJobs() {
        #expect(!Admission.acceptsOthers(tier: .restricted, allowUnsandboxed: false))
        #expect(Admission.acceptsOthers(tier: .restricted, allowUnsandboxed: true))
        #expect(Admission.acceptsOthers(tier: .bwrap, allowUnsandboxed: false))
        #expect(Admission.acceptsOthers(tier: .oci, allowUnsandboxed: false))
    }

    @Test func aWorkerThatRefusesOthersStillRunsItsOwnersJobs() {
        #expect(Admission.accepts(jobOwner: "ann", workerOwner: "ann", acceptsOthers: false))
        #expect(!Admission.accepts(jobOwner: "bob", workerOwner: "ann", acceptsOthers: false))
        #expect(Admission.accepts(jobOwner: "bob", workerOwner: "ann", acceptsOthers: true))
    }

    @Test func theRestrictedWarningSaysWhatAJobCouldReachAndHowToGetASandbox() {
        let text = Admission.restrictedWarning(owner: "ann", home: "/home/ann", acceptsOthers: false, skipped: ["bwrap: no user namespaces"])
        for needle in ["/home/ann", "SSH keys", "network", "only your own jobs", "--allow-unsandboxed", "bubblewrap", "rootless Podman",
            "bwrap: no user namespaces"]
        {
            #expect(text.contains(needle), "\(needle)")
        }
        #expect(!text.contains("\n"))
        let open = Admission.restrictedWarning(owner: nil, home: nil, acceptsOthers: true, skipped: [])
        #expect(open.contains("OTHER users' jobs"))
    }

    @Test func onlyTheRestrictedTierIsUnsandboxed() {
        let r = SandboxReport(tier: .bwrap, label: "bwrap, rootless, rlimits", skipped: ["oci: no engine"], acceptsOthers: true, notes: ["x"])
        #expect(!r.unsandboxed)
        #expect(SandboxReport(tier: .restricted, label: "r").unsandboxed)
    }
}
