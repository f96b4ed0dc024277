/// What a vocabulary entry is, as GGUF files (`tokenizer.ggml.token_type`) and llama.cpp
/// classify tokens.
public enum VocabularyTokenType: Int32, Sendable, Equatable, CaseIterable {
    /// No type given.
    case undefined = 0
    /// An ordinary token, produced by merging.
    case normal = 1
    /// The unknown-token placeholder.
    case unknown = 2
    /// A control token such as `<|im_start|>` or `<|endoftext|>`.
    case control = 3
    /// A token added by the model's authors, matched in text as a whole.
    case userDefined = 4
    /// A placeholder that is never produced.
    case unused = 5
    /// A single-byte token of a SentencePiece vocabulary (`<0x0A>`).
    case byte = 6

    /// Whether text holding this token's string is matched to it as a whole before
    /// pre-tokenization (and the token is never produced by merging).
    public var isSpecial: Bool {
        switch self {
        case .unknown, .control, .userDefined: return true
        case .undefined, .normal, .unused, .byte: return false
        }
    }
}

/// The tokenizer of a pretrained language model as its file describes it (the GGUF
/// `tokenizer.*` keys), in plain values. ``PretrainedTokenizer`` builds a working tokenizer
/// from it.
public struct PretrainedTokenizerDescription: Sendable, Equatable {
    /// Tokenizer kind (`tokenizer.ggml.model`); only `gpt2` (byte-level BPE) is supported.
    public var model: String
    /// Pre-tokenizer name (`tokenizer.ggml.pre`), as llama.cpp names them: `gpt-2`, `smollm`, …
    public var preTokenizer: String?
    /// Token strings in id order (`tokenizer.ggml.tokens`), in the byte-level alphabet.
    public var tokens: [String]
    /// Merges in rank order, each `"left right"` (`tokenizer.ggml.merges`).
    public var merges: [String]
    /// Token types by id (`tokenizer.ggml.token_type`), raw ``VocabularyTokenType`` values.
    public var tokenTypes: [Int32]?
    /// Beginning-of-sequence token (`tokenizer.ggml.bos_token_id`).
    public var bosTokenID: Int?
    /// End-of-sequence token (`tokenizer.ggml.eos_token_id`).
    public var eosTokenID: Int?
    /// Unknown token (`tokenizer.ggml.unknown_token_id`).
    public var unknownTokenID: Int?
    /// Padding token (`tokenizer.ggml.padding_token_id`).
    public var paddingTokenID: Int?
    /// Whether encoding a prompt puts the beginning-of-sequence token first
    /// (`tokenizer.ggml.add_bos_token`).
    public var addBOSToken: Bool
    /// The Jinja chat template (`tokenizer.chat_template`).
    public var chatTemplate: String?

    /// A description from its parts; see the properties.
    public init(
        model: String, preTokenizer: String?, tokens: [String], merges: [String],
        tokenTypes: [Int32]? = nil, bosTokenID: Int? = nil, eosTokenID: Int? = nil,
        unknownTokenID: Int? = nil, paddingTokenID: Int? = nil, addBOSToken: Bool = false,
        chatTemplate: String? = nil
    ) {
        self.model = model
        self.preTokenizer = preTokenizer
        self.tokens = tokens
        self.merges = merges
        self.tokenTypes = tokenTypes
        self.bosTokenID = bosTokenID
        self.eosTokenID = eosTokenID
        self.unknownTokenID = unknownTokenID
        self.paddingTokenID = paddingTokenID
        self.addBOSToken = addBOSToken
        self.chatTemplate = chatTemplate
    }

    /// The split a llama.cpp pre-tokenizer name stands for, or nil when it is not supported.
    ///
    /// `gpt-2` is GPT-2's split; `smollm` and the names llama.cpp gives the same two
    /// expressions (a single `\p{N}` first, then GPT-2's) are
    /// ``BPEPreTokenization/gpt2IndividualDigits``.
    public static func preTokenization(named name: String) -> BPEPreTokenization? {
        switch name {
        case "gpt-2":
            return .gpt2
        case "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b":
            return .gpt2IndividualDigits
        default:
            return nil
        }
    }
}
