import Foundation

/// Real packages' wheels on this machine, for tests that run real ML code in a declared environment without any index:
/// the project's wheel folder (`.build-wheels`, filled by `scripts/setup` from PyPI once: numpy, scikit-learn, torch's
/// dependencies) and the machine's torch wheel folder (`/opt/wheels`). Workers get them as
/// `--no-index --find-links FOLDER…` (`workerArguments`).
public enum LocalWheels {
    /// `<repository>/.build-wheels`.
    public static let projectFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent(".build-wheels").path

    /// Where this machine keeps its torch wheel (pip's `find-links` here).
    public static let torchFolder = "/opt/wheels"

    /// The torch wheel for this machine, when there is one.
    public static let torchWheel: String? = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: torchFolder)) ?? []
        return names.sorted().first { $0.hasPrefix("torch-") && $0.hasSuffix(".whl") }.map { torchFolder + "/" + $0 }
    }()

    /// Whether the project's folder has a wheel of each of `distributions` (names as in wheel file names: `scikit_learn`).
    public static func projectHas(_ distributions: [String]) -> Bool {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: projectFolder)) ?? []).map { $0.lowercased() }
        return distributions.allSatisfy { d in names.contains { $0.hasPrefix(d.lowercased() + "-") && $0.hasSuffix(".whl") } }
    }

    /// Worker options that install only from the project's folder (and `extra` folders): no index, no network.
    /// Throws, saying to run `scripts/setup`, when the folder lacks one of `needs`.
    public static func workerArguments(needs: [String], extra: [String] = []) throws -> [String] {
        guard projectHas(needs) else {
            throw TestGridError("\(projectFolder) lacks wheels of \(needs.joined(separator: ", ")): run scripts/setup (it downloads them once)")
        }
        return ["--no-index", "--find-links", projectFolder] + extra.flatMap { ["--find-links", $0] }
    }

    /// The seed's ML example's packages (`examples/random_forest.py` declares numpy and scikit-learn).
    public static let seedExample = ["numpy", "scikit_learn", "scipy", "joblib", "threadpoolctl"]
    /// torch's dependencies, downloaded by `scripts/setup` next to the seed's (torch itself stays in `torchFolder`).
    public static let torchDependencies = ["filelock", "typing_extensions", "sympy", "mpmath", "networkx", "jinja2", "markupsafe", "fsspec"]
}
