import Foundation
import Testing

@testable import CURecModels

private enum BPEFixtures {
    static let directory = ModelsFixturePaths.directory + "/bpe"
    static var corpusLines: [String] {
        get throws {
            try String(contentsOfFile: directory + "/corpus.txt", encoding: .utf8)
                .components(separatedBy: "\n")
        }
    }

    static func trainer() -> BPETrainer {
        BPETrainer(vocabularySize: 600, minFrequency: 2, specialTokens: ["<|endoftext|>"])
    }

    struct Reference: Decodable {
        struct Pretokenized: Decodable {
            let text: String
            let pieces: [String]
        }
        let sentences: [String]
        let swift_trained_ids: [[Int32]]
        let hf_trained_ids: [[Int32]]
        let hf_trained_decoded: [String]
        let pretokenized: [Pretokenized]
    }

    static func reference() throws -> Reference {
        try JSONDecoder().decode(
            Reference.self, from: Data(contentsOf: URL(fileURLWithPath: directory + "/reference.json")))
    }
}

private func temporaryPath(_ name: String) -> String {
    let directory = NSTemporaryDirectory() + "bpe-tests-\(UUID().uuidString)"
    try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    return directory + "/" + name
}

/// Random text from scalars of many kinds, including emoji, combining marks and controls.
private func randomText(_ generator: inout some RandomNumberGenerator) -> String {
    let ranges: [ClosedRange<UInt32>] = [
        0x00...0x7F, 0x80...0x7FF, 0x0300...0x036F, 0x3040...0x30FF, 0x4E00...0x9FFF, 0xAC00...0xD7A3,
        0x1F300...0x1FAFF, 0x2000...0x206F, 0xE000...0xF8FF, 0x10000...0x10FFFF,
    ]
    var view = String.UnicodeScalarView()
    for _ in 0..<Int.random(in: 0...40, using: &generator) {
        let range = ranges.randomElement(using: &generator) ?? 0...0x7F
        if let scalar = Unicode.Scalar(UInt32.random(in: range, using: &generator)) { view.append(scalar) }
        if Int.random(in: 0..<10, using: &generator) == 0 { view.append(contentsOf: "<|endoftext|>".unicodeScalars) }
    }
    return String(view)
}

@Suite("BPE tokenizer")
struct BPETokenizerTests {
    @Test("the byte alphabet is a bijection between bytes and 256 printable scalars")
    func byteAlphabet() {
        #expect(Set(ByteLevelAlphabet.scalarForByte).count == 256)
        #expect(ByteLevelAlphabet.encode(Array(" hi\n".utf8)) == "ĠhiĊ")
        #expect(ByteLevelAlphabet.decode(ByteLevelAlphabet.encode(0...255)) == Array(0...255))
        #expect(ByteLevelAlphabet.decode("x y") == nil)
    }

    @Test("GPT-2 pre-tokenization: contractions, letters, numbers, symbols, whitespace")
    func preTokenization() {
        let p = GPT2PreTokenizer()
        #expect(p.split("I'd say it's 2024's best!!") == ["I", "'d", " say", " it", "'s", " 2024", "'s", " best", "!!"])
        #expect(p.split("a  b") == ["a", " ", " b"])
        #expect(p.split("a \n b   ") == ["a", " \n", " b", "   "])
        #expect(p.split("x\ty") == ["x", "\t", "y"])
        #expect(p.split("'Sup 'll'") == ["'", "Sup", " '", "ll", "'"])
        #expect(p.split("") == [])
    }

    @Test("training is deterministic and learns frequent pairs first")
    func deterministicTraining() throws {
        let lines = try BPEFixtures.corpusLines
        let first = try BPEFixtures.trainer().train(lines)
        let second = try BPEFixtures.trainer().train(lines)
        #expect(first.tokens == second.tokens)
        #expect(first.merges.map { [$0.0, $0.1] } == second.merges.map { [$0.0, $0.1] })
        // The small corpus runs out of pairs seen twice before 600 tokens.
        #expect(first.vocabularySize > 400 && first.vocabularySize <= 600)
        #expect(first.id(of: "<|endoftext|>") == 0)
        #expect(first.merges.count == first.vocabularySize - 257)
        #expect(first.encode(" the").count == 1)
        #expect(first.encode(" users").count == 1)
        let capped = try BPETrainer(vocabularySize: 300).train(lines)
        #expect(capped.vocabularySize == 300)
        #expect(capped.merges.map { [$0.0, $0.1] } == first.merges.prefix(43).map { [$0.0, $0.1] })
    }

    @Test("decode(encode(text)) == text for random Unicode with emoji and special tokens")
    func exactRoundTrip() throws {
        let tokenizer = try BPEFixtures.trainer().train(BPEFixtures.corpusLines)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<300 {
            let text = randomText(&generator)
            let ids = tokenizer.encode(text)
            #expect(try tokenizer.decode(ids) == text, "text: \(text.debugDescription)")
        }
        for text in ["", " ", "👨‍👩‍👧", "\u{0}\u{1}\r\n", "e\u{301}", "<|endoftext|><|endoftext|>", "<|endoftex"] {
            #expect(try tokenizer.decode(tokenizer.encode(text)) == text)
        }
        #expect(throws: TokenizerError.unknownTokenID(600)) { try tokenizer.decode([600]) }
    }

    @Test("special tokens, built-in and user-defined, are never split")
    func specialTokens() throws {
        let specials = ["<|endoftext|>", "<|user|>", "<|u|>"]
        let tokenizer = try BPETrainer(vocabularySize: 400, specialTokens: specials).train(BPEFixtures.corpusLines)
        let ids = tokenizer.encode("hi<|user|>there<|u|><|endoftext|><|use")
        let user = try #require(tokenizer.id(of: "<|user|>"))
        let short = try #require(tokenizer.id(of: "<|u|>"))
        #expect(ids.contains(user) && ids.contains(short) && ids.contains(0))
        #expect(ids.filter { $0 < 3 }.count == 3)
        #expect(try tokenizer.decode(ids) == "hi<|user|>there<|u|><|endoftext|><|use")
        #expect(tokenizer.encode("<|user|>") == [user])
    }

    @Test("GPT-2 files and tokenizer.json round trip through save and load")
    func saveAndLoad() throws {
        let tokenizer = try BPEFixtures.trainer().train(BPEFixtures.corpusLines)
        let vocab = temporaryPath("vocab.json"), merges = temporaryPath("merges.txt")
        let json = temporaryPath("tokenizer.json")
        try tokenizer.save(vocabPath: vocab, mergesPath: merges)
        try tokenizer.saveTokenizerJSON(path: json)
        let fromGPT2 = try BPETokenizer.load(vocabPath: vocab, mergesPath: merges)
        let fromJSON = try BPETokenizer.load(tokenizerJSONPath: json)
        let text = try BPEFixtures.corpusLines.joined(separator: "\n")
        #expect(fromGPT2.encode(text) == tokenizer.encode(text))
        #expect(fromJSON.encode(text) == tokenizer.encode(text))
        #expect(fromGPT2.specialTokens == ["<|endoftext|>"])
    }

    @Test("malformed files give errors naming the problem")
    func malformedFiles() throws {
        let merges = temporaryPath("merges.txt"), vocab = temporaryPath("vocab.json")
        try "#version: 0.2\na b c\n".write(toFile: merges, atomically: true, encoding: .utf8)
        try "{\"a\": 0}".write(toFile: vocab, atomically: true, encoding: .utf8)
        #expect(throws: TokenizerError.invalidFile(path: merges, line: 2, reason: "expected two tokens separated by one space")) {
            try BPETokenizer.load(vocabPath: vocab, mergesPath: merges)
        }
        try "#version: 0.2\n".write(toFile: merges, atomically: true, encoding: .utf8)
        #expect(throws: TokenizerError.missingToken("Ā")) { try BPETokenizer.load(vocabPath: vocab, mergesPath: merges) }
        let json = temporaryPath("tokenizer.json")
        try #"{"model": {"type": "WordPiece", "vocab": {}}}"#.write(toFile: json, atomically: true, encoding: .utf8)
        #expect(throws: TokenizerError.self) { try BPETokenizer.load(tokenizerJSONPath: json) }
        #expect(throws: TokenizerError.self) { try BPETokenizer.load(tokenizerJSONPath: json + ".missing") }
        #expect(throws: TokenizerError.self) { try BPETrainer(vocabularySize: 100).train(["x"]) }
    }
}

@Suite("BPE reference (Hugging Face tokenizers)")
struct BPEReferenceTests {
    @Test("the Swift-trained tokenizer.json equals the committed fixture (set UPDATE_BPE_FIXTURE=1 to rewrite it)")
    func trainedFileIsStable() throws {
        let tokenizer = try BPEFixtures.trainer().train(BPEFixtures.corpusLines)
        let committed = BPEFixtures.directory + "/swift_trained/tokenizer.json"
        if ProcessInfo.processInfo.environment["UPDATE_BPE_FIXTURE"] == "1" {
            try FileManager.default.createDirectory(
                atPath: BPEFixtures.directory + "/swift_trained", withIntermediateDirectories: true)
            try tokenizer.saveTokenizerJSON(path: committed)
        }
        let fresh = temporaryPath("tokenizer.json")
        try tokenizer.saveTokenizerJSON(path: fresh)
        #expect(FileManager.default.contents(atPath: fresh) == FileManager.default.contents(atPath: committed))
    }

    @Test("encoding with the Swift-trained tokenizer matches Hugging Face tokenizers loading it")
    func swiftTrainedMatchesHuggingFace() throws {
        let reference = try BPEFixtures.reference()
        let tokenizer = try BPETokenizer.load(tokenizerJSONPath: BPEFixtures.directory + "/swift_trained/tokenizer.json")
        for (text, expected) in zip(reference.sentences, reference.swift_trained_ids) {
            #expect(tokenizer.encode(text) == expected, "text: \(text.debugDescription)")
        }
    }

    @Test("a tokenizer trained by Hugging Face loads from tokenizer.json and GPT-2 files and encodes identically")
    func huggingFaceTrainedFiles() throws {
        let reference = try BPEFixtures.reference()
        let directory = BPEFixtures.directory + "/hf_trained"
        let fromJSON = try BPETokenizer.load(tokenizerJSONPath: directory + "/tokenizer.json")
        let fromGPT2 = try BPETokenizer.load(vocabPath: directory + "/vocab.json", mergesPath: directory + "/merges.txt")
        for (index, text) in reference.sentences.enumerated() {
            #expect(fromJSON.encode(text) == reference.hf_trained_ids[index], "text: \(text.debugDescription)")
            #expect(fromGPT2.encode(text) == reference.hf_trained_ids[index], "text: \(text.debugDescription)")
            #expect(try fromJSON.decode(reference.hf_trained_ids[index]) == reference.hf_trained_decoded[index])
        }
    }

    @Test("pre-tokenization matches the Hugging Face ByteLevel pre-tokenizer on fixed and random Unicode")
    func preTokenizerMatchesHuggingFace() throws {
        let reference = try BPEFixtures.reference()
        let preTokenizer = GPT2PreTokenizer()
        for item in reference.pretokenized {
            let pieces = preTokenizer.split(item.text).map { ByteLevelAlphabet.encode(Array($0.utf8)) }
            #expect(pieces == item.pieces, "text: \(item.text.debugDescription)")
        }
    }
}
