import CURecTensor

/// A projection of a Llama block that can carry a low-rank adapter, named as in Hugging Face's
/// `LlamaForCausalLM` (the raw value is the module name `peft` matches in `target_modules`).
public enum LoRATarget: String, CaseIterable, Sendable, Codable, Comparable {
    case query = "q_proj"
    case key = "k_proj"
    case value = "v_proj"
    case output = "o_proj"
    case gate = "gate_proj"
    case up = "up_proj"
    case down = "down_proj"

    /// The model parameter whose dense weight the adapter augments.
    public var parameter: LlamaParam {
        switch self {
        case .query: return .query
        case .key: return .key
        case .value: return .value
        case .output: return .attentionOutput
        case .gate: return .gate
        case .up: return .up
        case .down: return .down
        }
    }

    /// The Hugging Face module path inside a decoder layer (`self_attn.q_proj`, `mlp.down_proj`).
    public var moduleName: String {
        switch self {
        case .query, .key, .value, .output: return "self_attn." + rawValue
        case .gate, .up, .down: return "mlp." + rawValue
        }
    }

    /// Whether the rows of the projection are in a different order in Hugging Face checkpoints
    /// (query and key: see ``LlamaRowOrder``).
    public var rowsPermuted: Bool { self == .query || self == .key }

    /// The block's linear layer for this target.
    func linear(in block: LlamaBlock) -> LlamaLinear {
        switch self {
        case .query: return block.query
        case .key: return block.key
        case .value: return block.value
        case .output: return block.output
        case .gate: return block.gate
        case .up: return block.up
        case .down: return block.down
        }
    }

    /// `[out, in]` of the projection.
    public func shape(_ c: LlamaConfig) -> (outFeatures: Int, inFeatures: Int) {
        let s = parameter.shape(c)
        return (s[0], s[1])
    }

    public static func < (a: LoRATarget, b: LoRATarget) -> Bool {
        (allCases.firstIndex(of: a) ?? 0) < (allCases.firstIndex(of: b) ?? 0)
    }
}

/// Hyper-parameters of low-rank adapters (LoRA, Hu et al. 2021) on a Llama model, with the
/// meaning `peft`'s `LoraConfig` gives them.
///
/// Each targeted projection `y = x·Wᵀ` becomes `y = x·Wᵀ + s · dropout(x)·Aᵀ·Bᵀ` with
/// `A [rank, in]`, `B [out, rank]` and `s = alpha / rank` (``scaling``; `alpha / √rank` with
/// ``rankStabilized``, peft's `use_rslora`). Adapters sit on every block.
public struct LoRAConfig: Sendable, Equatable, Codable {
    /// The rank `r` of `A` and `B`.
    public var rank: Int
    /// `lora_alpha`.
    public var alpha: Float
    /// Probability of zeroing an input element of the adapter during training (`lora_dropout`);
    /// kept elements are scaled by `1/(1−dropout)`. No dropout outside training.
    public var dropout: Float
    /// The projections that carry adapters, unique and in ``LoRATarget`` order.
    public var targets: [LoRATarget]
    /// Scale by `alpha/√rank` instead of `alpha/rank` (peft's `use_rslora`).
    public var rankStabilized: Bool

    /// A configuration; `targets` is de-duplicated and sorted.
    public init(rank: Int = 8, alpha: Float = 16, dropout: Float = 0.05,
                targets: [LoRATarget] = [.query, .key, .value, .output],
                rankStabilized: Bool = false) {
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
        self.targets = Array(Set(targets)).sorted()
        self.rankStabilized = rankStabilized
    }

    /// The factor `s` applied to the adapter's output.
    public var scaling: Float {
        rankStabilized ? alpha / Float(rank).squareRoot() : alpha / Float(rank)
    }

    /// Checks that the rank is positive, alpha finite, dropout in `[0, 1)` and that there is at
    /// least one target.
    public func validate() throws(LoRAError) {
        guard rank > 0 else { throw .invalidConfig("rank must be positive, got \(rank)") }
        guard alpha.isFinite else { throw .invalidConfig("alpha must be finite, got \(alpha)") }
        guard dropout >= 0, dropout < 1 else {
            throw .invalidConfig("dropout must be in [0, 1), got \(dropout)")
        }
        guard !targets.isEmpty else { throw .invalidConfig("no target projections") }
        guard Set(targets).count == targets.count else { throw .invalidConfig("targets repeat: \(targets)") }
    }
}

/// Why a low-rank adapter operation was refused.
public enum LoRAError: Error, Equatable, CustomStringConvertible {
    /// The adapter configuration is not usable.
    case invalidConfig(String)
    /// The adapters were made for a model of another shape.
    case modelMismatch(adapters: LlamaConfig, model: LlamaConfig)
    /// An adapter file could not be read or written.
    case adapterFile(String, file: String)
    /// The adapter directory uses a `peft` feature this engine does not implement.
    case unsupported(String, file: String)
    /// A tensor the configuration implies is missing from the adapter file.
    case missingTensor(name: String, file: String)
    /// The adapter file holds a tensor the configuration does not explain.
    case unexpectedTensor(name: String, file: String)
    /// A tensor has the wrong shape.
    case tensorShapeMismatch(name: String, expected: [Int], found: [Int], file: String)
    /// Merging needs float32 model weights, and the model keeps its matrices quantized.
    case quantizedModel

    public var description: String {
        switch self {
        case .invalidConfig(let why): return "invalid LoRA config: \(why)"
        case let .modelMismatch(adapters, model):
            return "the adapters were made for \(adapters), not for \(model)"
        case let .adapterFile(why, file): return "adapter file \(file): \(why)"
        case let .unsupported(why, file): return "\(file): \(why) is not supported"
        case let .missingTensor(name, file): return "\(file) has no tensor '\(name)'"
        case let .unexpectedTensor(name, file):
            return "\(file) holds tensor '\(name)', which the adapter configuration does not explain"
        case let .tensorShapeMismatch(name, expected, found, file):
            return "\(file): tensor '\(name)' has shape \(found), expected \(expected)"
        case .quantizedModel:
            return "adapters merge only into float32 weights; this model keeps its matrices quantized (attach the adapters instead)"
        }
    }
}

/// Where the `A [rank, in]` and `B [out, rank]` of one adapter sit in the flat buffer.
public struct LoRASlot: Sendable, Equatable {
    /// Block index.
    public let layer: Int
    /// The projection.
    public let target: LoRATarget
    /// Input and output width of the projection.
    public let inFeatures: Int, outFeatures: Int
    /// Element range of `A` (row-major `[rank, in]`).
    public let a: Range<Int>
    /// Element range of `B` (row-major `[out, rank]`).
    public let b: Range<Int>
}

/// The flat layout of every adapter's parameters: block by block, targets in ``LoRATarget``
/// order, `A` then `B` for each.
public struct LoRALayout: Sendable, Equatable {
    /// Rank of every adapter.
    public let rank: Int
    /// The adapted projections.
    public let targets: [LoRATarget]
    /// Number of blocks.
    public let layers: Int
    /// `slots[layer * targets.count + t]`.
    public let slots: [LoRASlot]
    /// Total number of adapter parameters.
    public let total: Int

    public init(config: LoRAConfig, model c: LlamaConfig) {
        var slots: [LoRASlot] = []
        var at = 0
        for l in 0..<c.layers {
            for t in config.targets {
                let (out, inp) = t.shape(c)
                let a = at..<(at + config.rank * inp)
                let b = a.upperBound..<(a.upperBound + out * config.rank)
                slots.append(LoRASlot(layer: l, target: t, inFeatures: inp, outFeatures: out, a: a, b: b))
                at = b.upperBound
            }
        }
        self.rank = config.rank
        self.targets = config.targets
        self.layers = c.layers
        self.slots = slots
        self.total = at
    }

    /// The slot of `target` in block `layer`, nil when that projection has no adapter.
    public func slot(layer: Int, target: LoRATarget) -> LoRASlot? {
        guard layer >= 0, layer < layers, let t = targets.firstIndex(of: target) else { return nil }
        return slots[layer * targets.count + t]
    }
}
