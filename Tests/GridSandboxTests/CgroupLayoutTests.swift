import Testing

@testable import GridSandbox

@Suite struct CgroupLayoutTests {
    static let hybrid = """
        9:name=systemd:/
        8:pids:/
        6:freezer:/
        4:memory:/process_api/abc
        2:cpuacct:/
        1:cpu:/
        0::/
        """

    @Test func ownPathsReadEveryControllerAndTheUnifiedPath() {
        let own = CgroupLayout.ownPaths(Self.hybrid + "\n3:cpu,cpuacct:/x")
        #expect(own["memory"] == "/process_api/abc")
        #expect(own["pids"] == "/")
        #expect(own[""] == "/")
        #expect(own["cpuacct"] == "/x")
    }

    @Test func v1PutsTheJobUnderTheWorkersOwnCgroupInEachController() {
        let l = CgroupLayout.make(version: .v1, root: "/sys/fs/cgroup", selfCgroup: Self.hybrid, name: "job-1-1")
        #expect(l.directories["memory"] == "/sys/fs/cgroup/memory/process_api/abc/campusgrid/job-1-1")
        #expect(l.directories["pids"] == "/sys/fs/cgroup/pids/campusgrid/job-1-1")
        #expect(l.directories["freezer"] == "/sys/fs/cgroup/freezer/campusgrid/job-1-1")
        #expect(l.procsFiles.count == CgroupLayout.v1Controllers.count)
    }

    @Test func v1LimitsSetMemoryWithSwapPidsAndTheCPUQuota() {
        let l = CgroupLayout.make(version: .v1, root: "/cg", selfCgroup: Self.hybrid, name: "j")
        let writes = Dictionary(uniqueKeysWithValues: l.limitWrites(.init(memoryBytes: 1 << 30, pids: 64, cpus: 1)).map { ($0.path, $0.value) })
        #expect(writes["/cg/memory/process_api/abc/campusgrid/j/memory.limit_in_bytes"] == "1073741824")
        #expect(writes["/cg/memory/process_api/abc/campusgrid/j/memory.memsw.limit_in_bytes"] == "1073741824")
        #expect(writes["/cg/pids/campusgrid/j/pids.max"] == "64")
        #expect(writes["/cg/cpu/campusgrid/j/cpu.cfs_quota_us"] == "100000")
        #expect(writes["/cg/cpu/campusgrid/j/cpu.cfs_period_us"] == "100000")
    }

    @Test func memoryIsLimitedBeforeMemoryPlusSwap() {
        let l = CgroupLayout.make(version: .v1, root: "/cg", selfCgroup: Self.hybrid, name: "j")
        let paths = l.limitWrites(.init(memoryBytes: 1 << 30, pids: 64, cpus: 2)).map(\.path)
        #expect(paths.firstIndex { $0.hasSuffix("memory.limit_in_bytes") }! < paths.firstIndex { $0.hasSuffix("memsw.limit_in_bytes") }!)
    }

    @Test func v2UsesOneDirectoryAndItsFiles() {
        let l = CgroupLayout.make(version: .v2, root: "/sys/fs/cgroup", selfCgroup: "0::/user.slice/w.service\n", name: "j")
        #expect(l.directories == ["unified": "/sys/fs/cgroup/user.slice/w.service/campusgrid/j"])
        let writes = Dictionary(uniqueKeysWithValues: l.limitWrites(.init(memoryBytes: 2 << 30, pids: 100, cpus: 2)).map { ($0.path, $0.value) })
        let d = "/sys/fs/cgroup/user.slice/w.service/campusgrid/j"
        #expect(writes[d + "/memory.max"] == "2147483648")
        #expect(writes[d + "/memory.swap.max"] == "0")
        #expect(writes[d + "/pids.max"] == "100")
        #expect(writes[d + "/cpu.max"] == "200000 100000")
        #expect(l.procsFiles == [d + "/cgroup.procs"])
    }

    @Test func noMemoryLimitWhenTheJobAsksForNone() {
        let l = CgroupLayout.make(version: .v1, root: "/cg", selfCgroup: Self.hybrid, name: "j")
        #expect(!l.limitWrites(.init(memoryBytes: nil, pids: 8, cpus: nil)).contains { $0.path.contains("memory") || $0.path.contains("cpu") })
    }

    @Test func countersParseKeyedAndSingleValueFiles() {
        #expect(CgroupCounters.value("oom_kill", in: "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n") == 3)
        #expect(CgroupCounters.value("max", in: "max 12\n") == 12)
        #expect(CgroupCounters.value("max", in: "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n") == 5)
        #expect(CgroupCounters.value("usage_usec", in: "usage_usec 1500000\nuser_usec 1\n") == 1_500_000)
        #expect(CgroupCounters.value("oom_kill", in: "garbage") == nil)
        #expect(CgroupCounters.single("12345\n") == 12345)
        #expect(CgroupCounters.single("max\n") == nil)
        #expect(CgroupCounters.pids("1\n22\n\n333\n") == [1, 22, 333])
    }
}
