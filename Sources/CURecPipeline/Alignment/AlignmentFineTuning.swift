import CURecModels
import CURecTensor
import Foundation

/// Settings of stage 2 on SmolLM2: alignment fine-tuning on the corpus in the chat format.
public struct AlignmentFineTuningConfig: Sendable, Codable, Equatable {
    /// What the fine-tuning trains.
    public enum Method: String, Sendable, Codable, Equatable {
        /// LoRA adapters on the frozen model (the default).
        case lora
        /// Every weight (the aligned model then decodes in float32).
        case full
    }

    public var method: Method = .lora
    /// Adapters of the LoRA method and of GRPO (no dropout: GRPO's ratios need the same
    /// function at sampling and update time).
    public var lora = LoRAConfig(rank: 8, alpha: 16, dropout: 0)
    /// Optimizer steps, rows per step.
    public var steps = 300
    public var batch = 4
    public var learningRate: Float = 2e-4
    public var warmupSteps = 10
    /// Most tokens of one example (prompt and answer); a longer prompt loses its start (the
    /// oldest history lines).
    public var maxLength = 448
    /// Training examples drawn from the corpus (a seeded sample; 0: all of them).
    public var examples = 0
    /// Held-out examples (never trained on) on which the base and the aligned model's
    /// perplexity of the answer is measured.
    public var heldOut = 48
    /// Reasoning steps kept in each answer (see ``ChatCorpus/conversation(_:maxSteps:)``).
    public var reasoningSteps = 3
    /// Save a resumable checkpoint every this many steps (0: only when cancelled).
    public var checkpointEvery = 25
    public var seed: UInt64 = 1

    public init() {}

    func validate() throws(PipelineError) {
        guard steps >= 1, batch >= 1, heldOut >= 1, examples >= 0, maxLength >= 32, warmupSteps >= 0, checkpointEvery >= 0,
              learningRate.isFinite, learningRate > 0 else {
            throw .invalidConfig("alignment: steps, batch and heldOut must be positive, maxLength at least 32, the learning rate positive")
        }
        do { try lora.validate() } catch { throw .invalidConfig("alignment.lora: \(error)") }
    }
}

/// What alignment fine-tuning produced.
public struct AlignmentFineTuningResult: @unchecked Sendable {
    /// The trained adapters (LoRA) or nil (full: the backbone's float32 weights changed).
    public let adapters: LlamaLoRA?
    /// Per-token cross-entropy and perplexity of the held-out answers under the untuned
    /// model and under the aligned one (the same examples, the same tokens).
    public let baseHeldOutLoss: Double
    public let alignedHeldOutLoss: Double
    public var baseHeldOutPerplexity: Double { exp(baseHeldOutLoss) }
    public var alignedHeldOutPerplexity: Double { exp(alignedHeldOutLoss) }
    /// Training loss per step (of this run; a resumed run reports the steps it ran).
    public let losses: [Double]
    public let trainExamples: Int
    public let heldOutExamples: Int
    /// Answer tokens the perplexities are measured on.
    public let heldOutTokens: Int
    public let resumedFromStep: Int
}

/// Stage 2 on a pretrained chat model: fine-tune it on the instruction + reasoning corpus in
/// its chat format (system turn, the instruction and facts as the user turn, reasoning steps
/// and reason as the assistant turn), with the loss on the assistant turn only.
///
/// A seeded shuffle of the examples puts `heldOut` aside first; the perplexity of their
/// answers is measured under the model before and after training. With a checkpoint
/// directory the run saves every `checkpointEvery` steps and continues from there.
public enum AlignmentFineTuning {
    public static func run(
        examples: [CorpusExample], backbone: LlamaBackbone, config: AlignmentFineTuningConfig,
        checkpointDirectory: String? = nil,
        progress: (_ step: Int, _ total: Int, _ metrics: [String: Double]) -> Void = { _, _, _ in },
        isCancelled: @escaping () -> Bool = { false }
    ) throws -> AlignmentFineTuningResult {
        try config.validate()
        guard examples.count > config.heldOut else {
            throw PipelineError.invalidConfig("alignment: \(examples.count) corpus examples leave none to train on after \(config.heldOut) held out")
        }
        var random = Xoshiro256(seed: config.seed ^ 0xA11C_0DE5)
        var order = Array(examples.indices)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(random.next() % UInt64(i + 1))) }
        let heldOutRows = order.prefix(config.heldOut)
        var trainRows = Array(order.dropFirst(config.heldOut))
        if config.examples > 0 { trainRows = Array(trainRows.prefix(config.examples)) }
        let tokenizer = backbone.tokenizer
        let maxLength = min(config.maxLength, backbone.trainable.config.context + 1)
        let train = try dataset(trainRows.map { examples[$0] }, tokenizer: tokenizer, maxLength: maxLength,
                                reasoningSteps: config.reasoningSteps)
        let heldOut = try dataset(heldOutRows.map { examples[$0] }, tokenizer: tokenizer, maxLength: maxLength,
                                  reasoningSteps: config.reasoningSteps)

        try backbone.use(nil, on: backbone.trainable)
        let base = try heldOutLoss(heldOut, model: backbone.trainable, batch: config.batch)
        progress(0, config.steps, ["base_held_out_perplexity": exp(base.loss)])

        let method: LlamaFineTuningMethod = config.method == .lora ? .lora(config.lora) : .full
        let tuner = try LlamaFineTuner(
            model: backbone.trainable, dataset: train,
            config: LlamaFineTuningConfig(method: method, batchSize: config.batch, learningRate: config.learningRate,
                                          minLearningRate: config.learningRate / 10, warmupSteps: config.warmupSteps,
                                          totalSteps: config.steps, seed: config.seed))
        var resumed = 0
        if let checkpointDirectory, LlamaFineTuner.hasCheckpoint(directory: checkpointDirectory) {
            try tuner.loadCheckpoint(directory: checkpointDirectory)
            resumed = tuner.progress.step
        }
        var losses: [Double] = []
        defer {
            tuner.releaseActivations()
            tuner.adapters?.detach(from: backbone.trainable)
            backbone.trainable.setTrainable(false)
        }
        try tuner.train(until: config.steps, checkpointDirectory: checkpointDirectory, checkpointEvery: config.checkpointEvery,
                        isCancelled: isCancelled) { step in
            losses.append(Double(step.loss))
            progress(step.step, config.steps, ["loss": Double(step.loss), "grad_norm": step.gradNorm,
                                               "learning_rate": Double(step.learningRate)])
        }
        tuner.adapters?.isTraining = false
        let aligned = try heldOutLoss(heldOut, model: backbone.trainable, batch: config.batch)
        return AlignmentFineTuningResult(
            adapters: tuner.adapters, baseHeldOutLoss: base.loss, alignedHeldOutLoss: aligned.loss, losses: losses,
            trainExamples: train.sequences.count, heldOutExamples: heldOut.sequences.count, heldOutTokens: base.tokens,
            resumedFromStep: resumed)
    }

    /// The examples as training sequences: a prompt over `maxLength` loses its start; an
    /// example whose answer alone does not fit is left out.
    static func dataset(_ examples: [CorpusExample], tokenizer: PretrainedTokenizer, maxLength: Int,
                        reasoningSteps: Int) throws -> LlamaChatDataset {
        var sequences: [LlamaTrainingSequence] = []
        for example in examples {
            let conversation = ChatCorpus.conversation(example, maxSteps: reasoningSteps)
            let result = Result { () throws(LlamaFineTuningError) -> LlamaChatDataset in
                try LlamaChatDataset(conversations: [conversation], tokenizer: tokenizer, maxLength: maxLength,
                                     overlong: .truncatePrompt)
            }
            switch result {
            case .success(let one): sequences += one.sequences
            case .failure(.exampleTooLong): continue
            case .failure(let error): throw error
            }
        }
        guard !sequences.isEmpty else {
            throw PipelineError.invalidConfig("alignment: no example fits in \(maxLength) tokens; raise maxLength")
        }
        return try LlamaChatDataset(sequences: sequences, paddingToken: Int(tokenizer.paddingTokenID ?? tokenizer.eosTokenID ?? 0))
    }

    /// Mean per-token cross-entropy of the answers (assistant turns) of `dataset` under
    /// `model` as it is (with whatever adapters are attached), and the number of answer tokens.
    public static func heldOutLoss(_ dataset: LlamaChatDataset, model: LlamaModel, batch: Int) throws -> (loss: Double, tokens: Int) {
        var sum = 0.0, count = 0
        let sequences = dataset.sequences
        for start in stride(from: 0, to: sequences.count, by: max(1, batch)) {
            let rows = sequences[start..<min(sequences.count, start + max(1, batch))]
            let T = (rows.map(\.tokens.count).max() ?? 2) - 1
            var inputs: [[Int]] = [], targets: [[Int]] = [], counted = 0
            for s in rows {
                let n = s.tokens.count - 1
                var input = Array(s.tokens[0..<n]), target = [Int](repeating: -1, count: T)
                for t in (s.completionStart - 1)..<n { target[t] = s.tokens[t + 1] }
                input += [Int](repeating: dataset.paddingToken, count: T - n)
                inputs.append(input)
                targets.append(target)
                counted += n - (s.completionStart - 1)
            }
            let loss = try model.loss(inputs: inputs, targets: targets)
            sum += Double(loss) * Double(counted)
            count += counted
        }
        model.releaseActivations()
        return (sum / Double(max(count, 1)), count)
    }
}
