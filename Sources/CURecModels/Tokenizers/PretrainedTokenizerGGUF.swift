import CURecTensor

extension PretrainedTokenizerDescription {
    /// The tokenizer description in a GGUF file's metadata: `tokenizer.ggml.model`, `.pre`,
    /// `.tokens`, `.merges`, `.token_type`, `.bos_token_id`, `.eos_token_id`,
    /// `.unknown_token_id`, `.padding_token_id`, `.add_bos_token` and `tokenizer.chat_template`.
    /// The model and tokens are required; a key of the wrong type is an error, an absent
    /// optional key is nil (`add_bos_token`: false).
    public init(gguf file: GGUFFile) throws(TokenizerError) {
        func wrongType(_ key: String, _ expected: String) -> TokenizerError {
            .invalidFile(path: file.path, line: nil, reason: "metadata '\(key)' is not \(expected)")
        }
        func string(_ key: String) throws(TokenizerError) -> String? {
            guard file.metadata[key] != nil else { return nil }
            guard let value = file.string(key) else { throw wrongType(key, "a string") }
            return value
        }
        func strings(_ key: String) throws(TokenizerError) -> [String]? {
            guard file.metadata[key] != nil else { return nil }
            guard let value = file.strings(key) else { throw wrongType(key, "an array of strings") }
            return value
        }
        func int(_ key: String) throws(TokenizerError) -> Int? {
            guard file.metadata[key] != nil else { return nil }
            guard let value = file.int(key) else { throw wrongType(key, "an integer") }
            return value
        }
        func bool(_ key: String) throws(TokenizerError) -> Bool? {
            guard file.metadata[key] != nil else { return nil }
            guard let value = file.bool(key) else { throw wrongType(key, "a bool") }
            return value
        }

        guard let model = try string("tokenizer.ggml.model") else {
            throw .invalidFile(path: file.path, line: nil, reason: "no tokenizer (metadata 'tokenizer.ggml.model' is absent)")
        }
        guard let tokens = try strings("tokenizer.ggml.tokens") else {
            throw .invalidFile(path: file.path, line: nil, reason: "metadata 'tokenizer.ggml.tokens' is absent")
        }
        var types: [Int32]?
        if file.metadata["tokenizer.ggml.token_type"] != nil {
            guard let values = file.ints("tokenizer.ggml.token_type"),
                values.allSatisfy({ Int32(exactly: $0) != nil })
            else { throw wrongType("tokenizer.ggml.token_type", "an array of 32-bit integers") }
            types = values.map { Int32($0) }
        }
        self.init(
            model: model, preTokenizer: try string("tokenizer.ggml.pre"), tokens: tokens,
            merges: try strings("tokenizer.ggml.merges") ?? [], tokenTypes: types,
            bosTokenID: try int("tokenizer.ggml.bos_token_id"), eosTokenID: try int("tokenizer.ggml.eos_token_id"),
            unknownTokenID: try int("tokenizer.ggml.unknown_token_id"),
            paddingTokenID: try int("tokenizer.ggml.padding_token_id"),
            addBOSToken: try bool("tokenizer.ggml.add_bos_token") ?? false,
            chatTemplate: try string("tokenizer.chat_template"))
    }
}

extension PretrainedTokenizer {
    /// The tokenizer of a GGUF model file; see
    /// ``PretrainedTokenizerDescription/init(gguf:)`` and ``init(_:)``.
    public convenience init(gguf file: GGUFFile) throws(TokenizerError) {
        try self.init(PretrainedTokenizerDescription(gguf: file))
    }
}
