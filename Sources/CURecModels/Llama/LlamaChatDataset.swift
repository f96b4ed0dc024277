import CURecTensor

/// Why fine-tuning was refused or stopped.
public enum LlamaFineTuningError: Error, Equatable, CustomStringConvertible {
    /// The fine-tuning configuration is not usable.
    case invalidConfig(String)
    /// A conversation cannot be a training example.
    case invalidExample(index: Int, reason: String)
    /// An example is longer than the maximum length (policy ``LlamaOverlongPolicy/refuse``, or
    /// its completion alone does not fit).
    case exampleTooLong(index: Int, tokens: Int, maxLength: Int)
    /// There is no example to train on.
    case noExamples
    /// The tokenizer could not render or encode a conversation.
    case tokenizer(String)
    /// The model refused a step.
    case model(LlamaError)
    /// The adapters refused an operation.
    case adapters(LoRAError)
    /// A checkpoint could not be written or read, or belongs to another run.
    case checkpoint(String, directory: String)
    /// Training was cancelled between two steps.
    case cancelled

    public var description: String {
        switch self {
        case .invalidConfig(let why): return "invalid fine-tuning config: \(why)"
        case let .invalidExample(index, reason): return "example \(index): \(reason)"
        case let .exampleTooLong(index, tokens, maxLength):
            return "example \(index) has \(tokens) tokens, more than the maximum length \(maxLength)"
        case .noExamples: return "there are no training examples"
        case .tokenizer(let why): return "tokenizer: \(why)"
        case .model(let e): return e.description
        case .adapters(let e): return e.description
        case let .checkpoint(why, directory): return "checkpoint \(directory): \(why)"
        case .cancelled: return "fine-tuning was cancelled"
        }
    }
}

/// What happens to a conversation longer than the maximum length.
public enum LlamaOverlongPolicy: String, Sendable, Codable, CaseIterable {
    /// The data set is refused with ``LlamaFineTuningError/exampleTooLong(index:tokens:maxLength:)``.
    case refuse
    /// The example is left out (listed in ``LlamaChatDataset/skipped``).
    case skip
    /// The oldest prompt tokens are dropped until it fits; the whole completion and at least
    /// one prompt token stay. An example whose completion alone does not fit is refused.
    case truncatePrompt
}

/// One training sequence: prompt tokens followed by completion tokens; the loss is taken only
/// on the completion (the model predicts `tokens[t+1]` from `tokens[...t]` for every
/// `t + 1 >= completionStart`).
public struct LlamaTrainingSequence: Sendable, Equatable, Codable {
    /// Token ids.
    public let tokens: [Int]
    /// Index of the first completion token, in `1..<tokens.count`.
    public let completionStart: Int

    /// A sequence; refused unless `1 <= completionStart < tokens.count` and every id is
    /// non-negative.
    public init(tokens: [Int], completionStart: Int) throws(LlamaFineTuningError) {
        guard completionStart >= 1, completionStart < tokens.count else {
            throw .invalidExample(index: 0, reason: "completion start \(completionStart) is outside 1..<\(tokens.count)")
        }
        guard tokens.allSatisfy({ $0 >= 0 }) else { throw .invalidExample(index: 0, reason: "negative token id") }
        self.tokens = tokens
        self.completionStart = completionStart
    }

    /// Number of completion tokens (the loss positions).
    public var completionCount: Int { tokens.count - completionStart }
}

/// Chat conversations turned into training sequences under a model's chat template.
///
/// Each conversation's LAST message is the completion and must be the assistant's; it needs at
/// least one message before it. The tokens are the chat template's rendering of the whole
/// conversation (no generation prompt), cut after the end-of-turn token that closes the last
/// message (ChatML: `<|im_end|>`, so the newline the template writes after it is not trained);
/// the prompt is the rendering of the earlier messages with the generation prompt
/// (`<|im_start|>assistant\n`), which must be a prefix of those tokens. The loss covers the
/// completion's tokens including its end-of-turn token.
public struct LlamaChatDataset: Sendable {
    /// The training sequences, in the order of the conversations kept.
    public let sequences: [LlamaTrainingSequence]
    /// The id that fills batch rows shorter than the longest (never trained on).
    public let paddingToken: Int
    /// Indices of the conversations left out by ``LlamaOverlongPolicy/skip``.
    public let skipped: [Int]
    /// Indices of the conversations shortened by ``LlamaOverlongPolicy/truncatePrompt``.
    public let truncated: [Int]

    /// Pre-tokenised sequences (`paddingToken` fills short rows; it is never trained on).
    public init(sequences: [LlamaTrainingSequence], paddingToken: Int = 0) throws(LlamaFineTuningError) {
        guard !sequences.isEmpty else { throw .noExamples }
        guard paddingToken >= 0 else { throw .invalidConfig("padding token must be non-negative, got \(paddingToken)") }
        self.sequences = sequences
        self.paddingToken = paddingToken
        self.skipped = []
        self.truncated = []
    }

    /// Tokenises `conversations` with `tokenizer`'s chat template.
    ///
    /// - Parameters:
    ///   - maxLength: most tokens of one sequence (prompt + completion); the model sees the
    ///     first `maxLength − 1` as input, so it must not exceed the context by more than one.
    ///   - overlong: what to do with longer conversations.
    public init(conversations: [[ChatMessage]], tokenizer: PretrainedTokenizer, maxLength: Int,
                overlong: LlamaOverlongPolicy = .refuse) throws(LlamaFineTuningError) {
        guard maxLength >= 2 else { throw .invalidConfig("maximum length must be at least 2, got \(maxLength)") }
        let endOfTurn = Set(tokenizer.endOfTurnTokenIDs.map(Int.init))
        var sequences: [LlamaTrainingSequence] = [], skipped: [Int] = [], truncated: [Int] = []
        for (index, conversation) in conversations.enumerated() {
            guard let last = conversation.last, last.role == .assistant else {
                throw .invalidExample(index: index, reason: "the last message must be the assistant's completion")
            }
            guard conversation.count >= 2 else {
                throw .invalidExample(index: index, reason: "there is no prompt before the completion")
            }
            let full: [Int], prompt: [Int]
            do {
                full = try tokenizer.encode(conversation: conversation, addingGenerationPrompt: false).map(Int.init)
                prompt = try tokenizer.encode(conversation: Array(conversation.dropLast()), addingGenerationPrompt: true).map(Int.init)
            } catch {
                throw .tokenizer(error.description)
            }
            guard full.count > prompt.count, full.starts(with: prompt) else {
                throw .invalidExample(index: index, reason: "the rendered prompt is not a prefix of the rendered conversation")
            }
            // Cut after the last end-of-turn token of the completion.
            var end = full.count
            if let eot = full[prompt.count...].lastIndex(where: { endOfTurn.contains($0) }) { end = eot + 1 }
            var tokens = Array(full[..<end]), start = prompt.count
            if tokens.count > maxLength {
                switch overlong {
                case .refuse:
                    throw .exampleTooLong(index: index, tokens: tokens.count, maxLength: maxLength)
                case .skip:
                    skipped.append(index)
                    continue
                case .truncatePrompt:
                    let completion = tokens.count - start
                    guard completion + 1 <= maxLength else {
                        throw .exampleTooLong(index: index, tokens: tokens.count, maxLength: maxLength)
                    }
                    let cut = tokens.count - maxLength
                    tokens.removeFirst(cut)
                    start -= cut
                    truncated.append(index)
                }
            }
            sequences.append(try LlamaTrainingSequence(tokens: tokens, completionStart: start))
        }
        guard !sequences.isEmpty else { throw .noExamples }
        self.sequences = sequences
        self.paddingToken = Int(tokenizer.paddingTokenID ?? tokenizer.eosTokenID ?? 0)
        self.skipped = skipped
        self.truncated = truncated
    }

    /// Longest sequence.
    public var maxSequenceLength: Int { sequences.map(\.tokens.count).max() ?? 0 }

    /// A fingerprint of the tokens, completion starts and padding token (FNV-1a), stored in
    /// checkpoints so that a run resumes only on the same data.
    public var fingerprint: UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ x: Int) { h = (h ^ UInt64(bitPattern: Int64(x))) &* 0x100_0000_01b3 }
        mix(paddingToken)
        mix(sequences.count)
        for s in sequences {
            mix(s.tokens.count)
            mix(s.completionStart)
            for t in s.tokens { mix(t) }
        }
        return h
    }
}
