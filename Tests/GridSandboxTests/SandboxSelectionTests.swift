import Testing

@testable import GridSandbox

@Suite struct SandboxSelectionTests {
    @Test func autoTriesTheStrongestFirstAndEndsWithRestricted() throws {
        let steps = try SandboxSelection.steps(choice: .auto, useDocker: true, engineSocket: "/s.sock", environment: [:])
        #expect(steps == [.oci(sockets: ["/s.sock"]), .bwrap, .bwrapRootless, .restricted])
    }

    @Test func noDockerMeansNeverOCI() throws {
        let steps = try SandboxSelection.steps(choice: .auto, useDocker: false, engineSocket: nil, environment: [:])
        #expect(steps == [.bwrap, .bwrapRootless, .restricted])
        #expect(throws: SandboxUnavailable.self) {
            try SandboxSelection.steps(choice: .podman, useDocker: false, engineSocket: nil, environment: [:])
        }
    }

    @Test func useDockerFalseInTheEnvironmentMeansNoDocker() {
        #expect(!SandboxSelection.useDocker(noDockerFlag: false, environment: ["USE_DOCKER": "false"]))
        #expect(!SandboxSelection.useDocker(noDockerFlag: true, environment: [:]))
        #expect(SandboxSelection.useDocker(noDockerFlag: false, environment: ["USE_DOCKER": "true"]))
        #expect(SandboxSelection.useDocker(noDockerFlag: false, environment: [:]))
    }

    @Test func anExplicitTierHasNoFallback() throws {
        #expect(try SandboxSelection.steps(choice: .bwrap, useDocker: true, engineSocket: nil, environment: [:]) == [.bwrap, .bwrapRootless])
        #expect(try SandboxSelection.steps(choice: .bwrapRootless, useDocker: true, engineSocket: nil, environment: [:]) == [.bwrapRootless])
        #expect(try SandboxSelection.steps(choice: .none, useDocker: true, engineSocket: nil, environment: [:]) == [.restricted])
    }

    @Test func engineSocketsFollowTheEnvironment() {
        let env = ["DOCKER_HOST": "unix:///d.sock", "CONTAINER_HOST": "unix:///p.sock"]
        #expect(SandboxSelection.sockets(for: .docker, given: nil, environment: env) == ["/d.sock", "/var/run/docker.sock"])
        #expect(SandboxSelection.sockets(for: .podman, given: nil, environment: env).first == "/p.sock")
        #expect(SandboxSelection.sockets(for: .auto, given: "unix:///x.sock", environment: env) == ["/x.sock"])
    }

    @Test func choicesParseAndRejectUnknownWords() throws {
        #expect(try SandboxSelection.Choice(parsing: "BWRAP") == .bwrap)
        #expect(try SandboxSelection.Choice(parsing: "restricted") == SandboxSelection.Choice.none)
        #expect(throws: SandboxUnavailable.self) { try SandboxSelection.Choice(parsing: "chroot") }
    }

    @Test func aMissingBwrapFailsInsteadOfRunningWeaker() {
        var s = SandboxSelection.Settings(python: "/usr/bin/python3")
        s.bwrapPath = "/nonexistent/bwrap"
        #expect {
            _ = try SandboxSelection.makeRunner([.bwrap], settings: s)
        } throws: { "\($0)".contains("/nonexistent/bwrap") }
    }
}
