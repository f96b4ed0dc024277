import CURecModels
import CURecTensor
import Foundation

/// The corpus in SmolLM2's chat format. A corpus prompt (`CorpusExample.promptText`: task and
/// instruction markers, the instruction and its facts, the reasoning marker) becomes a user
/// turn holding the instruction and facts; the answer is the assistant turn, which starts with
/// the reasoning marker and ends with the reason block (``ReasonWriter/extractReason(from:)``
/// reads it the same way for both formats).
public enum ChatCorpus {
    /// The system turn of every conversation.
    public static let system =
        "You explain film recommendations from viewing data. Reason step by step from the facts given, "
        + "then write a short reason a viewer can read. Name only films, years and genres that appear in the facts."

    /// The user turn and the start of the assistant turn of a corpus prompt.
    public static func split(prompt: String) -> (user: String, answerPrefix: String) {
        var lines = prompt.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        while let last = lines.last, last.isEmpty { lines.removeLast() }
        if let last = lines.last, last == CorpusExample.Marker.reasoning { lines.removeLast() }
        while let first = lines.first, first.hasPrefix(CorpusExample.Marker.task) || first == CorpusExample.Marker.instruction {
            lines.removeFirst()
        }
        return (lines.joined(separator: "\n"), CorpusExample.Marker.reasoning + "\n")
    }

    /// A corpus example as a conversation; the assistant turn is the completion without the
    /// end marker (the end-of-turn token ends it), with at most `maxSteps` reasoning steps
    /// (the profile step first; the rest are the steps the reason draws on), so the reason
    /// stays within a short answer budget.
    public static func conversation(_ example: CorpusExample, maxSteps: Int = .max) -> [ChatMessage] {
        let parts = split(prompt: example.promptText)
        var answer = parts.answerPrefix
        for (index, step) in example.steps.prefix(max(0, maxSteps)).enumerated() { answer += "\(index + 1). \(step)\n" }
        answer += "\(CorpusExample.Marker.reason)\n\(example.reason)"
        return [.system(system), .user(parts.user), .assistant(answer)]
    }
}

/// SmolLM2 (or any Llama-shaped chat model) as the pipeline sees it: a float32 model that
/// trains and scores, the model that decodes (the same one, or its 4-bit copy), and the
/// tokenizer. Several ``LlamaReasonModel``s (base, aligned, GRPO policy) share one backbone,
/// each with its own adapters, attached before each use.
///
/// Not thread-safe: one task at a time.
public final class LlamaBackbone: @unchecked Sendable {
    /// Float32 weights: training, log-probabilities (and decoding without a quantized copy).
    public let trainable: LlamaModel
    /// The weights that decode: a quantized copy, or `trainable` itself.
    public let decoder: LlamaModel
    public let tokenizer: PretrainedTokenizer
    private var attached: [ObjectIdentifier: LlamaLoRA] = [:]

    public init(trainable: LlamaModel, decoder: LlamaModel? = nil, tokenizer: PretrainedTokenizer) {
        self.trainable = trainable
        self.decoder = decoder ?? trainable
        self.tokenizer = tokenizer
        trainable.setTrainable(false)
    }

    /// Makes `adapters` (nil: none) the ones `model` computes with.
    func use(_ adapters: LlamaLoRA?, on model: LlamaModel) throws {
        let key = ObjectIdentifier(model)
        if let current = attached[key] {
            if current === adapters { return }
            current.detach(from: model)
            attached[key] = nil
        }
        if let adapters {
            try adapters.attach(to: model)
            attached[key] = adapters
        }
    }
}

/// A Llama-shaped chat model with optional LoRA adapters on a shared ``LlamaBackbone``:
/// SmolLM2 before alignment (no adapters), after it, and during GRPO.
public final class LlamaReasonModel: ReasonLanguageModel, @unchecked Sendable {
    public let backbone: LlamaBackbone
    /// The adapters this model computes with (nil: the backbone as it is).
    public let adapters: LlamaLoRA?

    public init(backbone: LlamaBackbone, adapters: LlamaLoRA?) {
        self.backbone = backbone
        self.adapters = adapters
    }

    /// A model on the same backbone with a separate copy of these adapters, or with fresh
    /// adapters (`config`, `seed`; `B = 0`, so it starts equal to this one) when it has none.
    public func trainableCopy(config: LoRAConfig, seed: UInt64) throws -> LlamaReasonModel {
        let copy = try LlamaLoRA(config: adapters?.config ?? config, modelConfig: backbone.trainable.config, seed: seed,
                                 dropoutSeed: seed ^ 0x9E37_79B9_7F4A_7C15)
        if let adapters {
            copy.parameters.data.update(from: adapters.parameters.data, count: adapters.parameterCount)
        }
        return LlamaReasonModel(backbone: backbone, adapters: copy)
    }

    public var vocabularySize: Int { backbone.trainable.config.vocab }
    public var contextLength: Int { backbone.trainable.config.context }
    public var architecture: String { "\(backbone.trainable.config)" }

    public func makeOptimizer(weightDecay: Float) -> AdamW {
        guard let adapters else { return backbone.trainable.makeOptimizer(weightDecay: weightDecay) }
        return adapters.makeOptimizer(weightDecay: weightDecay)
    }

    public func sample(prompts: [[Int]], options: SamplingOptions, shouldStop: () -> Bool) throws -> [GenerationResult] {
        try backbone.use(adapters, on: backbone.decoder)
        return try BatchedGenerator(model: backbone.decoder).generate(prompts: prompts, options: options, shouldStop: shouldStop)
    }

    public func logProbabilities(prompts: [[Int]], continuations: [[Int]]) throws -> [[Float]] {
        try backbone.use(adapters, on: backbone.trainable)
        return try CompletionScorer(model: backbone.trainable).logProbabilities(prompts: prompts, continuations: continuations)
    }

    /// Mean cross-entropy of `targets` (no update), e.g. held-out loss.
    public func loss(inputs: [[Int]], targets: [[Int]]) throws -> Float {
        try backbone.use(adapters, on: backbone.trainable)
        return try backbone.trainable.loss(inputs: inputs, targets: targets)
    }

    public func trainStep(inputs: [[Int]], targets: [[Int]], optimizer: AdamW, learningRate: Float,
                          maxGradNorm: Float, weights: [[Float]]?) throws -> TrainStepResult {
        let model = backbone.trainable
        try backbone.use(adapters, on: model)
        guard let lora = adapters else {
            throw LlamaReasonModelError.noAdapters
        }
        lora.zeroGradients()
        let loss = try model.forwardBackward(inputs: inputs, targets: targets, weights: weights)
        guard loss.isFinite else { throw LlamaError.nonFiniteLoss(loss) }
        let norm = GradientClipping.globalNorm(lora.gradients.data, count: lora.parameterCount)
        guard norm.isFinite else { throw LlamaError.nonFiniteGradient(norm: norm) }
        optimizer.update(params: lora.parameters.data, grads: lora.gradients.data, segments: lora.segments,
                         lr: learningRate, gradScale: GradientClipping.scale(norm: norm, maxNorm: maxGradNorm),
                         onlySegments: true)
        return TrainStepResult(loss: loss, gradNorm: norm, learningRate: learningRate)
    }

    public func releaseActivations() { backbone.trainable.releaseActivations() }

    /// The system and user turns, the assistant header and the reasoning marker. A prompt over
    /// `limit` tokens loses tokens from the start of the user turn (the oldest history lines),
    /// never the turn headers or the question's end.
    public func promptTokens(_ prompt: String, limit: Int) -> [Int] {
        Self.promptTokens(prompt, limit: limit, tokenizer: backbone.tokenizer)
    }

    /// ``promptTokens(_:limit:)`` for a model with `tokenizer` (it reads no weights).
    public static func promptTokens(_ prompt: String, limit: Int, tokenizer: PretrainedTokenizer) -> [Int] {
        let parts = ChatCorpus.split(prompt: prompt)
        let conversation: [ChatMessage] = [.system(ChatCorpus.system), .user(parts.user)]
        let answerStart = tokenizer.encode(parts.answerPrefix, allowingSpecialTokens: false, addingBOSToken: false).map(Int.init)
        guard var ids = try? tokenizer.encode(conversation: conversation, addingGenerationPrompt: true).map(Int.init) else {
            return answerStart.isEmpty ? [0] : answerStart
        }
        ids += answerStart
        if ids.count > limit {
            // Keep the system turn and the user header: the tokens shared with an empty user turn.
            let header = (try? tokenizer.encode(conversation: [.system(ChatCorpus.system), .user("")],
                                                addingGenerationPrompt: false).map(Int.init)) ?? []
            var keep = 0
            while keep < header.count, keep < ids.count, header[keep] == ids[keep] { keep += 1 }
            keep = min(keep, max(0, limit - 1))
            let drop = ids.count - limit
            ids.removeSubrange(keep..<min(ids.count, keep + drop))
        }
        return ids
    }

    public var stopSequences: [[Int]] {
        var stops = backbone.tokenizer.endOfTurnStopSequences
        if let eos = backbone.tokenizer.eosTokenID, !stops.contains([Int(eos)]) { stops.append([Int(eos)]) }
        return stops
    }

    public func encodeText(_ text: String) -> [Int] {
        backbone.tokenizer.encode(text, allowingSpecialTokens: false, addingBOSToken: false).map(Int.init)
    }

    public func decode(_ tokens: [Int]) -> String {
        (try? backbone.tokenizer.decode(tokens.map(Int32.init), skippingSpecialTokens: true)) ?? ""
    }
}

/// Errors of ``LlamaReasonModel``.
public enum LlamaReasonModelError: Error, CustomStringConvertible, Sendable {
    /// A model without adapters was asked to train (GRPO trains adapters).
    case noAdapters

    public var description: String {
        switch self {
        case .noAdapters: return "this model has no LoRA adapters to train; make a trainable copy first"
        }
    }
}
