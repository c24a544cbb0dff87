import GridCore
import Testing

/// The decision about a keyed submission (money: a second charge or none) and the key's own checks.
@Suite struct SubmitKeyTests {
    @Test(arguments: ["a", "0f8e2c1a-5b7d-4e3f-9a21-6c4b2d9e8f10", "ci:run-17.job_3", String(repeating: "k", count: 128)])
    func aWellFormedKeyIsKept(_ key: String) throws {
        #expect(try SubmitKey.validate(key) == key)
    }

    @Test(arguments: ["", String(repeating: "k", count: 129), "with space", "new\nline", "a/b", "ключ", "emoji🙂", "semi;colon", "\0"])
    func aMalformedKeyIsRefusedWithAReason(_ key: String) {
        #expect {
            _ = try SubmitKey.validate(key)
        } throws: { error in
            guard let e = error as? GridError else { return false }
            return e.code == .badRequest && e.message.contains("Idempotency-Key")
        }
    }

    @Test func theMessageNamesTheKeyAsItsSenderKnowsIt() {
        #expect {
            _ = try SubmitKey.validate("a b", field: "--key")
        } throws: { error in
            (error as? GridError)?.message == "--key may hold only letters, digits and - _ . :"
        }
    }

    @Test func aKeyNoJobHoldsMakesTheJob() {
        #expect(SubmitKey.decide(existing: nil, digest: "d1") == .create)
    }

    @Test func theSameSubmissionAgainGetsTheFirstJobBack() {
        #expect(SubmitKey.decide(existing: (id: 7, digest: "d1"), digest: "d1") == .replay(id: 7))
    }

    @Test func anotherSubmissionUnderAUsedKeyIsAConflict() {
        #expect(SubmitKey.decide(existing: (id: 7, digest: "d1"), digest: "d2") == .conflict(id: 7))
    }

    @Test func aRowWithoutADigestOrAnEmptyDigestNeverReplays() {
        // A damaged row, or a caller that computed nothing, must not hand back a job it cannot show is the same one.
        #expect(SubmitKey.decide(existing: (id: 7, digest: nil), digest: "d1") == .conflict(id: 7))
        #expect(SubmitKey.decide(existing: (id: 7, digest: ""), digest: "") == .conflict(id: 7))
        #expect(SubmitKey.decide(existing: (id: Int64.min, digest: "d1"), digest: "d1") == .replay(id: Int64.min))
    }
}
