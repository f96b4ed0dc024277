import CURecTensor

/// Shape of a GPT-2 style decoder.
public struct GPTConfig: Sendable, Equatable, Codable, CustomStringConvertible {
    /// Number of transformer blocks (`n_layer`).
    public var layers: Int
    /// Attention heads per block (`n_head`); must divide `width`.
    public var heads: Int
    /// Model width (`n_embd`).
    public var width: Int
    /// Maximum sequence length (`n_positions`).
    public var context: Int
    /// Vocabulary size (`vocab_size`).
    public var vocab: Int

    public init(layers: Int, heads: Int, width: Int, context: Int, vocab: Int) {
        self.layers = layers
        self.heads = heads
        self.width = width
        self.context = context
        self.vocab = vocab
    }

    /// Checks that every dimension is positive and the heads divide the width.
    public func validate() throws(GPTError) {
        for (name, value) in [("layers", layers), ("heads", heads), ("width", width),
                              ("context", context), ("vocab", vocab)] where value <= 0 {
            throw .invalidConfig("\(name) must be positive, got \(value)")
        }
        guard width % heads == 0 else {
            throw .invalidConfig("width \(width) is not divisible by heads \(heads)")
        }
    }

    /// Number of trainable parameters (tied LM head counted once).
    public var parameterCount: Int { GPTLayout(config: self).total }

    public var description: String {
        "GPT(layers: \(layers), heads: \(heads), width: \(width), context: \(context), vocab: \(vocab))"
    }
}

/// Why a GPT operation was refused.
public enum GPTError: Error, Equatable, CustomStringConvertible {
    /// The configuration is not usable.
    case invalidConfig(String)
    /// The batch has no rows, or a row has no tokens.
    case emptyInput(String)
    /// Rows of the batch differ in length.
    case raggedBatch(row: Int, length: Int, expected: Int)
    /// A sequence is longer than the model's context.
    case sequenceTooLong(row: Int, length: Int, context: Int)
    /// A token id is outside `0..<vocab`.
    case tokenOutOfRange(token: Int, row: Int, position: Int, vocab: Int)
    /// A target id is outside `0..<vocab` (and is not the ignore value -1).
    case targetOutOfRange(token: Int, row: Int, position: Int, vocab: Int)
    /// Inputs and targets differ in shape.
    case targetShapeMismatch(inputs: [Int], targets: [Int])
    /// Every target is -1, so there is no loss to optimise.
    case noTargets
    /// The loss is NaN or infinite; the step was refused and nothing changed.
    case nonFiniteLoss(Float)
    /// A gradient is NaN or infinite; the step was refused and nothing changed.
    case nonFiniteGradient(norm: Double)
    /// The optimizer state does not belong to this model.
    case optimizerMismatch(expected: Int, got: Int)
    /// An option is out of range (sampling, log-probabilities).
    case invalidArgument(String)
    /// A checkpoint tensor is missing.
    case missingTensor(name: String, file: String)
    /// A checkpoint tensor has the wrong shape.
    case tensorShapeMismatch(name: String, expected: [Int], found: [Int])
    /// A checkpoint could not be read or written.
    case checkpoint(String)

    public var description: String {
        switch self {
        case .invalidConfig(let why): return "invalid GPT config: \(why)"
        case .emptyInput(let why): return "empty input: \(why)"
        case let .raggedBatch(row, length, expected):
            return "batch row \(row) has \(length) tokens but row 0 has \(expected); rows must be equally long"
        case let .sequenceTooLong(row, length, context):
            return "sequence in row \(row) has \(length) tokens, longer than the model context of \(context)"
        case let .tokenOutOfRange(token, row, position, vocab):
            return "token id \(token) at row \(row), position \(position) is outside the vocabulary 0..<\(vocab)"
        case let .targetOutOfRange(token, row, position, vocab):
            return "target id \(token) at row \(row), position \(position) is outside the vocabulary 0..<\(vocab) (use -1 to ignore a position)"
        case let .targetShapeMismatch(inputs, targets):
            return "targets have shape \(targets) but inputs have shape \(inputs)"
        case .noTargets: return "every target is -1: nothing to train on"
        case .nonFiniteLoss(let loss):
            return "loss is \(loss); the training step was refused and weights and optimizer state are unchanged"
        case .nonFiniteGradient(let norm):
            return "gradient norm is \(norm); the training step was refused and weights and optimizer state are unchanged"
        case let .optimizerMismatch(expected, got):
            return "optimizer holds state for \(got) parameters but the model has \(expected)"
        case .invalidArgument(let why): return "invalid argument: \(why)"
        case let .missingTensor(name, file): return "checkpoint \(file) has no tensor '\(name)'"
        case let .tensorShapeMismatch(name, expected, found):
            return "checkpoint tensor '\(name)' has shape \(found), expected \(expected)"
        case .checkpoint(let why): return "checkpoint error: \(why)"
        }
    }
}

/// The parameter tensors of a GPT model, in storage order.
public enum GPTParam: Int, CaseIterable, Sendable {
    case wte, wpe, ln1w, ln1b, qkvw, qkvb, attprojw, attprojb
    case ln2w, ln2b, fcw, fcb, fcprojw, fcprojb, lnfw, lnfb

    /// Whether the tensor is stacked over layers (`[L, ...]`).
    public var perLayer: Bool { !(self == .wte || self == .wpe || self == .lnfw || self == .lnfb) }

    /// Shape of one instance (one layer's slice for per-layer tensors).
    public func shape(_ c: GPTConfig) -> [Int] {
        let C = c.width
        switch self {
        case .wte: return [c.vocab, C]
        case .wpe: return [c.context, C]
        case .ln1w, .ln1b, .ln2w, .ln2b, .attprojb, .fcprojb, .lnfw, .lnfb: return [C]
        case .qkvw: return [C, 3 * C]
        case .qkvb: return [3 * C]
        case .attprojw: return [C, C]
        case .fcw: return [C, 4 * C]
        case .fcb: return [4 * C]
        case .fcprojw: return [4 * C, C]
        }
    }

    /// Whether AdamW weight decay applies (matrices and embeddings).
    public var decays: Bool {
        switch self {
        case .wte, .wpe, .qkvw, .attprojw, .fcw, .fcprojw: return true
        default: return false
        }
    }

    /// Hugging Face GPT-2 name of layer `layer`'s instance.
    public func hfName(layer: Int) -> String {
        switch self {
        case .wte: return "wte.weight"
        case .wpe: return "wpe.weight"
        case .ln1w: return "h.\(layer).ln_1.weight"
        case .ln1b: return "h.\(layer).ln_1.bias"
        case .qkvw: return "h.\(layer).attn.c_attn.weight"
        case .qkvb: return "h.\(layer).attn.c_attn.bias"
        case .attprojw: return "h.\(layer).attn.c_proj.weight"
        case .attprojb: return "h.\(layer).attn.c_proj.bias"
        case .ln2w: return "h.\(layer).ln_2.weight"
        case .ln2b: return "h.\(layer).ln_2.bias"
        case .fcw: return "h.\(layer).mlp.c_fc.weight"
        case .fcb: return "h.\(layer).mlp.c_fc.bias"
        case .fcprojw: return "h.\(layer).mlp.c_proj.weight"
        case .fcprojb: return "h.\(layer).mlp.c_proj.bias"
        case .lnfw: return "ln_f.weight"
        case .lnfb: return "ln_f.bias"
        }
    }
}

/// Offsets of every parameter tensor inside the flat parameter buffer.
public struct GPTLayout: Sendable, Equatable {
    /// Start offset of each ``GPTParam`` (per-layer tensors are stacked `[L, ...]`).
    public let offsets: [Int]
    /// Element count of one instance of each ``GPTParam``.
    public let sizes: [Int]
    /// Total number of parameters.
    public let total: Int
    let layers: Int

    public init(config: GPTConfig) {
        var offsets: [Int] = []
        var sizes: [Int] = []
        var at = 0
        for p in GPTParam.allCases {
            let size = p.shape(config).reduce(1, *)
            offsets.append(at)
            sizes.append(size)
            at += size * (p.perLayer ? config.layers : 1)
        }
        self.offsets = offsets
        self.sizes = sizes
        self.total = at
        self.layers = config.layers
    }

    /// Offset of layer `layer`'s instance of `p` (layer ignored for global tensors).
    @inline(__always)
    public func offset(_ p: GPTParam, layer: Int = 0) -> Int {
        offsets[p.rawValue] + (p.perLayer ? layer * sizes[p.rawValue] : 0)
    }

    /// Weight-decay segments for ``AdamW``.
    public var segments: [ParameterSegment] {
        GPTParam.allCases.map { p in
            let n = sizes[p.rawValue] * (p.perLayer ? layers : 1)
            return ParameterSegment(range: offsets[p.rawValue]..<(offsets[p.rawValue] + n),
                                    decay: p.decays)
        }
    }
}
