import GridCore
import Testing

/// `HTMLText.escape`: a stranger's text never comes out as markup, however it joins marks to `<` and `>`.
struct HTMLTextTests {
    @Test func theFiveCharactersBecomeEntities() {
        #expect(HTMLText.escape("<a href=\"x\" title='y'>&</a>") == "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;")
        #expect(HTMLText.escape("") == "")
        #expect(HTMLText.escape("plain ünïcode 名前") == "plain ünïcode 名前")
    }

    /// A prepended mark before `<`, or a combining mark after `>` or `"`, makes one `Character` of the two: an escaper
    /// that compares `Character`s (swift-mustache's own) lets them through.
    @Test func marksJoinedToMarkupAreEscapedToo() {
        let prepended = "\u{D4E}<meta http-equiv=refresh>"
        #expect(prepended.first != "<" && Array(prepended).count < prepended.unicodeScalars.count)
        #expect(HTMLText.escape(prepended) == "\u{D4E}&lt;meta http-equiv=refresh&gt;")
        #expect(HTMLText.escape("<b>\u{301}x") == "&lt;b&gt;\u{301}x")
        #expect(HTMLText.escape("a\"\u{301} onmouseover=x") == "a&quot;\u{301} onmouseover=x")
        #expect(HTMLText.escape("'\u{20DD}&\u{301}") == "&#39;\u{20DD}&amp;\u{301}")
        for text in ["\u{D4E}<", ">\u{301}", "\u{600}<script>", "<\u{200D}b>"] {
            let out = HTMLText.escape(text)
            #expect(!out.unicodeScalars.contains("<") && !out.unicodeScalars.contains(">"), "\(text.unicodeScalars.map { $0.value })")
        }
    }
}
