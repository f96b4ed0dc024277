/// The tokenizer of a pretrained language model: byte-level BPE with the model's special
/// tokens, its beginning/end-of-sequence ids and its chat template.
///
/// Built from a ``PretrainedTokenizerDescription`` (the GGUF `tokenizer.*` keys). Tokens typed
/// control, user-defined or unknown are special: their text is matched as one id when
/// special tokens are allowed (see ``BPETokenizer/encode(_:allowingSpecialTokens:)``).
/// Bytes the vocabulary has no token for are left out of encodings, as the reference
/// tokenizers do (SmolLM2 lacks a few control characters and bytes rare in UTF-8).
public final class PretrainedTokenizer: Sendable {
    /// The byte-level BPE tokenizer doing the work.
    public let bpe: BPETokenizer
    /// Beginning-of-sequence token, if the model has one.
    public let bosTokenID: Int32?
    /// End-of-sequence token, if the model has one.
    public let eosTokenID: Int32?
    /// Padding token, if the model has one.
    public let paddingTokenID: Int32?
    /// Whether ``encode(_:allowingSpecialTokens:addingBOSToken:)`` puts ``bosTokenID`` first
    /// by default.
    public let addsBOSToken: Bool
    /// The recognised chat template, nil when the model has none.
    public let chatTemplate: ChatTemplate?
    /// Tokens that end an assistant turn, for stop conditions: the chat template's end-of-turn
    /// token (ChatML's `<|im_end|>`), the end-of-sequence token and `<|endoftext|>`, each
    /// where the vocabulary has it as a special token, without repeats.
    public let endOfTurnTokenIDs: [Int32]

    /// Builds the tokenizer. Throws ``TokenizerError/unsupported(_:)`` for a tokenizer model
    /// other than `gpt2`, an unknown or missing pre-tokenizer or a chat template that is not
    /// recognised, and other errors for inconsistent vocabularies, merges or ids.
    public init(_ description: PretrainedTokenizerDescription) throws(TokenizerError) {
        guard description.model == "gpt2" else {
            throw .unsupported("tokenizer model '\(description.model)'; only 'gpt2' (byte-level BPE) is implemented")
        }
        guard let preName = description.preTokenizer else {
            throw .unsupported("no pre-tokenizer name (tokenizer.ggml.pre), so the text split is unknown")
        }
        guard let preTokenization = PretrainedTokenizerDescription.preTokenization(named: preName) else {
            throw .unsupported("pre-tokenizer '\(preName)'")
        }
        let tokens = description.tokens
        if let types = description.tokenTypes, types.count != tokens.count {
            throw .invalidConfiguration("\(types.count) token types for \(tokens.count) tokens")
        }
        var merges: [(String, String)] = []
        merges.reserveCapacity(description.merges.count)
        for (rank, merge) in description.merges.enumerated() {
            // Byte-level tokens never contain a space, so the first space after the first
            // character separates the two parts.
            guard let space = merge.dropFirst().firstIndex(of: " ") else {
                throw .invalidConfiguration("merge \(rank) '\(merge)' is not two tokens separated by a space")
            }
            merges.append((String(merge[..<space]), String(merge[merge.index(after: space)...])))
        }
        let specialIDs = try Self.specialIDs(description)
        let bpe = try BPETokenizer(
            tokens: tokens, merges: merges, specialTokens: specialIDs.map { tokens[$0] },
            preTokenization: preTokenization, droppingBytesWithoutToken: true)

        func tokenID(_ id: Int?, _ name: String) throws(TokenizerError) -> Int32? {
            guard let id else { return nil }
            guard id >= 0, id < tokens.count else {
                throw .invalidConfiguration("\(name) token id \(id) is outside the vocabulary of \(tokens.count)")
            }
            return Int32(id)
        }
        let bos = try tokenID(description.bosTokenID, "beginning-of-sequence")
        let eos = try tokenID(description.eosTokenID, "end-of-sequence")
        let padding = try tokenID(description.paddingTokenID, "padding")
        _ = try tokenID(description.unknownTokenID, "unknown")
        if description.addBOSToken && bos == nil {
            throw .invalidConfiguration("the beginning-of-sequence token is to be added but has no id")
        }
        let template = try description.chatTemplate.map { text throws(TokenizerError) in
            try ChatTemplate(jinja: text)
        }
        if let template {
            for marker in template.markerTokens where bpe.id(of: marker).map(bpe.isSpecialToken) != true {
                throw .invalidConfiguration("the chat template needs '\(marker)' as a special token")
            }
        }

        var endOfTurn: [Int32] = []
        for candidate in [template.flatMap { bpe.id(of: $0.endOfTurnToken) }, eos, bpe.id(of: "<|endoftext|>")] {
            if let id = candidate, bpe.isSpecialToken(id), !endOfTurn.contains(id) { endOfTurn.append(id) }
        }
        self.bpe = bpe
        self.bosTokenID = bos
        self.eosTokenID = eos
        self.paddingTokenID = padding
        self.addsBOSToken = description.addBOSToken
        self.chatTemplate = template
        self.endOfTurnTokenIDs = endOfTurn
    }

    /// Ids of the special tokens: those typed control, user-defined or unknown, or without
    /// types the beginning/end-of-sequence, unknown and padding tokens. Empty strings are skipped.
    private static func specialIDs(_ d: PretrainedTokenizerDescription) throws(TokenizerError) -> [Int] {
        var ids: [Int] = []
        if let types = d.tokenTypes {
            for (id, raw) in types.enumerated() {
                guard let type = VocabularyTokenType(rawValue: raw) else {
                    throw .invalidConfiguration("token \(id) has unknown type \(raw)")
                }
                if type.isSpecial && !d.tokens[id].isEmpty { ids.append(id) }
            }
        } else {
            for id in [d.bosTokenID, d.eosTokenID, d.unknownTokenID, d.paddingTokenID].compactMap({ $0 })
            where id >= 0 && id < d.tokens.count && !d.tokens[id].isEmpty && !ids.contains(id) {
                ids.append(id)
            }
        }
        return ids
    }

    /// Number of tokens.
    public var vocabularySize: Int { bpe.vocabularySize }

    /// ``endOfTurnTokenIDs`` as one-token stop sequences, for ``SamplingOptions/stopSequences``.
    public var endOfTurnStopSequences: [[Int]] { endOfTurnTokenIDs.map { [Int($0)] } }

    /// Token ids of `text`.
    ///
    /// - Parameters:
    ///   - allowingSpecialTokens: whether the text of a special token (`<|im_start|>`, …)
    ///     becomes its id; pass false for text that must not forge control tokens.
    ///   - addingBOSToken: whether ``bosTokenID`` goes first; nil follows ``addsBOSToken``.
    public func encode(
        _ text: String, allowingSpecialTokens: Bool = true, addingBOSToken: Bool? = nil
    ) -> [Int32] {
        let ids = bpe.encode(text, allowingSpecialTokens: allowingSpecialTokens)
        if addingBOSToken ?? addsBOSToken, let bos = bosTokenID { return [bos] + ids }
        return ids
    }

    /// The text of `ids`; special tokens give their text unless `skippingSpecialTokens`.
    /// Invalid UTF-8 (e.g. half a character at the end of a partial sequence) becomes U+FFFD.
    public func decode(_ ids: [Int32], skippingSpecialTokens: Bool = false) throws(TokenizerError) -> String {
        try bpe.decode(ids, skippingSpecialTokens: skippingSpecialTokens)
    }

    /// The prompt text of `conversation` under the model's chat template; see
    /// ``ChatTemplate/render(_:addingGenerationPrompt:)``. Throws when the model has no template.
    public func prompt(
        for conversation: [ChatMessage], addingGenerationPrompt: Bool = true
    ) throws(TokenizerError) -> String {
        guard let chatTemplate else { throw .unsupported("the model has no chat template") }
        return chatTemplate.render(conversation, addingGenerationPrompt: addingGenerationPrompt)
    }

    /// Token ids of ``prompt(for:addingGenerationPrompt:)``, as Hugging Face's
    /// `apply_chat_template(tokenize=True)` gives them: the rendered text with special tokens
    /// matched (so special-token text inside a message becomes that token too) and no
    /// beginning-of-sequence token beyond what the template writes.
    public func encode(
        conversation: [ChatMessage], addingGenerationPrompt: Bool = true
    ) throws(TokenizerError) -> [Int32] {
        bpe.encode(try prompt(for: conversation, addingGenerationPrompt: addingGenerationPrompt))
    }
}
