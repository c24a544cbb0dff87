import Foundation
import GridTestSupport
import Testing

extension Integration {
    /// An operator's numbers out of range are refused with the option named, before anything starts or connects:
    /// each was once a trap (a crash) or a silent misbehaviour, and the checks had no test of their own.
    @Suite struct OperatorInput {
        /// Runs the CLI and expects it refused, quickly, naming `option` (no manager, peer or grid is up to talk to).
        func refused(_ grid: TestGrid, _ arguments: [String], naming option: String) async throws {
            let r = try await grid.cli(arguments, timeout: 60)
            #expect(r.status != 0, "\(arguments) was accepted:\n\(r.stdout)\(r.stderr)")
            #expect(r.stderr.contains(option + " must be"), "\(arguments): \(r.stderr.suffix(600))")
        }

        @Test func aCheckWaitOutsideAboveZeroToAYearIsRefused() async throws {
            let grid = try TestGrid(label: "check-wait")
            defer { grid.shutdown() }
            for hours in ["0", "-1", "nan", "inf", "8761", "1e300"] {
                try await refused(
                    grid, ["manager", "--data-dir", grid.root + "/m-\(hours)", "--host", "127.0.0.1", "--port", "0", "--check-wait-hours=" + hours],
                    naming: "--check-wait-hours")
            }
        }

        @Test func aTaskTimeoutOutsideAboveZeroToTenMinutesIsRefusedBeforeAnyPeerIsAsked() async throws {
            let grid = try TestGrid(label: "cpu-timeout")
            defer { grid.shutdown() }
            // Port 9 on loopback: nothing listens; a refused option never gets that far.
            for timeout in ["0", "-1", "nan", "inf", "601", "1e19"] {
                try await refused(
                    grid, ["cpu", "--host", "127.0.0.1", "--port", "9", "--token", "cg_test", "--program", "def main():\n    return 1\n",
                        "--timeout=" + timeout],
                    naming: "--timeout")
            }
        }

        @Test func aPeerPortOutsideAPortsRangeIsRefusedByUp() async throws {
            let grid = try TestGrid(label: "up-port")
            defer { grid.shutdown() }
            for port in ["-1", "65536", "\(Int.max)"] {
                try await refused(grid, ["up", "--workers", "1", "--data-dir", grid.root + "/up", "--peer-port=" + port], naming: "--peer-port")
            }
        }
    }
}
