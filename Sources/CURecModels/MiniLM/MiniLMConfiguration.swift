import CURecTensor

/// Shape hyper-parameters of a BERT encoder such as all-MiniLM-L6-v2.
public struct MiniLMConfiguration: Sendable, Equatable {
    /// Rows of the word-embedding table.
    public var vocabularySize: Int
    /// Width of every token vector.
    public var hiddenSize: Int
    /// Number of transformer layers.
    public var layers: Int
    /// Attention heads per layer; must divide `hiddenSize`.
    public var heads: Int
    /// Width of the feed-forward layer.
    public var intermediateSize: Int
    /// Rows of the position-embedding table (longest sequence the model accepts).
    public var maxPositions: Int
    /// Rows of the token-type (segment) table.
    public var tokenTypes: Int
    /// Epsilon of every LayerNorm.
    public var layerNormEpsilon: Float
    /// Longest tokenized text, `[CLS]` and `[SEP]` included; longer texts are truncated.
    public var maxSequenceLength: Int

    /// The sentence-transformers all-MiniLM-L6-v2 model: 6 layers, 12 heads, 384 wide,
    /// texts truncated to 256 tokens.
    public static let allMiniLML6v2 = MiniLMConfiguration(
        vocabularySize: 30522, hiddenSize: 384, layers: 6, heads: 12, intermediateSize: 1536,
        maxPositions: 512, tokenTypes: 2, layerNormEpsilon: 1e-12, maxSequenceLength: 256)

    /// Creates a configuration; `validate()` checks it.
    public init(
        vocabularySize: Int, hiddenSize: Int, layers: Int, heads: Int, intermediateSize: Int,
        maxPositions: Int, tokenTypes: Int, layerNormEpsilon: Float, maxSequenceLength: Int
    ) {
        self.vocabularySize = vocabularySize
        self.hiddenSize = hiddenSize
        self.layers = layers
        self.heads = heads
        self.intermediateSize = intermediateSize
        self.maxPositions = maxPositions
        self.tokenTypes = tokenTypes
        self.layerNormEpsilon = layerNormEpsilon
        self.maxSequenceLength = maxSequenceLength
    }

    /// Width of one attention head.
    public var headSize: Int { hiddenSize / heads }

    /// Throws if the numbers are inconsistent.
    public func validate() throws(MiniLMError) {
        guard vocabularySize > 0, hiddenSize > 0, layers > 0, heads > 0, intermediateSize > 0,
            tokenTypes > 0, layerNormEpsilon > 0
        else {
            throw .invalidConfiguration("every size must be positive: \(self)")
        }
        guard hiddenSize % heads == 0 else {
            throw .invalidConfiguration("hiddenSize \(hiddenSize) is not a multiple of heads \(heads)")
        }
        guard maxSequenceLength >= 2, maxSequenceLength <= maxPositions else {
            throw .invalidConfiguration(
                "maxSequenceLength \(maxSequenceLength) must be in 2...maxPositions (\(maxPositions))")
        }
    }
}

/// Why a MiniLM encoder could not be loaded or run.
public enum MiniLMError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The weights file could not be read.
    case weights(SafeTensorsError)
    /// The vocabulary could not be read or lacks special tokens.
    case tokenizer(TokenizerError)
    /// The weights file has no tensor of that name (tried with and without the `bert.` prefix).
    case missingTensor(path: String, name: String)
    /// A tensor's shape differs from what the configuration requires.
    case shapeMismatch(path: String, name: String, expected: [Int], actual: [Int])
    /// The configuration is inconsistent, or the vocabulary does not fit the embeddings.
    case invalidConfiguration(String)
    /// A token id given to `encode(tokenIDs:)` is outside the vocabulary, or a row is too long.
    case invalidInput(String)

    public var description: String {
        switch self {
        case let .weights(error): return "MiniLM weights: \(error)"
        case let .tokenizer(error): return "MiniLM vocabulary: \(error)"
        case let .missingTensor(path, name):
            return "MiniLM weights \(path): no tensor '\(name)' (looked with and without the 'bert.' prefix)"
        case let .shapeMismatch(path, name, expected, actual):
            return "MiniLM weights \(path): tensor '\(name)' has shape \(actual), expected \(expected)"
        case let .invalidConfiguration(reason): return "MiniLM configuration: \(reason)"
        case let .invalidInput(reason): return "MiniLM input: \(reason)"
        }
    }
}
