import GridCore
import Testing

@Suite struct InlineScriptMetadataTests {
    /// A block of many comment lines is read in one pass (each line copied the whole block before: a megabyte of "#"
    /// lines held the manager for minutes; speed is the bench's, this says the block is read whole, up to its 64 KiB).
    @Test func aLongBlockIsReadWhole() throws {
        let script = "# /// script\n# dependencies = [\"numpy\"]\n" + String(repeating: "#\n", count: 60_000) + "# ///\nprint(1)\n"
        let meta = try #require(try InlineScriptMetadata.parse(script))
        #expect(meta.dependencies == ["numpy"])
    }

    @Test func readsDependenciesAndRequiresPython() throws {
        let script = """
            #!/usr/bin/env python3
            # /// script
            # requires-python = ">=3.11"
            # dependencies = [
            #   "polars==1.*",  # data frames
            #   'tqdm',
            # ]
            # ///
            import polars
            """
        let meta = try #require(try InlineScriptMetadata.parse(script))
        #expect(meta.dependencies == ["polars==1.*", "tqdm"])
        #expect(meta.requiresPython == ">=3.11")
    }

    @Test func aScriptWithoutABlockHasNoMetadata() throws {
        #expect(try InlineScriptMetadata.parse("import os\n# dependencies = ['x']\n") == nil)
    }

    @Test func otherBlockTypesAndToolTablesAreIgnored() throws {
        let script = """
            # /// other
            # dependencies = ["nope"]
            # ///
            # /// script
            # dependencies = ["tqdm"]
            #
            # [tool.campusgrid]
            # dependencies = ["ignored"]
            # flag = true
            # ///
            """
        #expect(try InlineScriptMetadata.parse(script) == InlineScriptMetadata(dependencies: ["tqdm"]))
    }

    @Test func twoScriptBlocksAreAnError() {
        let script = "# /// script\n# dependencies = []\n# ///\n# /// script\n# dependencies = []\n# ///\n"
        #expect(throws: GridError.self) { try InlineScriptMetadata.parse(script) }
    }

    /// A stranger's script is parsed by the manager at submit: arrays nested a million deep are refused with a reason
    /// (each level was a call, and the manager's stack overflowed), while the nesting real metadata uses is read.
    @Test func deeplyNestedArraysAreRefusedNotAStackOverflow() throws {
        for opened in [33, 1_000_000] {
            let script = "# /// script\n# x = " + String(repeating: "[", count: opened) + "\n# ///\n"
            #expect(throws: GridError.self) { try InlineScriptMetadata.parse(script) }
        }
        let nested = "# /// script\n# x = " + String(repeating: "[", count: 32) + String(repeating: "]", count: 32)
            + "\n# dependencies = [\"tqdm\"]\n# ///\n"
        #expect(try InlineScriptMetadata.parse(nested) == InlineScriptMetadata(dependencies: ["tqdm"]))
    }

    @Test func anUnclosedBlockIsAnError() {
        #expect(throws: GridError.self) { try InlineScriptMetadata.parse("# /// script\n# dependencies = []\nimport os\n") }
    }

    @Test func aMalformedValueIsAnErrorNamingTheLine() {
        do {
            _ = try InlineScriptMetadata.parse("# /// script\n# requires-python = \">=3.11\"\n# dependencies = [\"a\" \"b\"]\n# ///\n")
            Issue.record("accepted a malformed array")
        } catch {
            #expect(error.code == .invalidRequirements)
            #expect(error.message.contains("line 2"), "\(error.message)")
        }
        #expect(throws: GridError.self) { try InlineScriptMetadata.parse("# /// script\n# dependencies = \"numpy\"\n# ///\n") }
    }
}

@Suite struct EnvironmentCacheTests {
    typealias E = EnvironmentCache.Entry

    @Test func nothingIsEvictedUnderTheLimit() {
        #expect(EnvironmentCache.evictions([E(key: "a", bytes: 10, lastUsed: 1, inUse: false)], limitBytes: 10).isEmpty)
    }

    @Test func leastRecentlyUsedGoFirstUntilTheCacheFits() {
        let entries = [
            E(key: "new", bytes: 40, lastUsed: 30, inUse: false), E(key: "old", bytes: 40, lastUsed: 10, inUse: false),
            E(key: "mid", bytes: 40, lastUsed: 20, inUse: false),
        ]
        #expect(EnvironmentCache.evictions(entries, limitBytes: 80) == ["old"])
        #expect(EnvironmentCache.evictions(entries, limitBytes: 40) == ["old", "mid"])
    }

    @Test func anEnvironmentInUseIsNeverEvictedEvenOverTheLimit() {
        let entries = [E(key: "busy", bytes: 100, lastUsed: 1, inUse: true), E(key: "idle", bytes: 10, lastUsed: 5, inUse: false)]
        #expect(EnvironmentCache.evictions(entries, limitBytes: 50) == ["idle"])
        #expect(EnvironmentCache.evictions([entries[0]], limitBytes: 0).isEmpty)
    }
}
