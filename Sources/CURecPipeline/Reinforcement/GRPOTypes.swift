import CURecModels
import Foundation

/// Settings of GRPO (group relative policy optimisation), the RL fine-tuning stage of the
/// built-in language model.
///
/// The defaults suit fine-tuning a pretrained model; a model trained from scratch in a test
/// needs a larger learning rate.
public struct GRPOConfig: Sendable, Codable, Equatable {
    /// Policy updates (each samples a fresh batch), at least 1.
    public var steps = 60
    /// Distinct prompt slots per step, at least 1.
    public var promptsPerStep = 4
    /// Completions sampled per prompt (one group), at least 2: advantages are relative to the
    /// group, so a group of one never has a signal.
    public var groupSize = 4
    /// Optimisation passes over each sampled batch, at least 1. From the second pass on the
    /// policy differs from the one that sampled, so the clipped ratio takes effect.
    public var innerEpochs = 2
    /// AdamW learning rate (constant), finite and > 0.
    public var learningRate: Float = 5e-5
    /// AdamW decoupled weight decay, finite and >= 0 (0 keeps the pretrained weights from
    /// being pulled toward zero).
    public var weightDecay: Float = 0
    /// ε of the clipped ratio `clip(ρ, 1-ε, 1+ε)`, in (0, 1).
    public var clipEpsilon: Float = 0.2
    /// β, the weight of the per-token KL penalty to the reference model, finite and >= 0.
    public var klCoefficient: Float = 0.04
    /// Sampling temperature, finite and > 0 (greedy decoding would make every completion of a
    /// group identical). Log-probabilities are always taken at temperature 1.
    public var temperature: Float = 1.0
    /// Sample only among the `topK` most likely tokens (0: all), >= 0.
    public var topK = 0
    /// Most tokens generated per completion, stop sequence included; at least 1 and below the
    /// model's context.
    public var maxTokens = 48
    /// Clip the global gradient norm of each update to this (0 disables), finite and >= 0.
    public var maxGradNorm: Float = 1.0
    /// Seeds the prompt order and the sampler.
    public var seed: UInt64 = 1

    public init() {}

    /// Throws ``GRPOError/invalidConfig(field:reason:)`` naming the first bad field.
    /// `context` is the model's context length.
    public func validate(context: Int) throws(GRPOError) {
        func fail(_ field: String, _ reason: String) -> GRPOError { .invalidConfig(field: field, reason: reason) }
        guard steps >= 1 else { throw fail("steps", "must be at least 1, got \(steps)") }
        guard promptsPerStep >= 1 else { throw fail("promptsPerStep", "must be at least 1, got \(promptsPerStep)") }
        guard groupSize >= 2 else {
            throw fail("groupSize", "must be at least 2 (advantages are relative to the group), got \(groupSize)")
        }
        guard innerEpochs >= 1 else { throw fail("innerEpochs", "must be at least 1, got \(innerEpochs)") }
        guard learningRate.isFinite, learningRate > 0 else {
            throw fail("learningRate", "must be finite and > 0, got \(learningRate)")
        }
        guard weightDecay.isFinite, weightDecay >= 0 else {
            throw fail("weightDecay", "must be finite and >= 0, got \(weightDecay)")
        }
        guard clipEpsilon.isFinite, clipEpsilon > 0, clipEpsilon < 1 else {
            throw fail("clipEpsilon", "must be in (0, 1), got \(clipEpsilon)")
        }
        guard klCoefficient.isFinite, klCoefficient >= 0 else {
            throw fail("klCoefficient", "must be finite and >= 0, got \(klCoefficient)")
        }
        guard temperature.isFinite, temperature > 0 else {
            throw fail("temperature", "must be finite and > 0 (greedy sampling gives identical completions), got \(temperature)")
        }
        guard topK >= 0 else { throw fail("topK", "must be >= 0, got \(topK)") }
        guard maxTokens >= 1 else { throw fail("maxTokens", "must be at least 1, got \(maxTokens)") }
        guard maxTokens < context else {
            throw fail("maxTokens", "must be below the model's context (\(context)) to leave room for a prompt, got \(maxTokens)")
        }
        guard maxGradNorm.isFinite, maxGradNorm >= 0 else {
            throw fail("maxGradNorm", "must be finite and >= 0, got \(maxGradNorm)")
        }
    }
}

/// One sampled completion, as handed to the reward function.
public struct GRPOSample: Sendable, Equatable {
    /// Index of the prompt in the `prompts` given to ``GRPO/run(policy:reference:prompts:stopSequences:config:reward:progress:isCancelled:)``.
    public var promptIndex: Int
    /// Generated tokens, the stop sequence excluded.
    public var completion: [Int]
    /// Index in `stopSequences` of the stop sequence that ended the completion; nil when it
    /// reached `maxTokens`.
    public var stopSequenceIndex: Int?

    public init(promptIndex: Int, completion: [Int], stopSequenceIndex: Int?) {
        self.promptIndex = promptIndex
        self.completion = completion
        self.stopSequenceIndex = stopSequenceIndex
    }
}

/// What one GRPO step did.
public struct GRPOStepLog: Sendable, Codable, Equatable {
    /// 1-based step number.
    public var step: Int
    /// Mean reward of the step's samples.
    public var meanReward: Double
    /// Standard deviation of the step's rewards (all samples, population).
    public var rewardStd: Double
    /// Groups whose rewards were all equal (zero advantage: only the KL term trains them).
    public var flatGroups: Int
    /// Mean per-token KL of the sampling policy to the reference (k3 estimator, >= 0).
    public var kl: Double
    /// Mean trained completion length in tokens (stop sequence included).
    public var meanLength: Double
    /// Share of completions ended by a stop sequence (the rest reached `maxTokens`).
    public var stoppedFraction: Double
    /// Mean over the inner epochs of the negated GRPO objective before each update.
    public var loss: Double
    /// Share of (token, inner epoch) pairs whose gradient the clipped ratio removed.
    public var clippedFraction: Double
    /// Mean global gradient norm before clipping, over the inner epochs.
    public var gradNorm: Double
    /// Learning rate of the step's updates.
    public var learningRate: Double

    public init(step: Int, meanReward: Double, rewardStd: Double, flatGroups: Int, kl: Double,
                meanLength: Double, stoppedFraction: Double, loss: Double, clippedFraction: Double,
                gradNorm: Double, learningRate: Double) {
        self.step = step
        self.meanReward = meanReward
        self.rewardStd = rewardStd
        self.flatGroups = flatGroups
        self.kl = kl
        self.meanLength = meanLength
        self.stoppedFraction = stoppedFraction
        self.loss = loss
        self.clippedFraction = clippedFraction
        self.gradNorm = gradNorm
        self.learningRate = learningRate
    }
}

/// What a GRPO run produced. The policy itself is trained in place.
public struct GRPOResult: Sendable, Codable, Equatable {
    /// One entry per step, in order.
    public var logs: [GRPOStepLog]
    /// Mean reward of the first step (samples of the policy before any update).
    public var firstMeanReward: Double
    /// Mean reward over the last five steps (fewer when the run was shorter).
    public var finalMeanReward: Double

    public init(logs: [GRPOStepLog]) {
        self.logs = logs
        firstMeanReward = logs.first?.meanReward ?? .nan
        let tail = logs.suffix(5)
        finalMeanReward = tail.isEmpty ? .nan : tail.map(\.meanReward).reduce(0, +) / Double(tail.count)
    }
}

/// Why a GRPO run failed.
public enum GRPOError: Error, CustomStringConvertible, Sendable {
    /// A ``GRPOConfig`` field is out of range.
    case invalidConfig(field: String, reason: String)
    /// The models or other arguments cannot be used together.
    case invalidArgument(String)
    /// A prompt is empty or holds an id outside the vocabulary.
    case invalidPrompt(index: Int, reason: String)
    /// A prompt leaves no room for `maxTokens` generated tokens within the context.
    case promptTooLong(index: Int, length: Int, limit: Int)
    /// A stop sequence is empty or holds an id outside the vocabulary.
    case invalidStopSequence(index: Int, reason: String)
    /// The reward function threw.
    case rewardFailed(step: Int, message: String)
    /// The reward function returned the wrong number of rewards.
    case rewardCountMismatch(step: Int, expected: Int, got: Int)
    /// The reward of a sample is NaN or infinite.
    case nonFiniteReward(step: Int, sample: Int, promptIndex: Int, value: Float)
    /// Generation, scoring or an update of the model failed.
    case model(step: Int, message: String)
    /// `isCancelled` returned true; `completedSteps` updates were applied to the policy.
    case cancelled(completedSteps: Int)

    public var description: String {
        switch self {
        case let .invalidConfig(field, reason): return "invalid GRPO config: \(field) \(reason)"
        case .invalidArgument(let message): return "invalid argument: \(message)"
        case let .invalidPrompt(index, reason): return "prompt \(index): \(reason)"
        case let .promptTooLong(index, length, limit):
            return "prompt \(index) has \(length) tokens; with maxTokens the context allows at most \(limit)"
        case let .invalidStopSequence(index, reason): return "stop sequence \(index): \(reason)"
        case let .rewardFailed(step, message): return "step \(step): the reward function failed: \(message)"
        case let .rewardCountMismatch(step, expected, got):
            return "step \(step): the reward function returned \(got) rewards for \(expected) samples"
        case let .nonFiniteReward(step, sample, promptIndex, value):
            return "step \(step): the reward of sample \(sample) (prompt \(promptIndex)) is \(value)"
        case let .model(step, message): return "step \(step): model: \(message)"
        case .cancelled(let completedSteps): return "GRPO was cancelled after \(completedSteps) steps"
        }
    }
}
