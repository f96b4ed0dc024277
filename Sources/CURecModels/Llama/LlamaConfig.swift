import CURecTensor

/// Shape of a Llama-architecture decoder (RMSNorm, rotary positions, grouped-query attention,
/// SwiGLU feed-forward, output head tied to the token embedding).
public struct LlamaConfig: Sendable, Equatable, Codable, CustomStringConvertible {
    /// Number of transformer blocks (`llama.block_count`).
    public var layers: Int
    /// Model width (`llama.embedding_length`).
    public var width: Int
    /// Width of the SwiGLU feed-forward layer (`llama.feed_forward_length`).
    public var hidden: Int
    /// Query heads (`llama.attention.head_count`); must divide `width`.
    public var heads: Int
    /// Key/value heads (`llama.attention.head_count_kv`); must divide `heads`.
    public var kvHeads: Int
    /// Base θ of the rotary frequencies (`llama.rope.freq_base`).
    public var ropeBase: Double
    /// Epsilon of the RMS normalisations (`llama.attention.layer_norm_rms_epsilon`).
    public var rmsEps: Float
    /// Longest sequence (`llama.context_length`).
    public var context: Int
    /// Vocabulary size (rows of the token embedding).
    public var vocab: Int

    public init(layers: Int, width: Int, hidden: Int, heads: Int, kvHeads: Int,
                ropeBase: Double = 10_000, rmsEps: Float = 1e-5, context: Int, vocab: Int) {
        self.layers = layers
        self.width = width
        self.hidden = hidden
        self.heads = heads
        self.kvHeads = kvHeads
        self.ropeBase = ropeBase
        self.rmsEps = rmsEps
        self.context = context
        self.vocab = vocab
    }

    /// Size of one attention head, `width / heads`.
    public var headSize: Int { width / heads }
    /// Width of the key and value projections, `kvHeads · headSize`.
    public var kvWidth: Int { kvHeads * headSize }

    /// Checks that every dimension is positive, the heads divide the width into heads of even
    /// size, the key/value heads divide the query heads, and θ and ε are positive and finite.
    public func validate() throws(LlamaError) {
        for (name, value) in [("layers", layers), ("width", width), ("hidden", hidden),
                              ("heads", heads), ("kvHeads", kvHeads), ("context", context),
                              ("vocab", vocab)] where value <= 0 {
            throw .invalidConfig("\(name) must be positive, got \(value)")
        }
        guard width % heads == 0 else {
            throw .invalidConfig("width \(width) is not divisible by heads \(heads)")
        }
        guard headSize % 2 == 0 else {
            throw .invalidConfig("head size \(headSize) must be even for rotary embedding")
        }
        guard heads % kvHeads == 0 else {
            throw .invalidConfig("heads \(heads) is not a multiple of key/value heads \(kvHeads)")
        }
        guard ropeBase > 0, ropeBase.isFinite else {
            throw .invalidConfig("rope base must be positive and finite, got \(ropeBase)")
        }
        guard rmsEps > 0, rmsEps.isFinite else {
            throw .invalidConfig("RMS epsilon must be positive and finite, got \(rmsEps)")
        }
        guard context <= Int(Int32.max), vocab <= Int(Int32.max) else {
            throw .invalidConfig("context and vocab must fit in 32 bits")
        }
    }

    /// Number of parameters (tied head counted once).
    public var parameterCount: Int { LlamaLayout(config: self).total }

    public var description: String {
        "Llama(layers: \(layers), width: \(width), hidden: \(hidden), heads: \(heads)/\(kvHeads), "
            + "context: \(context), vocab: \(vocab))"
    }
}

/// Why a Llama operation was refused.
public enum LlamaError: Error, Equatable, CustomStringConvertible {
    /// The configuration is not usable.
    case invalidConfig(String)
    /// The model file describes another architecture.
    case unsupportedArchitecture(String, file: String)
    /// A metadata key the model needs is absent or has the wrong type.
    case missingMetadata(key: String, file: String)
    /// The model file's metadata or tensors contradict each other.
    case inconsistentModel(String, file: String)
    /// A weight tensor is missing from the model file.
    case missingTensor(name: String, file: String)
    /// A weight tensor has the wrong shape.
    case tensorShapeMismatch(name: String, expected: [Int], found: [Int], file: String)
    /// The model file could not be read.
    case modelFile(String, file: String)
    /// The batch has no rows, or a row has no tokens.
    case emptyInput(String)
    /// Rows of the batch differ in length.
    case raggedBatch(row: Int, length: Int, expected: Int)
    /// A sequence is longer than the model's context (or the cache's capacity).
    case sequenceTooLong(row: Int, length: Int, context: Int)
    /// A token id is outside `0..<vocab`.
    case tokenOutOfRange(token: Int, row: Int, position: Int, vocab: Int)
    /// A target id is outside `0..<vocab` (and is not the ignore value -1).
    case targetOutOfRange(token: Int, row: Int, position: Int, vocab: Int)
    /// Inputs and targets (or weights) differ in shape.
    case targetShapeMismatch(inputs: [Int], targets: [Int])
    /// Every target is -1, so there is no loss.
    case noTargets
    /// The loss is NaN or infinite; the step was refused and nothing changed.
    case nonFiniteLoss(Float)
    /// A gradient is NaN or infinite; the step was refused and nothing changed.
    case nonFiniteGradient(norm: Double)
    /// The optimizer state does not belong to this model.
    case optimizerMismatch(expected: Int, got: Int)
    /// A cache row index is outside the cache.
    case rowOutOfRange(row: Int, rows: Int)
    /// An argument is out of range.
    case invalidArgument(String)
    /// The operation (training, merging) needs float32 weights but the model keeps its
    /// matrices quantized.
    case quantizedWeights(operation: String)

    public var description: String {
        switch self {
        case .invalidConfig(let why): return "invalid Llama config: \(why)"
        case let .unsupportedArchitecture(arch, file):
            return "\(file): architecture '\(arch)' is not supported (expected 'llama')"
        case let .missingMetadata(key, file): return "\(file): metadata key '\(key)' is missing or has the wrong type"
        case let .inconsistentModel(why, file): return "\(file): \(why)"
        case let .missingTensor(name, file): return "\(file) has no tensor '\(name)'"
        case let .tensorShapeMismatch(name, expected, found, file):
            return "\(file): tensor '\(name)' has shape \(found), expected \(expected)"
        case let .modelFile(why, file): return "cannot read model file \(file): \(why)"
        case .emptyInput(let why): return "empty input: \(why)"
        case let .raggedBatch(row, length, expected):
            return "batch row \(row) has \(length) tokens but row 0 has \(expected); rows must be equally long"
        case let .sequenceTooLong(row, length, context):
            return "sequence in row \(row) would have \(length) tokens, more than the \(context) available"
        case let .tokenOutOfRange(token, row, position, vocab):
            return "token id \(token) at row \(row), position \(position) is outside the vocabulary 0..<\(vocab)"
        case let .targetOutOfRange(token, row, position, vocab):
            return "target id \(token) at row \(row), position \(position) is outside the vocabulary 0..<\(vocab) (use -1 to ignore a position)"
        case let .targetShapeMismatch(inputs, targets):
            return "targets have shape \(targets) but inputs have shape \(inputs)"
        case .noTargets: return "every target is -1: there is no loss"
        case .nonFiniteLoss(let loss):
            return "loss is \(loss); the training step was refused and weights and optimizer state are unchanged"
        case .nonFiniteGradient(let norm):
            return "gradient norm is \(norm); the training step was refused and weights and optimizer state are unchanged"
        case let .optimizerMismatch(expected, got):
            return "optimizer holds state for \(got) parameters but the model has \(expected)"
        case let .rowOutOfRange(row, rows): return "cache row \(row) is outside 0..<\(rows)"
        case .invalidArgument(let why): return "invalid argument: \(why)"
        case .quantizedWeights(let operation):
            return "\(operation) needs float32 weights, but this model keeps its matrices quantized (load it with weights: .float32)"
        }
    }
}

/// The parameter tensors of a Llama model, in storage order. Matrices are `[out, in]`.
public enum LlamaParam: Int, CaseIterable, Sendable {
    case tokenEmbedding
    case attentionNorm, query, key, value, attentionOutput
    case ffnNorm, gate, up, down
    case outputNorm

    /// Whether the tensor exists once per block (stacked `[L, ...]` in storage).
    public var perLayer: Bool { !(self == .tokenEmbedding || self == .outputNorm) }

    /// Row-major shape of one instance.
    public func shape(_ c: LlamaConfig) -> [Int] {
        switch self {
        case .tokenEmbedding: return [c.vocab, c.width]
        case .attentionNorm, .ffnNorm, .outputNorm: return [c.width]
        case .query, .attentionOutput: return [c.width, c.width]
        case .key, .value: return [c.kvWidth, c.width]
        case .gate, .up: return [c.hidden, c.width]
        case .down: return [c.width, c.hidden]
        }
    }

    /// Whether the tensor is a matrix (everything but the norm weights).
    public var isMatrix: Bool {
        switch self {
        case .attentionNorm, .ffnNorm, .outputNorm: return false
        default: return true
        }
    }

    /// Whether AdamW weight decay applies (matrices and the embedding, not the norms).
    public var decays: Bool {
        switch self {
        case .attentionNorm, .ffnNorm, .outputNorm: return false
        default: return true
        }
    }

    /// Name of block `layer`'s instance in a GGUF file (layer ignored for global tensors).
    public func ggufName(layer: Int = 0) -> String {
        switch self {
        case .tokenEmbedding: return "token_embd.weight"
        case .attentionNorm: return "blk.\(layer).attn_norm.weight"
        case .query: return "blk.\(layer).attn_q.weight"
        case .key: return "blk.\(layer).attn_k.weight"
        case .value: return "blk.\(layer).attn_v.weight"
        case .attentionOutput: return "blk.\(layer).attn_output.weight"
        case .ffnNorm: return "blk.\(layer).ffn_norm.weight"
        case .gate: return "blk.\(layer).ffn_gate.weight"
        case .up: return "blk.\(layer).ffn_up.weight"
        case .down: return "blk.\(layer).ffn_down.weight"
        case .outputNorm: return "output_norm.weight"
        }
    }
}

/// Offsets of every parameter tensor inside the flat parameter buffer.
public struct LlamaLayout: Sendable, Equatable {
    /// Start offset of each ``LlamaParam`` (per-layer tensors are stacked `[L, ...]`).
    public let offsets: [Int]
    /// Element count of one instance of each ``LlamaParam``.
    public let sizes: [Int]
    /// Total number of parameters.
    public let total: Int
    /// Number of blocks.
    public let layers: Int

    /// The layout of every tensor (`.float32`), or of the norm weights only (`.quantized`: the
    /// matrices live in the model's ``LlamaLinear`` layers and have size 0 here).
    public init(config: LlamaConfig, format: LlamaWeightFormat = .float32) {
        var offsets: [Int] = []
        var sizes: [Int] = []
        var at = 0
        for p in LlamaParam.allCases {
            let size = format == .quantized && p.isMatrix ? 0 : p.shape(config).reduce(1, *)
            offsets.append(at)
            sizes.append(size)
            at += size * (p.perLayer ? config.layers : 1)
        }
        self.offsets = offsets
        self.sizes = sizes
        self.total = at
        self.layers = config.layers
    }

    /// Offset of block `layer`'s instance of `p` (layer ignored for global tensors).
    @inline(__always)
    public func offset(_ p: LlamaParam, layer: Int = 0) -> Int {
        offsets[p.rawValue] + (p.perLayer ? layer * sizes[p.rawValue] : 0)
    }

    /// Element range of block `layer`'s instance of `p`.
    public func range(_ p: LlamaParam, layer: Int = 0) -> Range<Int> {
        let o = offset(p, layer: layer)
        return o..<(o + sizes[p.rawValue])
    }
}
