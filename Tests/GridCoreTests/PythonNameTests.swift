import GridCore
import Testing

@Suite struct PythonNameTests {
    @Test func identifiersAreAcceptedAndEverythingElseRefused() {
        for good in ["main", "_private", "f2", "Train_Model", String(repeating: "a", count: 100)] {
            #expect(PythonName.isValid(good), "\(good)")
        }
        for bad in [
            "", "2fast", "a-b", "a b", "a.b", "__import__('os')", "é", "main\n", "main;", String(repeating: "a", count: 101), "\u{0}", "ａ",
        ] {
            #expect(!PythonName.isValid(bad), "\(bad.debugDescription)")
        }
    }
}
