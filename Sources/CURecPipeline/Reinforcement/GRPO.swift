import CURecModels
import CURecTensor
import Foundation

/// Stage 4 of CURec: fine-tune the language model with GRPO (group relative policy
/// optimisation) on rewards from the collaborative reward model.
///
/// Each step picks `promptsPerStep` prompts (a seeded shuffle of all prompts, consumed in order
/// and reshuffled when exhausted), samples `groupSize` completions of each from the current
/// policy, scores every completion with one call of `reward`, and normalises the rewards within
/// each prompt's group into advantages. The policy's log-probabilities at sampling time (old)
/// and the reference model's are computed once; then `innerEpochs` AdamW updates each maximise
/// the clipped surrogate minus β times the k3 KL estimate to the reference, averaged over every
/// completion token of the batch (see ``GRPOObjective`` for the weights that carry it through
/// the model's weighted cross-entropy).
///
/// Completions are trained on with their stop sequence (the model learns to stop); a completion
/// that reached `maxTokens` is trained on as it is. Prompts are never truncated: one longer than
/// `context - maxTokens` is refused.
public enum GRPO {
    /// Runs GRPO, updating `policy` in place.
    ///
    /// - Parameters:
    ///   - policy: the model being trained.
    ///   - reference: a separate frozen model of the same shape (e.g. `policy.frozenCopy()`
    ///     before training); it is only read.
    ///   - prompts: token ids of each prompt (non-empty, at most `context - maxTokens` tokens).
    ///   - stopSequences: generation of a completion ends at any of these (each non-empty).
    ///   - config: see ``GRPOConfig``.
    ///   - reward: called once per step with all of its samples, in group order
    ///     (`groupSize` consecutive samples share a prompt); returns one finite reward per sample.
    ///   - progress: called after each step.
    ///   - isCancelled: polled before each step and during sampling; true ends the run with
    ///     ``GRPOError/cancelled(completedSteps:)``.
    /// - Returns: the per-step logs.
    public static func run(
        policy: some GRPOPolicy, reference: some GRPOPolicy, prompts: [[Int]], stopSequences: [[Int]],
        config: GRPOConfig,
        reward: ([GRPOSample]) throws -> [Float],
        progress: (GRPOStepLog) -> Void = { _ in },
        isCancelled: () -> Bool = { false }
    ) throws(GRPOError) -> GRPOResult {
        let vocab = policy.vocabularySize, context = policy.contextLength
        try config.validate(context: context)
        guard policy !== reference else {
            throw .invalidArgument("the reference must be a separate model (e.g. policy.frozenCopy()), not the policy itself")
        }
        guard reference.architecture == policy.architecture else {
            throw .invalidArgument("the reference model (\(reference.architecture)) does not have the policy's shape (\(policy.architecture))")
        }
        guard !prompts.isEmpty else { throw .invalidArgument("no prompts") }
        let promptLimit = context - config.maxTokens
        for (index, prompt) in prompts.enumerated() {
            guard !prompt.isEmpty else { throw .invalidPrompt(index: index, reason: "it has no tokens") }
            if let bad = prompt.first(where: { $0 < 0 || $0 >= vocab }) {
                throw .invalidPrompt(index: index, reason: "token \(bad) is outside the vocabulary (0..<\(vocab))")
            }
            guard prompt.count <= promptLimit else {
                throw .promptTooLong(index: index, length: prompt.count, limit: promptLimit)
            }
        }
        for (index, stop) in stopSequences.enumerated() {
            guard !stop.isEmpty else { throw .invalidStopSequence(index: index, reason: "it is empty") }
            if let bad = stop.first(where: { $0 < 0 || $0 >= vocab }) {
                throw .invalidStopSequence(index: index, reason: "token \(bad) is outside the vocabulary (0..<\(vocab))")
            }
        }

        let objective = GRPOObjective(clipEpsilon: config.clipEpsilon, klCoefficient: config.klCoefficient)
        let optimizer = policy.makeOptimizer(weightDecay: config.weightDecay)
        var orderRandom = Xoshiro256(seed: config.seed ^ 0x6A09_E667_F3BC_C908)
        var order: [Int] = []
        var cursor = 0
        var logs: [GRPOStepLog] = []
        defer {
            policy.releaseActivations()
            reference.releaseActivations()
        }

        for stepIndex in 0..<config.steps {
            let step = stepIndex + 1
            if isCancelled() { throw .cancelled(completedSteps: stepIndex) }

            // Prompts of this step: the next slots of the shuffled order.
            var chosen: [Int] = []
            while chosen.count < config.promptsPerStep {
                if cursor == order.count {
                    order = Array(prompts.indices)
                    for i in stride(from: order.count - 1, to: 0, by: -1) {
                        order.swapAt(i, Int(orderRandom.next() % UInt64(i + 1)))
                    }
                    cursor = 0
                }
                chosen.append(order[cursor])
                cursor += 1
            }
            let promptIndices = chosen.flatMap { repeatElement($0, count: config.groupSize) }
            let rowPrompts = promptIndices.map { prompts[$0] }

            // Sample.
            let options = SamplingOptions(
                maxTokens: config.maxTokens, temperature: config.temperature, topK: config.topK, topP: 1,
                stopSequences: stopSequences, seed: config.seed &+ UInt64(step) &* 0xD1B5_4A32_D192_ED03)
            let generations: [GenerationResult]
            do {
                generations = try policy.sample(prompts: rowPrompts, options: options, shouldStop: isCancelled)
            } catch {
                throw .model(step: step, message: "sampling: \(error)")
            }
            if generations.contains(where: { $0.finishReason == .cancelled }) {
                throw .cancelled(completedSteps: stepIndex)
            }
            var samples: [GRPOSample] = []
            var completions: [[Int]] = []
            for (row, generation) in generations.enumerated() {
                var stopIndex: Int?
                var trained = generation.tokens
                if generation.finishReason == .stopSequence, let index = generation.stopSequenceIndex,
                   stopSequences.indices.contains(index) {
                    stopIndex = index
                    trained += stopSequences[index]
                }
                guard !trained.isEmpty else {
                    throw .model(step: step, message: "sample \(row) produced no tokens (\(generation.finishReason))")
                }
                samples.append(GRPOSample(promptIndex: promptIndices[row], completion: generation.tokens,
                                          stopSequenceIndex: stopIndex))
                completions.append(trained)
            }

            // Score.
            let rewards: [Float]
            do {
                rewards = try reward(samples)
            } catch {
                throw .rewardFailed(step: step, message: String(describing: error))
            }
            guard rewards.count == samples.count else {
                throw .rewardCountMismatch(step: step, expected: samples.count, got: rewards.count)
            }
            if let bad = rewards.firstIndex(where: { !$0.isFinite }) {
                throw .nonFiniteReward(step: step, sample: bad, promptIndex: samples[bad].promptIndex,
                                       value: rewards[bad])
            }
            let (advantages, flatGroups) = GRPOObjective.advantages(rewards: rewards, groupSize: config.groupSize)

            // Log-probabilities of the sampling policy and of the reference.
            let oldLogProbs: [[Float]], referenceLogProbs: [[Float]]
            do {
                oldLogProbs = try policy.logProbabilities(prompts: rowPrompts, continuations: completions)
                referenceLogProbs = try reference.logProbabilities(prompts: rowPrompts, continuations: completions)
            } catch {
                throw .model(step: step, message: "log-probabilities: \(error)")
            }

            // Updates.
            let rows = GRPOObjective.trainingRows(prompts: rowPrompts, completions: completions)
            var lossSum = 0.0, gradNormSum = 0.0, samplingKL = 0.0
            var clipped = 0, counted = 0
            for epoch in 0..<config.innerEpochs {
                let current: [[Float]]
                if epoch == 0 {
                    current = oldLogProbs
                } else {
                    do {
                        current = try policy.logProbabilities(prompts: rowPrompts, continuations: completions)
                    } catch {
                        throw .model(step: step, message: "log-probabilities: \(error)")
                    }
                }
                let evaluation = objective.evaluate(logProbs: current, oldLogProbs: oldLogProbs,
                                                    referenceLogProbs: referenceLogProbs, advantages: advantages)
                if epoch == 0 { samplingKL = evaluation.kl }
                let weights = GRPOObjective.trainingRows(prompts: rowPrompts, completions: completions,
                                                         weights: evaluation.weights).weights
                let result: TrainStepResult
                do {
                    result = try policy.trainStep(inputs: rows.inputs, targets: rows.targets, optimizer: optimizer,
                                                  learningRate: config.learningRate,
                                                  maxGradNorm: config.maxGradNorm, weights: weights)
                } catch {
                    throw .model(step: step, message: "update \(epoch + 1): \(error)")
                }
                lossSum -= evaluation.objective
                gradNormSum += result.gradNorm
                clipped += evaluation.clippedTokens
                counted += evaluation.tokens
            }

            let n = Double(rewards.count)
            let meanReward = rewards.reduce(0.0) { $0 + Double($1) } / n
            let variance = rewards.reduce(0.0) { $0 + (Double($1) - meanReward) * (Double($1) - meanReward) } / n
            let epochs = Double(config.innerEpochs)
            let log = GRPOStepLog(
                step: step, meanReward: meanReward, rewardStd: variance.squareRoot(), flatGroups: flatGroups,
                kl: samplingKL,
                meanLength: Double(completions.reduce(0) { $0 + $1.count }) / n,
                stoppedFraction: Double(samples.filter { $0.stopSequenceIndex != nil }.count) / n,
                loss: lossSum / epochs, clippedFraction: Double(clipped) / Double(max(counted, 1)),
                gradNorm: gradNormSum / epochs, learningRate: Double(config.learningRate))
            logs.append(log)
            progress(log)
        }
        return GRPOResult(logs: logs)
    }
}
