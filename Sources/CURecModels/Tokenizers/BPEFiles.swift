import Foundation

// Loading and saving BPE tokenizers as GPT-2 files (vocab.json + merges.txt) and as a
// Hugging Face tokenizer.json with a BPE model and a ByteLevel pre-tokenizer.

extension BPETokenizer {
    /// Loads GPT-2 format: `vocab.json` (token → id) and `merges.txt` (an optional
    /// `#version` line, then one `left right` pair per line, highest priority first).
    /// `specialTokens` defaults to `<|endoftext|>` when the vocabulary has it.
    public static func load(
        vocabPath: String, mergesPath: String, specialTokens: [String]? = nil
    ) throws(TokenizerError) -> BPETokenizer {
        let vocabulary = try readVocabulary(TokenizerFiles.readJSON(vocabPath), path: vocabPath)
        var merges: [(String, String)] = []
        let lines = try TokenizerFiles.readText(mergesPath).split(separator: "\n", omittingEmptySubsequences: false)
        for (index, rawLine) in lines.enumerated() {
            let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine
            if line.isEmpty || (index == 0 && line.hasPrefix("#version")) { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw .invalidFile(path: mergesPath, line: index + 1, reason: "expected two tokens separated by one space")
            }
            merges.append((String(parts[0]), String(parts[1])))
        }
        let specials = specialTokens ?? (vocabulary["<|endoftext|>"] != nil ? ["<|endoftext|>"] : [])
        return try BPETokenizer(vocabulary: vocabulary, merges: merges, specialTokens: specials)
    }

    /// Saves GPT-2 format files; special tokens are part of `vocab.json`.
    public func save(vocabPath: String, mergesPath: String) throws(TokenizerError) {
        try TokenizerFiles.writeJSON(vocabularyDictionary, to: vocabPath)
        var text = "#version: 0.2\n"
        for (left, right) in merges { text += left + " " + right + "\n" }
        try TokenizerFiles.writeText(text, to: mergesPath)
    }

    /// Loads a Hugging Face `tokenizer.json` whose model is BPE with a ByteLevel
    /// pre-tokenizer (as GPT-2's), optionally preceded by `Digits(individual_digits: true)`
    /// (``BPEPreTokenization/gpt2IndividualDigits``, as SmolLM's). Added tokens become
    /// never-split tokens. Merges may be `"a b"` strings or `["a", "b"]` pairs. Other model or
    /// pre-tokenizer kinds throw.
    public static func load(tokenizerJSONPath path: String) throws(TokenizerError) -> BPETokenizer {
        guard let root = try TokenizerFiles.readJSON(path) as? [String: Any],
            let model = root["model"] as? [String: Any]
        else {
            throw .invalidFile(path: path, line: nil, reason: "no 'model' object")
        }
        guard (model["type"] as? String) == "BPE" else {
            throw .invalidFile(path: path, line: nil, reason: "model type \(model["type"] ?? "none") is not BPE")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix", "dropout"] where !isNull(model[key]) {
            throw .invalidFile(path: path, line: nil, reason: "BPE option '\(key)' is not supported")
        }
        for key in ["byte_fallback", "ignore_merges"] where (model[key] as? Bool) == true {
            throw .invalidFile(path: path, line: nil, reason: "BPE option '\(key)' is not supported")
        }
        guard let found = byteLevelPreTokenizer(root["pre_tokenizer"]) else {
            throw .invalidFile(
                path: path, line: nil,
                reason: "only a ByteLevel pre_tokenizer, alone or after Digits(individual_digits), is supported")
        }
        let (preTokenizer, preTokenization) = found
        guard (preTokenizer["use_regex"] as? Bool) ?? true else {
            throw .invalidFile(path: path, line: nil, reason: "ByteLevel with use_regex=false is not supported")
        }
        if let normalizer = root["normalizer"], !isNull(normalizer) {
            throw .invalidFile(path: path, line: nil, reason: "normalizers are not supported")
        }
        var vocabulary = try readVocabulary(model["vocab"] as Any, path: path)
        guard let rawMerges = model["merges"] as? [Any] else {
            throw .invalidFile(path: path, line: nil, reason: "model.merges is not an array")
        }
        var merges: [(String, String)] = []
        for (index, item) in rawMerges.enumerated() {
            if let text = item as? String {
                let parts = text.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else {
                    throw .invalidFile(path: path, line: nil, reason: "merge \(index) '\(text)' is not two tokens")
                }
                merges.append((String(parts[0]), String(parts[1])))
            } else if let pair = item as? [String], pair.count == 2 {
                merges.append((pair[0], pair[1]))
            } else {
                throw .invalidFile(path: path, line: nil, reason: "merge \(index) is neither 'a b' nor [a, b]")
            }
        }
        var specials: [String] = []
        for item in root["added_tokens"] as? [[String: Any]] ?? [] {
            guard let content = item["content"] as? String, let id = (item["id"] as? NSNumber)?.intValue else {
                throw .invalidFile(path: path, line: nil, reason: "an added token lacks content or id")
            }
            if let existing = vocabulary[content], existing != id {
                throw .invalidFile(path: path, line: nil, reason: "added token '\(content)' has id \(id), the vocabulary \(existing)")
            }
            vocabulary[content] = id
            specials.append(content)
        }
        return try BPETokenizer(
            vocabulary: vocabulary, merges: merges, specialTokens: specials,
            addPrefixSpace: (preTokenizer["add_prefix_space"] as? Bool) ?? false,
            preTokenization: preTokenization)
    }

    /// The ByteLevel part of a supported `pre_tokenizer` object and the split it amounts to.
    private static func byteLevelPreTokenizer(_ json: Any?) -> ([String: Any], BPEPreTokenization)? {
        guard let object = json as? [String: Any] else { return nil }
        switch object["type"] as? String {
        case "ByteLevel":
            return (object, .gpt2)
        case "Sequence":
            guard let steps = object["pretokenizers"] as? [[String: Any]], steps.count == 2,
                steps[0]["type"] as? String == "Digits", steps[0]["individual_digits"] as? Bool == true,
                steps[1]["type"] as? String == "ByteLevel"
            else { return nil }
            return (steps[1], .gpt2IndividualDigits)
        default:
            return nil
        }
    }

    /// Saves a Hugging Face `tokenizer.json` (BPE model, ByteLevel pre-tokenizer and
    /// decoder, special tokens as added tokens) that the `tokenizers` library loads.
    public func saveTokenizerJSON(path: String) throws(TokenizerError) {
        let byteLevel: [String: Any] = [
            "type": "ByteLevel", "add_prefix_space": addPrefixSpace, "trim_offsets": true, "use_regex": true,
        ]
        let preTokenizer: [String: Any]
        switch preTokenization {
        case .gpt2:
            preTokenizer = byteLevel
        case .gpt2IndividualDigits:
            preTokenizer = [
                "type": "Sequence",
                "pretokenizers": [["type": "Digits", "individual_digits": true], byteLevel],
            ]
        }
        let added: [[String: Any]] = specialTokens.compactMap { token in
            guard let id = id(of: token) else { return nil }
            return [
                "id": Int(id), "content": token, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": true,
            ]
        }
        let model: [String: Any] = [
            "type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
            "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocabularyDictionary, "merges": merges.map { [$0.0, $0.1] },
        ]
        let root: [String: Any] = [
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "added_tokens": added,
            "normalizer": NSNull(), "pre_tokenizer": preTokenizer, "post_processor": NSNull(),
            "decoder": byteLevel, "model": model,
        ]
        try TokenizerFiles.writeJSON(root, to: path, pretty: true)
    }

    private var vocabularyDictionary: [String: Int] {
        Dictionary(uniqueKeysWithValues: tokens.enumerated().map { ($1, $0) })
    }

    private static func readVocabulary(_ json: Any, path: String) throws(TokenizerError) -> [String: Int] {
        guard let object = json as? [String: Any] else {
            throw .invalidFile(path: path, line: nil, reason: "the vocabulary is not a JSON object")
        }
        var vocabulary: [String: Int] = [:]
        for (token, value) in object {
            guard let number = value as? NSNumber, let id = Int(exactly: number.doubleValue), id >= 0 else {
                throw .invalidFile(path: path, line: nil, reason: "token '\(token)' has id \(value), not a non-negative integer")
            }
            vocabulary[token] = id
        }
        return vocabulary
    }

    private static func isNull(_ value: Any?) -> Bool {
        value == nil || value is NSNull
    }
}
