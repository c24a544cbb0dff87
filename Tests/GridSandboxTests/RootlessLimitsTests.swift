import GridCore
import Testing

@testable import GridSandbox

@Suite struct RootlessLimitsTests {
    @Test func theLabelSaysWhichLimitsHold() {
        #expect(RootlessLimits.label(source: .rlimits, isRoot: false) == "bwrap, rootless, rlimits")
        #expect(RootlessLimits.label(source: .delegatedCgroup, isRoot: false) == "bwrap, rootless, cgroup v2")
        #expect(RootlessLimits.label(source: .rlimits, isRoot: true) == "bwrap, rlimits")
        #expect(RootlessLimits.label(source: .cgroups, isRoot: true) == "bwrap+cgroups")
    }

    @Test func aCPUJobGetsAnAddressSpaceCapAndEveryOtherRlimit() {
        let plan = RootlessLimits.plan(spec: JobSpec(name: "j", cpus: 2, ramGb: 3, minutes: 10), limits: RunnerLimits(maxFileBytes: 1 << 20, maxProcesses: 50))
        let byResource = Dictionary(uniqueKeysWithValues: plan.outside.map { ($0.resource, $0.value) })
        #expect(byResource[RLimit.addressSpace] == UInt64(4) << 30)
        #expect(byResource[RLimit.fsize] == 1 << 20)
        #expect(byResource[RLimit.core] == 0)
        #expect(byResource[RLimit.cpu] == 2 * 10 * 60 + 5)
        // RLIMIT_NPROC is never set outside: there it would count every process of the worker's user.
        #expect(byResource[RLimit.nproc] == nil)
        #expect(plan.processes == 50)
        #expect(plan.leftOut.isEmpty)
    }

    @Test func aGPUJobGetsNoMemoryRlimitAndSaysWhy() {
        let plan = RootlessLimits.plan(spec: JobSpec(name: "j", ramGb: 8, gpus: 1), limits: RunnerLimits())
        #expect(!plan.outside.contains { $0.resource == RLimit.addressSpace })
        #expect(plan.addressSpace == nil)
        #expect(plan.leftOut.first?.contains("CUDA") == true)
    }

    @Test func theNotesNameWhatRlimitsCannotHold() {
        let notes = RootlessLimits.notes(source: .rlimits, isRoot: false, limits: RunnerLimits(maxProcesses: 64)).joined(separator: "\n")
        #expect(notes.contains("CUDA") && notes.contains("no share") && notes.contains("RLIMIT_NPROC = 64"))
        #expect(RootlessLimits.notes(source: .rlimits, isRoot: true, limits: RunnerLimits()).joined().contains("does not bind"))
        #expect(RootlessLimits.notes(source: .delegatedCgroup, isRoot: false, limits: RunnerLimits()).isEmpty)
    }

    @Test func thePreludeSetsTheProcessLimitInsideThenExecsTheScript() {
        let p = RootlessLimits.prelude(processes: 32)
        #expect(p.contains("RLIMIT_NPROC,(32,32)"))
        #expect(p.contains("os.execv(sys.executable"))
        let args = BwrapRunner.arguments(
            python: "/usr/bin/python3", pythonRoots: [], topLevel: [], scratch: "/s", script: "main.py", environment: [:], tmpBytes: 1,
            gpuDevices: [], processes: 32)
        #expect(Array(args.suffix(5)) == ["/usr/bin/python3", "-S", "-c", p, "main.py"])
    }

    @Test func aMemoryErrorUnderTheCapIsOutOfMemory() {
        let failed = RunReport(outcome: .failed, exitCode: 1, runtimeMs: 10, peakMemoryKb: 0, cpuSeconds: 0)
        let tail = "Traceback (most recent call last):\n  File \"/job/main.py\", line 3\nMemoryError\n"
        #expect(RootlessLimits.outOfMemory(report: failed, addressSpace: 1 << 31, outputTail: tail))
        #expect(!RootlessLimits.outOfMemory(report: failed, addressSpace: nil, outputTail: tail))
        #expect(!RootlessLimits.outOfMemory(report: failed, addressSpace: 1 << 31, outputTail: "ValueError: x\n"))
        var ok = failed
        ok.outcome = .completed
        ok.exitCode = 0
        #expect(!RootlessLimits.outOfMemory(report: ok, addressSpace: 1 << 31, outputTail: tail))
    }

    @Test func theProbeMustShowUid65534NoNetworkAndStoppedForks() {
        let good = "uid 65534\nforked 4\nnet no\n"
        #expect(RootlessLimits.judgeProbe(output: good, errors: "", status: 0, isRoot: false) == .ok)
        #expect(RootlessLimits.judgeProbe(output: "uid 65534\nforked 12\nnet no\n", errors: "", status: 0, isRoot: true) == .ok)
        guard case .failed(let nproc) = RootlessLimits.judgeProbe(output: "uid 65534\nforked 12\nnet no\n", errors: "", status: 0, isRoot: false)
        else { Issue.record("forks went through"); return }
        #expect(nproc.contains("RLIMIT_NPROC"))
        guard case .failed(let net) = RootlessLimits.judgeProbe(output: "uid 65534\nforked 4\nnet yes\n", errors: "", status: 0, isRoot: false)
        else { Issue.record("network"); return }
        #expect(net.contains("network"))
        guard
            case .failed(let userns) = RootlessLimits.judgeProbe(
                output: "", errors: "bwrap: No permissions to creating new namespace, likely because the kernel does not allow non-privileged user namespaces\n",
                status: 1, isRoot: false)
        else { Issue.record("userns"); return }
        #expect(userns.contains("unprivileged user namespaces"))
    }
}

@Suite struct CgroupDelegationTests {
    let base = CgroupDelegation.Facts(
        root: "/sys/fs/cgroup", entries: 9, version: .v1, isRoot: true, uid: 0, ownDirectory: "/sys/fs/cgroup/user.slice", ownWritable: false)

    @Test func anEmptyCgroupMountIsNamedAsSuch() {
        var f = base
        f.entries = 0
        #expect(CgroupDelegation.reason(f, delegated: false)?.contains("ip netns exec") == true)
        #expect(CgroupDelegation.reason(f, delegated: true)?.contains("is empty") == true)
    }

    @Test func rootReachesTheCgroupsAndOthersNeedDelegation() {
        #expect(CgroupDelegation.reason(base, delegated: false) == nil)
        var user = base
        user.isRoot = false
        user.uid = 1000
        #expect(CgroupDelegation.reason(user, delegated: false)?.contains("need root (this worker runs as uid 1000)") == true)
    }

    @Test func delegationNeedsCgroupV2AndAWritableSubtree() {
        var f = base
        f.isRoot = false
        #expect(CgroupDelegation.reason(f, delegated: true)?.contains("cgroup v1") == true)
        f.version = .v2
        #expect(CgroupDelegation.reason(f, delegated: true)?.contains("systemd-run --user --scope -p Delegate=yes") == true)
        f.ownWritable = true
        #expect(CgroupDelegation.reason(f, delegated: true) == nil)
    }
}
