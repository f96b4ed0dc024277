import CURecModels
import CURecTensor
import Foundation

/// A model GRPO can train: it samples completions, scores given ones and takes weighted
/// cross-entropy steps on its trained parameters (all weights of the built-in GPT; the LoRA
/// adapters of SmolLM2).
public protocol GRPOPolicy: AnyObject {
    /// Token ids are in `0..<vocabularySize`.
    var vocabularySize: Int { get }
    /// Most positions of one sequence.
    var contextLength: Int { get }
    /// The network's shape (a reference model must have the policy's).
    var architecture: String { get }
    /// Fresh AdamW state over the trained parameters.
    func makeOptimizer(weightDecay: Float) -> AdamW
    /// Continuations of `prompts` (see ``BatchedGenerator``).
    func sample(prompts: [[Int]], options: SamplingOptions, shouldStop: () -> Bool) throws -> [GenerationResult]
    /// `result[i][j] = log p(continuations[i][j] | prompts[i] + continuations[i][..<j])`, at
    /// temperature 1, through the same arithmetic as ``trainStep(inputs:targets:optimizer:learningRate:maxGradNorm:weights:)``.
    func logProbabilities(prompts: [[Int]], continuations: [[Int]]) throws -> [[Float]]
    /// One AdamW step on `Σ w·CE / (counted positions)`; targets -1 are not counted.
    func trainStep(inputs: [[Int]], targets: [[Int]], optimizer: AdamW, learningRate: Float,
                   maxGradNorm: Float, weights: [[Float]]?) throws -> TrainStepResult
    /// Frees training activations.
    func releaseActivations()
}

/// A language model the pipeline writes reasons with: a ``GRPOPolicy`` that also knows how a
/// corpus prompt reaches it (the GPT reads the corpus text; SmolLM2 reads a chat turn) and how
/// its answers end.
public protocol ReasonLanguageModel: GRPOPolicy {
    /// Token ids of a corpus prompt as the model reads it, ready for the answer (the GPT: the
    /// prompt text; SmolLM2: the user turn and the assistant header), left-truncated to
    /// `limit` tokens.
    func promptTokens(_ prompt: String, limit: Int) -> [Int]
    /// Token sequences that end an answer.
    var stopSequences: [[Int]] { get }
    /// The text of completion tokens.
    func decode(_ tokens: [Int]) -> String
    /// Token ids of plain text inside an answer (no special tokens, no BOS).
    func encodeText(_ text: String) -> [Int]
}

extension GPTModel: GRPOPolicy {
    public var vocabularySize: Int { config.vocab }
    public var contextLength: Int { config.context }
    public var architecture: String { "\(config)" }

    public func makeOptimizer(weightDecay: Float) -> AdamW { makeOptimizer(beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: weightDecay) }

    public func sample(prompts: [[Int]], options: SamplingOptions, shouldStop: () -> Bool) throws -> [GenerationResult] {
        try generate(prompts: prompts, options: options, shouldStop: shouldStop)
    }
}

/// The built-in GPT trained from scratch on the corpus, with its BPE tokenizer.
public final class GPTReasonModel: ReasonLanguageModel, @unchecked Sendable {
    public let model: GPTModel
    public let tokenizer: BPETokenizer

    public init(model: GPTModel, tokenizer: BPETokenizer) {
        self.model = model
        self.tokenizer = tokenizer
    }

    /// A separate copy of the weights with the same tokenizer (e.g. a frozen GRPO reference).
    public func frozenCopy() -> GPTReasonModel { GPTReasonModel(model: model.frozenCopy(), tokenizer: tokenizer) }

    public var vocabularySize: Int { model.config.vocab }
    public var contextLength: Int { model.config.context }
    public var architecture: String { "\(model.config)" }
    public func makeOptimizer(weightDecay: Float) -> AdamW { model.makeOptimizer(weightDecay: weightDecay) }
    public func sample(prompts: [[Int]], options: SamplingOptions, shouldStop: () -> Bool) throws -> [GenerationResult] {
        try model.generate(prompts: prompts, options: options, shouldStop: shouldStop)
    }
    public func logProbabilities(prompts: [[Int]], continuations: [[Int]]) throws -> [[Float]] {
        try model.logProbabilities(prompts: prompts, continuations: continuations)
    }
    public func trainStep(inputs: [[Int]], targets: [[Int]], optimizer: AdamW, learningRate: Float,
                          maxGradNorm: Float, weights: [[Float]]?) throws -> TrainStepResult {
        try model.trainStep(inputs: inputs, targets: targets, optimizer: optimizer, learningRate: learningRate,
                            maxGradNorm: maxGradNorm, weights: weights)
    }
    public func releaseActivations() { model.releaseActivations() }

    public func promptTokens(_ prompt: String, limit: Int) -> [Int] {
        var ids = tokenizer.encode(prompt).map(Int.init)
        if ids.count > limit { ids.removeFirst(ids.count - limit) }
        if ids.isEmpty { ids = [0] }
        return ids
    }

    public var stopSequences: [[Int]] { ReasonWriter.stopSequences(tokenizer) }

    public func decode(_ tokens: [Int]) -> String { (try? tokenizer.decode(tokens.map(Int32.init))) ?? "" }

    public func encodeText(_ text: String) -> [Int] { tokenizer.encode(text, allowingSpecialTokens: false).map(Int.init) }
}
