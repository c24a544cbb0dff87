import Foundation
import GridCore
import Testing

@Suite struct PythonRequirementTests {
    @Test func namesAreNormalisedPEP503() throws {
        #expect(try PythonRequirement.parse("Scikit_Learn").description == "scikit-learn")
        #expect(try PythonRequirement.parse("zope.Interface").name == "zope-interface")
        #expect(try PythonRequirement.parse("a__b--c").name == "a-b-c")
    }

    @Test func versionClausesLoseSpacesAndAreSorted() throws {
        #expect(try PythonRequirement.parse("numpy < 2 , >= 1.24").description == "numpy<2,>=1.24")
        #expect(try PythonRequirement.parse("polars (==1.*)").description == "polars==1.*")
        #expect(try PythonRequirement.parse("  tqdm  ").description == "tqdm")
    }

    @Test func extrasAreSortedAndMarkersKept() throws {
        let r = try PythonRequirement.parse("Requests[socks, Security]>=2; python_version >= \"3.8\"")
        #expect(r.description == "requests[security,socks]>=2; python_version >= \"3.8\"")
    }

    @Test(arguments: [
        "", "-e .", "--index-url https://evil.example/simple", "pkg @ https://x.example/p.whl", "./local", "/abs/path",
        "git+https://github.com/x/y", "==1.0", "numpy>>1", "numpy 1.0", "numpy==", "numpy==1.*.2", "numpy>=1.*", "numpy[", "_bad",
        "numpy; ", "naïve", "numpy; os.system('x')|",
    ])
    func malformedRequirementsAreRefusedWithTheirText(line: String) {
        #expect(throws: GridError.self) { try PythonRequirement.parse(line) }
    }

    /// pip takes any word of a requirements line that starts with `-` for an option, wherever it stands: in a marker,
    /// `--no-binary` switched off the worker's wheels-only rule and a stranger's sdist was built (its code run).
    @Test(arguments: [
        "evil; python_version>\"0\" --no-binary=evil", "evil; python_version>\"0\" --global-option=x",
        "evil; python_version > \"0\" --config-settings=a=b", "evil; python_version>\"0\"\t--no-binary=:all:",
        "evil>=1 --no-binary=evil", "evil --hash=sha256:00", "evil[a] -i https://x",
    ])
    func pipOptionsAnywhereInTheLineAreRefused(line: String) {
        #expect(throws: GridError.self) { try PythonRequirement.parse(line) }
        let refused = (try? PythonRequirement.parse(line)) == nil
        #expect(refused, "\(line)")
    }

    @Test func markersWithDashesInsideTheirValuesAreStillAccepted() throws {
        let r = try PythonRequirement.parse("pkg; platform_release >= \"5.10-generic\" and extra == \"a-b\"")
        #expect(r.marker == "platform_release >= \"5.10-generic\" and extra == \"a-b\"")
    }

    @Test func theErrorQuotesTheRequirementAndSaysWhy() {
        do {
            _ = try PythonRequirement.parse("pkg @ https://x.example/p.whl")
            Issue.record("accepted a direct reference")
        } catch {
            #expect(error.code == .invalidRequirements)
            #expect(error.message.contains("pkg @ https") && error.message.contains("direct references"), "\(error.message)")
        }
    }
}

@Suite struct PythonRequirementsTests {
    @Test func equalNeedsWrittenDifferentlyHaveEqualDigests() throws {
        let a = try PythonRequirements(lines: ["NumPy>=1.24,<2", "tqdm"], requiresPython: ">= 3.10")
        let b = try PythonRequirements(lines: ["tqdm", "numpy <2, >=1.24", "TQDM"], requiresPython: ">=3.10")
        #expect(a == b)
        #expect(a.digest == b.digest)
        #expect(a.lines == ["numpy<2,>=1.24", "tqdm"])
    }

    @Test func differentNeedsHaveDifferentDigests() throws {
        let a = try PythonRequirements(lines: ["numpy==1.26.4"])
        let b = try PythonRequirements(lines: ["numpy==1.26.3"])
        let c = try PythonRequirements(lines: ["numpy==1.26.4"], requiresPython: ">=3.12")
        #expect(Set([a.digest, b.digest, c.digest]).count == 3)
    }

    @Test func theEnvironmentKeyDependsOnPythonPlatformAndOptions() throws {
        let r = try PythonRequirements(lines: ["tqdm"])
        let base = r.environmentKey(python: "3.11.7", platform: "linux-x86_64")
        #expect(base.count == 32)
        #expect(base == r.environmentKey(python: "3.11.7", platform: "linux-x86_64"))
        #expect(base != r.environmentKey(python: "3.12.1", platform: "linux-x86_64"))
        #expect(base != r.environmentKey(python: "3.11.7", platform: "linux-aarch64"))
        #expect(base != r.environmentKey(python: "3.11.7", platform: "linux-x86_64", options: ["sdist"]))
    }

    @Test func tooManyRequirementsAreRefused() {
        let lines = (0...PythonRequirements.maxPackages).map { "pkg\($0)" }
        #expect(throws: GridError.self) { try PythonRequirements(lines: lines) }
    }

    @Test func aRequirementsFileKeepsPackagesAndDropsCommentsAndBlankLines() throws {
        let text = "# tools\nnumpy>=1.24  # fast arrays\n\n  tqdm\r\npolars==1.* \\\n  ; python_version>='3.9'\n"
        #expect(try PythonRequirements.parseFile(text) == ["numpy>=1.24", "tqdm", "polars==1.*; python_version>='3.9'"])
    }

    @Test func aRequirementsFileErrorNamesTheFileAndLine() {
        do {
            _ = try PythonRequirements.parseFile("numpy\n\nbad line here\n", name: "requirements.txt")
            Issue.record("accepted a malformed line")
        } catch {
            #expect(error.message.hasPrefix("requirements.txt line 3:"), "\(error.message)")
        }
    }

    @Test func pipOptionsInARequirementsFileAreRefused() {
        do {
            _ = try PythonRequirements.parseFile("numpy\n--extra-index-url https://evil.example\n", name: "req.txt")
            Issue.record("accepted a pip option")
        } catch {
            #expect(error.message.contains("req.txt line 2") && error.message.contains("--extra-index-url"), "\(error.message)")
        }
    }

    @Test func jobSpecValidationRejectsMalformedRequirements() {
        var spec = JobSpec(name: "x", requirements: ["numpy @ https://x.example/n.whl"])
        #expect(throws: GridError.self) { try spec.validate() }
        spec.requirements = ["numpy"]
        spec.requiresPython = "three"
        #expect(throws: GridError.self) { try spec.validate() }
        spec.requiresPython = ">=3.9"
        #expect(throws: Never.self) { try spec.validate() }
    }
}

@Suite struct PythonVersionSpecTests {
    @Test func clausesAreCheckedAgainstAVersion() {
        #expect(PythonVersionSpec.allows(">=3.10", version: "3.11.7"))
        #expect(!PythonVersionSpec.allows(">=3.12", version: "3.11.7"))
        #expect(PythonVersionSpec.allows(">=3.10,<3.13", version: "3.11.7"))
        #expect(PythonVersionSpec.allows("==3.11.*", version: "3.11.7"))
        #expect(!PythonVersionSpec.allows("==3.12.*", version: "3.11.7"))
        #expect(PythonVersionSpec.allows("~=3.10", version: "3.11.7"))
        #expect(!PythonVersionSpec.allows("~=3.11.8", version: "3.11.7"))
        #expect(PythonVersionSpec.allows("!=3.11.6", version: "3.11.7"))
        #expect(PythonVersionSpec.allows("", version: "3.11.7"))
        #expect(!PythonVersionSpec.allows("banana", version: "3.11.7"))
    }

    @Test func normalisingSortsAndDeduplicates() throws {
        #expect(try PythonVersionSpec.normalise(" <3.13 , >=3.10,<3.13") == "<3.13,>=3.10")
        #expect(throws: GridError.self) { try PythonVersionSpec.normalise(">=3.x") }
        #expect(throws: GridError.self) { try PythonVersionSpec.normalise("~=3") }
    }
}

@Suite struct SHA256DigestTests {
    @Test func knownVectors() {
        #expect(SHA256Digest.hex(of: []) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256Digest.hex(of: Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            SHA256Digest.hex(of: Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256Digest.hex(of: [UInt8](repeating: 0x61, count: 1000)) == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }
}

@Suite struct JobSpecRequirementsWireTests {
    @Test func aSpecWithoutPackagesEncodesAsBefore() throws {
        let json = String(decoding: try JSONEncoder().encode(JobSpec(name: "plain")), as: UTF8.self)
        #expect(!json.contains("requirements") && !json.contains("requiresPython"), "\(json)")
    }

    @Test func aSpecFromAnOlderClientDecodesWithoutPackages() throws {
        let old = #"{"name":"j","cpus":1,"ramGb":1,"gpus":0,"minutes":5,"priority":0,"outputs":[],"minTier":"bwrap"}"#
        let spec = try JSONDecoder().decode(JobSpec.self, from: Data(old.utf8))
        #expect(spec.requirements == nil && spec.requiresPython == nil)
        #expect(spec.pythonRequirements.isEmpty)
    }

    @Test func packagesRoundTrip() throws {
        let spec = JobSpec(name: "j", requirements: ["numpy<2", "tqdm"], requiresPython: ">=3.10")
        #expect(try JSONDecoder().decode(JobSpec.self, from: try JSONEncoder().encode(spec)) == spec)
    }
}
