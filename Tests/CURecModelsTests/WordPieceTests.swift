import Testing

@testable import CURecModels

@Suite("WordPiece")
struct WordPieceTests {
    static let tokens = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "runn", "##ing", "hello", ",", "!",
        "cafe", "resume", "中", "文", "a", "##a", "'", "s", "x",
    ]

    func tokenizer(maxLength: Int = 256, maxChars: Int = 100) throws -> WordPieceTokenizer {
        try WordPieceTokenizer(
            vocabulary: WordPieceVocabulary(tokens: Self.tokens), maxInputCharsPerWord: maxChars,
            maxLength: maxLength)
    }

    @Test("greedy longest match with ## continuations; [UNK] for unsplittable words")
    func greedyLongestMatch() throws {
        let t = try tokenizer()
        #expect(t.tokenize("unaffable running") == ["un", "##aff", "##able", "runn", "##ing"])
        #expect(t.tokenize("unaffablex") == ["[UNK]"])
        #expect(t.tokenize("zebra hello") == ["[UNK]", "hello"])
    }

    @Test("lower-casing, accent stripping, punctuation and CJK splitting, whitespace clean-up")
    func normalization() throws {
        let t = try tokenizer()
        #expect(t.tokenize("HeLLo,  CAFÉ!\tRésumé") == ["hello", ",", "cafe", "!", "resume"])
        #expect(t.tokenize("hello中文hello") == ["hello", "中", "文", "hello"])
        #expect(t.tokenize("x's") == ["x", "'", "s"])
        #expect(t.tokenize("\u{0}he\u{200B}llo\u{FFFD}\r\n\u{3000}x") == ["hello", "x"])
        #expect(t.tokenize("cafe\u{301}") == ["cafe"])
        #expect(t.tokenize("   ") == [])
    }

    @Test("words longer than maxInputCharsPerWord become one [UNK]")
    func tooLongWords() throws {
        let t = try tokenizer(maxChars: 5)
        #expect(t.tokenize("aaaaa") == ["a", "##a", "##a", "##a", "##a"])
        #expect(t.tokenize("aaaaaa hello") == ["[UNK]", "hello"])
    }

    @Test("[CLS]/[SEP], truncation to maxLength, padded batches with attention masks")
    func specialTokensTruncationAndBatching() throws {
        let t = try tokenizer(maxLength: 5)
        #expect(t.encode("hello").ids == [2, 9, 3])
        #expect(t.encode("").ids == [2, 3])
        #expect(t.encode("hello hello unaffable").ids == [2, 9, 9, 4, 3])
        #expect(t.encode("hello").attentionMask == [1, 1, 1])

        let batch = t.encodeBatch(["hello", "hello , hello !", ""])
        #expect(batch.sequenceLength == 5)
        #expect(batch.lengths == [3, 5, 2])
        #expect(batch.ids == [2, 9, 3, 0, 0, 2, 9, 10, 9, 3, 2, 3, 0, 0, 0])
        #expect(batch.attentionMask == [1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0])
        #expect(Array(batch.ids(ofRow: 1)) == [2, 9, 10, 9, 3])
    }

    @Test("a vocabulary without the special tokens is rejected")
    func missingSpecialTokens() {
        #expect(throws: TokenizerError.missingToken("[UNK]")) {
            try WordPieceTokenizer(vocabulary: WordPieceVocabulary(tokens: ["[PAD]", "a"]))
        }
        #expect(throws: TokenizerError.self) {
            try WordPieceTokenizer.load(vocabPath: "/nonexistent/vocab.txt")
        }
    }
}

@Suite("WordPiece reference", .enabled(if: MiniLMAssets.available, "all-MiniLM-L6-v2 vocab.txt unavailable (no pip)"))
struct WordPieceReferenceTests {
    @Test("ids match the Hugging Face tokenizer of all-MiniLM-L6-v2 for every fixture text")
    func matchesHuggingFace() throws {
        let reference = try MiniLMReference.load()
        let tokenizer = try WordPieceTokenizer.load(vocabPath: MiniLMAssets.vocabPath, maxLength: reference.max_seq_length)
        let cases = reference.sentences.map { ($0.text, $0.input_ids) }
            + reference.wordpiece_cases.map { ($0.text, $0.input_ids) }
        for (text, expected) in cases {
            #expect(tokenizer.encode(text).ids == expected, "text: \(text.debugDescription)")
        }
    }
}
