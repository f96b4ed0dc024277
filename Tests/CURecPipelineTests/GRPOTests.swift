import CURecModels
import CURecTensor
import Foundation
import Testing
@testable import CURecPipeline

@Suite struct GRPOTests {
    static let modelConfig = GPTConfig(layers: 2, heads: 2, width: 32, context: 32, vocab: 20)

    static func tinyModel(seed: UInt64 = 3) throws -> GPTModel {
        try GPTModel(config: modelConfig, seed: seed)
    }

    /// A copy of `model` with Gaussian noise of standard deviation `std` added to every weight.
    static func perturbed(_ model: GPTModel, std: Float, seed: UInt64) -> GPTModel {
        let copy = model.frozenCopy()
        var random = Xoshiro256(seed: seed)
        for i in 0..<copy.parameters.count { copy.parameters.data[i] += std * random.nextGaussian() }
        return copy
    }

    // MARK: Per-token weights

    @Test func weightsFollowTheClippedSurrogateAndTheKLGradient() {
        let beta: Float = 0.1
        let objective = GRPOObjective(clipEpsilon: 0.2, klCoefficient: beta)
        let lp: Float = -2
        let ref: Float = -1.5
        let klGradient = beta * (expf(ref - lp) - 1)
        // (advantage, ratio, surrogate gradient expected, clipped)
        let cases: [(Float, Float, Float, Bool)] = [
            (1, 1, 1, false),          // on-policy: the plain policy gradient
            (1, 0.5, 0.5, false),      // A > 0 below the trust region: still pushed up
            (1, 1.5, 0, true),         // A > 0 above 1 + ε: clipped
            (-1, 1.5, -1.5, false),    // A < 0 above the region: still pushed down
            (-1, 0.5, 0, true),        // A < 0 below 1 - ε: clipped
            (0, 1.7, 0, false),        // no advantage: only the KL term
        ]
        for (a, ratio, expected, clipped) in cases {
            let old = lp - logf(ratio)
            let e = objective.evaluate(logProbs: [[lp]], oldLogProbs: [[old]], referenceLogProbs: [[ref]],
                                       advantages: [a])
            #expect(abs(e.weights[0][0] - (expected + klGradient)) < 1e-5, "A=\(a) ρ=\(ratio): \(e.weights[0][0])")
            #expect(e.clippedTokens == (clipped ? 1 : 0), "A=\(a) ρ=\(ratio)")
            let k3 = Double(expf(ref - lp) - (ref - lp) - 1)
            let surrogate = Double(a > 0 ? a * min(ratio, 1.2) : a < 0 ? a * max(ratio, 0.8) : 0)
            #expect(abs(e.objective - (surrogate - Double(beta) * k3)) < 1e-5)
            #expect(abs(e.kl - k3) < 1e-6)
        }
    }

    @Test func advantagesAreNormalisedWithinEachGroup() {
        let (a, flat) = GRPOObjective.advantages(rewards: [1, 1, 1, 0, 2, 4], groupSize: 3)
        #expect(flat == 1)
        #expect(a[0] == 0 && a[1] == 0 && a[2] == 0)
        // Group (0, 2, 4): mean 2, sample std 2.
        #expect(abs(a[3] + 2 / 2.0001) < 1e-5)
        #expect(a[4] == 0)
        #expect(abs(a[5] - 2 / 2.0001) < 1e-5)
    }

    @Test func trainingRowsTargetOnlyCompletionTokens() {
        let rows = GRPOObjective.trainingRows(prompts: [[1, 2, 3], [4]], completions: [[5, 6], [7, 8, 9]],
                                              weights: [[0.5, -1], [1, 2, 3]])
        #expect(rows.inputs == [[1, 2, 3, 5], [4, 7, 8, 0]])
        #expect(rows.targets == [[-1, -1, 5, 6], [7, 8, 9, -1]])
        #expect(rows.weights == [[0, 0, 0.5, -1], [1, 2, 3, 0]])
    }

    /// The gradient of the weighted cross-entropy equals minus a finite-difference gradient of the
    /// GRPO objective computed from `logProbabilities`.
    @Test(arguments: [(Float(0.003), false), (Float(0.03), true)])
    func weightedCrossEntropyGradientMatchesTheObjective(oldNoise: Float, expectClipping: Bool) throws {
        let policy = try Self.tinyModel(seed: 11)
        // Sharpen the distributions a little so log-probabilities react to the weights.
        for i in 0..<policy.parameters.count { policy.parameters.data[i] *= 2 }
        let old = Self.perturbed(policy, std: oldNoise, seed: 21)
        let reference = Self.perturbed(policy, std: 0.1, seed: 31)
        let prompts = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10]]
        let completions = [[11, 12, 3], [13, 14, 15, 16, 17], [2, 19], [5, 5, 6, 18]]
        let advantages: [Float] = [1.3, -0.8, 0.6, -1.1]
        let objective = GRPOObjective(clipEpsilon: 0.2, klCoefficient: 0.2)
        let oldLP = try old.logProbabilities(prompts: prompts, continuations: completions)
        let refLP = try reference.logProbabilities(prompts: prompts, continuations: completions)
        func evaluate() throws -> GRPOObjective.Evaluation {
            let lp = try policy.logProbabilities(prompts: prompts, continuations: completions)
            return objective.evaluate(logProbs: lp, oldLogProbs: oldLP, referenceLogProbs: refLP,
                                      advantages: advantages)
        }
        let base = try evaluate()
        // Kinks of the clip must be far from every ratio for finite differences to hold.
        let lp = try policy.logProbabilities(prompts: prompts, continuations: completions)
        for (row, values) in lp.enumerated() {
            for (t, value) in values.enumerated() {
                let ratio = expf(value - oldLP[row][t])
                #expect(abs(ratio - 1.2) > 0.01 && abs(ratio - 0.8) > 0.01, "ratio \(ratio) is on a kink")
            }
        }
        let ratios = zip(lp, oldLP).flatMap { zip($0, $1).map { expf($0 - $1) } }
        let span = "ratios in [\(ratios.min() ?? .nan), \(ratios.max() ?? .nan)]"
        if expectClipping {
            #expect(base.clippedTokens > 0 && base.clippedTokens < base.tokens,
                    "\(base.clippedTokens) of \(base.tokens) tokens clipped, \(span)")
        } else {
            #expect(base.clippedTokens == 0, "\(span)")
        }
        let rows = GRPOObjective.trainingRows(prompts: prompts, completions: completions, weights: base.weights)
        try policy.forwardBackward(inputs: rows.inputs, targets: rows.targets, weights: rows.weights)
        let gradient = policy.gradients.values
        // The parameters with the largest gradients, spread over the whole buffer.
        let checked = gradient.indices.sorted { abs(gradient[$0]) > abs(gradient[$1]) }.prefix(8)
        let h: Float = 2e-3
        for index in checked {
            let saved = policy.parameters.data[index]
            policy.parameters.data[index] = saved + h
            let plus = try evaluate().objective
            policy.parameters.data[index] = saved - h
            let minus = try evaluate().objective
            policy.parameters.data[index] = saved
            let numeric = (plus - minus) / Double(2 * h)
            let analytic = -Double(gradient[index])
            #expect(abs(numeric - analytic) <= 0.01 * abs(analytic) + 1e-4,
                    "parameter \(index): finite difference \(numeric), weighted cross-entropy \(analytic)")
        }
    }

    // MARK: Learning

    static let rewardedToken = 7

    static func learningConfig() -> GRPOConfig {
        var config = GRPOConfig()
        config.steps = 30
        config.promptsPerStep = 4
        config.groupSize = 4
        config.innerEpochs = 2
        config.learningRate = 1e-2
        config.maxTokens = 10
        config.seed = 5
        return config
    }

    static let prompts = [[1, 2, 3], [4, 5], [6, 8, 9, 10], [11, 12], [13, 14, 15], [16]]

    static func countReward(_ samples: [GRPOSample]) -> [Float] {
        samples.map { sample in Float(sample.completion.filter { $0 == rewardedToken }.count) }
    }

    @Test func rewardRisesAndKLStaysFinite() throws {
        let policy = try Self.tinyModel()
        let reference = policy.frozenCopy()
        var seen: [GRPOStepLog] = []
        let result = try GRPO.run(policy: policy, reference: reference, prompts: Self.prompts,
                                  stopSequences: [[0]], config: Self.learningConfig(),
                                  reward: Self.countReward, progress: { seen.append($0) })
        #expect(seen == result.logs)
        #expect(result.logs.count == 30)
        #expect(result.logs.map(\.step) == Array(1...30))
        let first = result.logs.prefix(5).map(\.meanReward).reduce(0, +) / 5
        #expect(result.finalMeanReward > 2 * first + 1,
                "mean reward went from \(first) to \(result.finalMeanReward)")
        for log in result.logs {
            #expect(log.kl.isFinite && log.kl >= 0, "step \(log.step): KL \(log.kl)")
            #expect(log.loss.isFinite && log.gradNorm.isFinite)
            #expect(log.meanLength >= 1 && log.meanLength <= 10)
            #expect(log.clippedFraction >= 0 && log.clippedFraction <= 1)
            #expect(log.learningRate == Double(Float(1e-2)))
        }
        #expect(result.logs.last.map { $0.kl > 0 } == true, "the policy never left the reference")
        #expect(result.logs.contains { $0.clippedFraction > 0 }, "the clip never took effect")
    }

    @Test func samplesComeInGroupsAndRunsAreDeterministic() throws {
        var config = Self.learningConfig()
        config.steps = 3
        config.promptsPerStep = 4
        config.groupSize = 3
        var batches: [[GRPOSample]] = []
        func run() throws -> GRPOResult {
            let policy = try Self.tinyModel()
            return try GRPO.run(policy: policy, reference: policy.frozenCopy(), prompts: Self.prompts,
                                stopSequences: [[0], [19, 18]], config: config) { samples in
                batches.append(samples)
                return Self.countReward(samples)
            }
        }
        let first = try run()
        let firstBatches = batches
        batches = []
        let second = try run()
        #expect(first == second)
        #expect(batches == firstBatches)
        // Prompts cycle through a shuffle: steps 1 and 2 together (8 slots) cover all 6 prompts.
        var used: Set<Int> = []
        for batch in firstBatches.prefix(2) {
            #expect(batch.count == 12)
            for group in stride(from: 0, to: 12, by: 3) {
                let index = batch[group].promptIndex
                #expect(batch[group..<group + 3].allSatisfy { $0.promptIndex == index })
                used.insert(index)
            }
        }
        #expect(used == Set(Self.prompts.indices))
        for sample in firstBatches.joined() {
            #expect(!sample.completion.contains(0), "the stop token is part of a completion")
            if sample.stopSequenceIndex == nil { #expect(sample.completion.count == 10) }
        }
    }

    // MARK: Refusals

    @Test func badConfigsAreRefusedNamingTheField() throws {
        let policy = try Self.tinyModel()
        let reference = policy.frozenCopy()
        let cases: [(String, (inout GRPOConfig) -> Void)] = [
            ("steps", { $0.steps = 0 }),
            ("promptsPerStep", { $0.promptsPerStep = 0 }),
            ("groupSize", { $0.groupSize = 1 }),
            ("innerEpochs", { $0.innerEpochs = 0 }),
            ("learningRate", { $0.learningRate = 0 }),
            ("learningRate", { $0.learningRate = .nan }),
            ("weightDecay", { $0.weightDecay = -1 }),
            ("clipEpsilon", { $0.clipEpsilon = 0 }),
            ("clipEpsilon", { $0.clipEpsilon = 1 }),
            ("klCoefficient", { $0.klCoefficient = -0.1 }),
            ("temperature", { $0.temperature = 0 }),
            ("topK", { $0.topK = -1 }),
            ("maxTokens", { $0.maxTokens = 0 }),
            ("maxTokens", { $0.maxTokens = 32 }),
            ("maxGradNorm", { $0.maxGradNorm = .infinity }),
        ]
        for (field, mutate) in cases {
            var config = Self.learningConfig()
            mutate(&config)
            do {
                _ = try GRPO.run(policy: policy, reference: reference, prompts: Self.prompts, stopSequences: [],
                                 config: config, reward: Self.countReward)
                Issue.record("a config with a bad \(field) was accepted")
            } catch {
                guard case .invalidConfig(let named, _) = error else {
                    Issue.record("expected invalidConfig for \(field), got \(error)")
                    continue
                }
                #expect(named == field)
                #expect(error.description.contains(field))
            }
        }
    }

    /// Runs one step and returns the error it threw (nil when it succeeded).
    static func failure(policy: GPTModel? = nil, reference: GPTModel? = nil, prompts: [[Int]] = GRPOTests.prompts,
                        stopSequences: [[Int]] = [[0]], config: GRPOConfig? = nil,
                        reward: ([GRPOSample]) throws -> [Float] = GRPOTests.countReward,
                        isCancelled: () -> Bool = { false }) throws -> GRPOError? {
        let model = try policy ?? tinyModel()
        var oneStep = learningConfig()
        oneStep.steps = 1
        do {
            _ = try GRPO.run(policy: model, reference: reference ?? model.frozenCopy(), prompts: prompts,
                             stopSequences: stopSequences, config: config ?? oneStep, reward: reward,
                             isCancelled: isCancelled)
            return nil
        } catch {
            return error
        }
    }

    @Test func badArgumentsAreRefused() throws {
        // Context 32, maxTokens 10: prompts may have at most 22 tokens.
        let long = [Int](repeating: 1, count: 23)
        guard case .promptTooLong(index: 1, length: 23, limit: 22)? = try Self.failure(prompts: [[1], long]) else {
            Issue.record("a prompt longer than context - maxTokens was accepted"); return
        }
        #expect(try Self.failure(prompts: [[1], [Int](repeating: 1, count: 22)]) == nil)
        guard case .invalidPrompt(index: 0, _)? = try Self.failure(prompts: [[]]) else {
            Issue.record("an empty prompt was accepted"); return
        }
        guard case .invalidPrompt(index: 1, let reason)? = try Self.failure(prompts: [[1], [2, 20]]) else {
            Issue.record("a prompt token outside the vocabulary was accepted"); return
        }
        #expect(reason.contains("20"))
        guard case .invalidArgument? = try Self.failure(prompts: []) else {
            Issue.record("an empty prompt list was accepted"); return
        }
        guard case .invalidStopSequence(index: 1, _)? = try Self.failure(stopSequences: [[0], []]) else {
            Issue.record("an empty stop sequence was accepted"); return
        }
        guard case .invalidStopSequence(index: 0, _)? = try Self.failure(stopSequences: [[-1]]) else {
            Issue.record("a stop token outside the vocabulary was accepted"); return
        }
        let policy = try Self.tinyModel()
        guard case .invalidArgument(let message)? = try Self.failure(policy: policy, reference: policy) else {
            Issue.record("the policy was accepted as its own reference"); return
        }
        #expect(message.contains("separate"))
        let wider = try GPTModel(config: GPTConfig(layers: 2, heads: 2, width: 48, context: 32, vocab: 20), seed: 1)
        guard case .invalidArgument? = try Self.failure(policy: policy, reference: wider) else {
            Issue.record("a reference of another shape was accepted"); return
        }
    }

    @Test func badRewardsAndRewardErrorsAreReported() throws {
        guard case .rewardCountMismatch(step: 1, expected: 16, got: 15)? =
            try Self.failure(reward: { Array(Self.countReward($0).dropLast()) }) else {
            Issue.record("a short reward list was accepted"); return
        }
        let nanAtFive: ([GRPOSample]) -> [Float] = { samples in
            var rewards = Self.countReward(samples)
            rewards[5] = .nan
            return rewards
        }
        guard let error = try Self.failure(reward: nanAtFive),
              case .nonFiniteReward(step: 1, sample: 5, _, let value) = error else {
            Issue.record("a NaN reward was accepted"); return
        }
        #expect(value.isNaN)
        #expect(error.description.contains("sample 5"))
        struct ScorerDown: Error, CustomStringConvertible { var description: String { "scorer is down" } }
        guard case .rewardFailed(step: 1, let message)? = try Self.failure(reward: { _ in throw ScorerDown() }) else {
            Issue.record("a reward error was swallowed"); return
        }
        #expect(message.contains("scorer is down"))
    }

    @Test func cancellationStopsBetweenSteps() throws {
        let policy = try Self.tinyModel()
        var config = Self.learningConfig()
        config.steps = 10
        var steps = 0
        do {
            _ = try GRPO.run(policy: policy, reference: policy.frozenCopy(), prompts: Self.prompts,
                             stopSequences: [[0]], config: config, reward: Self.countReward,
                             progress: { steps = $0.step }, isCancelled: { steps >= 2 })
            Issue.record("the run was not cancelled")
        } catch {
            guard case .cancelled(completedSteps: 2) = error else {
                Issue.record("expected cancellation after 2 steps, got \(error)"); return
            }
        }
    }
}
