import CURecTensor
import Foundation

/// What a fine-tuning run trains.
public enum LlamaFineTuningMethod: Sendable, Equatable, Codable {
    /// Low-rank adapters on the frozen model.
    case lora(LoRAConfig)
    /// Every tensor of the model.
    case full
}

/// Hyper-parameters of a ``LlamaFineTuner``.
public struct LlamaFineTuningConfig: Sendable, Equatable, Codable {
    /// Adapters or full fine-tuning.
    public var method: LlamaFineTuningMethod
    /// Rows per batch (padded to the longest row of the batch).
    public var batchSize: Int
    /// Peak learning rate, reached at the end of the warm-up.
    public var learningRate: Float
    /// Learning rate at the end of the cosine decay (and after it).
    public var minLearningRate: Float
    /// Steps of linear warm-up from `learningRate / warmupSteps`.
    public var warmupSteps: Int
    /// Step at which the cosine decay reaches `minLearningRate`.
    public var totalSteps: Int
    /// AdamW's decoupled weight decay (all adapter matrices; in full fine-tuning the matrices and
    /// the embedding, not the norm weights).
    public var weightDecay: Float
    /// AdamW's moment decay rates and epsilon.
    public var beta1: Float, beta2: Float, eps: Float
    /// Largest global gradient norm; larger gradients are scaled down to it (0: no clipping).
    public var maxGradNorm: Float
    /// Seeds the adapters' initialisation, the example order and the dropout masks.
    public var seed: UInt64
    /// Whether each epoch visits the examples in a new random order (else in data set order).
    public var shuffle: Bool

    public init(method: LlamaFineTuningMethod = .lora(LoRAConfig()), batchSize: Int = 8,
                learningRate: Float = 2e-4, minLearningRate: Float = 0, warmupSteps: Int = 10,
                totalSteps: Int = 1000, weightDecay: Float = 0, beta1: Float = 0.9, beta2: Float = 0.999,
                eps: Float = 1e-8, maxGradNorm: Float = 1, seed: UInt64 = 0, shuffle: Bool = true) {
        self.method = method
        self.batchSize = batchSize
        self.learningRate = learningRate
        self.minLearningRate = minLearningRate
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.weightDecay = weightDecay
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.maxGradNorm = maxGradNorm
        self.seed = seed
        self.shuffle = shuffle
    }

    /// The learning-rate schedule (linear warm-up, then cosine decay).
    public var schedule: CosineSchedule {
        CosineSchedule(maxLR: learningRate, minLR: minLearningRate, warmupSteps: warmupSteps, totalSteps: totalSteps)
    }

    /// Checks the ranges of every field (and of the adapter configuration).
    public func validate() throws(LlamaFineTuningError) {
        guard batchSize > 0 else { throw .invalidConfig("batch size must be positive, got \(batchSize)") }
        guard learningRate.isFinite, learningRate >= 0, minLearningRate.isFinite, minLearningRate >= 0 else {
            throw .invalidConfig("learning rates must be finite and non-negative")
        }
        guard warmupSteps >= 0, totalSteps >= 0 else { throw .invalidConfig("step counts must be non-negative") }
        guard weightDecay.isFinite, weightDecay >= 0 else { throw .invalidConfig("weight decay must be finite and non-negative") }
        guard beta1 >= 0, beta1 < 1, beta2 >= 0, beta2 < 1, eps > 0, eps.isFinite else {
            throw .invalidConfig("betas must be in [0, 1) and eps positive")
        }
        guard maxGradNorm.isFinite, maxGradNorm >= 0 else { throw .invalidConfig("maximum gradient norm must be finite and non-negative") }
        if case .lora(let c) = method {
            do { try c.validate() } catch { throw .adapters(error) }
        }
    }
}

/// Where a run stands: steps taken, position in the example order, generator state.
public struct LlamaFineTuningProgress: Sendable, Equatable {
    /// Optimizer steps taken.
    public internal(set) var step = 0
    /// Epochs started before the current one (0 during the first pass over the examples).
    public internal(set) var epoch = 0
    /// Next position in ``order``.
    public internal(set) var cursor = 0
    /// The current epoch's order of example indices.
    public internal(set) var order: [Int] = []
}

/// One optimizer step's report.
public struct LlamaFineTuningStep: Sendable, Equatable {
    /// Steps taken including this one.
    public var step: Int
    /// Epoch the batch's last row came from (0-based).
    public var epoch: Int
    /// Mean cross-entropy over the batch's completion tokens.
    public var loss: Float
    /// Global gradient norm before clipping.
    public var gradNorm: Double
    /// Learning rate of the step.
    public var learningRate: Float
    /// Completion tokens the loss was taken on.
    public var lossTokens: Int
    /// Input tokens of the batch, padding excluded.
    public var tokens: Int
    /// Rows × padded length.
    public var paddedTokens: Int
}

/// Fine-tunes a ``LlamaModel`` on chat examples (``LlamaChatDataset``): the loss is the mean
/// cross-entropy over each batch's completion tokens only.
///
/// With ``LlamaFineTuningMethod/lora(_:)`` the fine-tuner makes adapters from the seed (or takes
/// the ones given), attaches them and freezes the model, so only the adapters train; with
/// ``LlamaFineTuningMethod/full`` every tensor trains. Each ``step()`` takes the next
/// `batchSize` examples of the epoch's order (wrapping into the next epoch, reshuffled), pads the
/// rows at the end to the longest one (padding is never attended to by real tokens, whose
/// attention is causal, and carries no loss), runs forward and backward, clips the global
/// gradient norm and applies AdamW at the schedule's learning rate.
///
/// The run is deterministic: a checkpoint (``saveCheckpoint(directory:)``) holds the trained
/// weights, the AdamW moments and step, the position in the example order and the generators'
/// states, so ``loadCheckpoint(directory:)`` in a fresh fine-tuner continues exactly where the
/// saved one was. Not thread-safe: use it from one task at a time.
public final class LlamaFineTuner: @unchecked Sendable {
    /// The model being trained (its weights change in full fine-tuning).
    public let model: LlamaModel
    /// The training examples.
    public let dataset: LlamaChatDataset
    /// The run's hyper-parameters.
    public let config: LlamaFineTuningConfig
    /// The adapters being trained (nil in full fine-tuning).
    public let adapters: LlamaLoRA?
    /// AdamW state over the trained parameters.
    public let optimizer: AdamW
    /// Steps taken and position in the data.
    public internal(set) var progress = LlamaFineTuningProgress()
    /// Draws the example orders.
    var generator: Xoshiro256
    /// Fingerprint of the frozen base weights (LoRA), so adapters resume on the same base.
    let baseFingerprint: UInt64

    /// A fine-tuner of `model` on `dataset`.
    ///
    /// - Parameter adapters: for ``LlamaFineTuningMethod/lora(_:)``, adapters to continue from
    ///   (e.g. loaded with ``LlamaLoRA/loadPeft(directory:modelConfig:)``; their configuration must
    ///   equal the method's); nil makes fresh ones from `config.seed`. Ignored in full
    ///   fine-tuning.
    /// - Throws: for an invalid configuration, a model with quantized weights
    ///   (``LlamaError/quantizedWeights(operation:)``), or an example longer than the model's
    ///   context plus one, or with a token outside the vocabulary.
    public init(model: LlamaModel, dataset: LlamaChatDataset, config: LlamaFineTuningConfig,
                adapters: LlamaLoRA? = nil) throws(LlamaFineTuningError) {
        try config.validate()
        do { try model.requireFloat32("fine-tuning") } catch { throw .model(error) }
        let c = model.config
        for (i, s) in dataset.sequences.enumerated() {
            if s.tokens.count - 1 > c.context {
                throw .exampleTooLong(index: i, tokens: s.tokens.count, maxLength: c.context + 1)
            }
            if let bad = s.tokens.first(where: { $0 >= c.vocab }) {
                throw .invalidExample(index: i, reason: "token id \(bad) is outside the vocabulary 0..<\(c.vocab)")
            }
        }
        guard dataset.paddingToken < c.vocab else {
            throw .invalidConfig("padding token \(dataset.paddingToken) is outside the vocabulary 0..<\(c.vocab)")
        }
        self.model = model
        self.dataset = dataset
        self.config = config
        switch config.method {
        case .lora(let loraConfig):
            let lora: LlamaLoRA
            do throws(LoRAError) {
                if let adapters {
                    guard adapters.config == loraConfig else {
                        throw .invalidConfig("the given adapters have \(adapters.config), the method \(loraConfig)")
                    }
                    lora = adapters
                } else {
                    lora = try LlamaLoRA(config: loraConfig, modelConfig: c, seed: config.seed,
                                         dropoutSeed: config.seed ^ 0xD1B5_4A32_D192_ED03)
                }
                try lora.attach(to: model)
            } catch {
                throw .adapters(error)
            }
            model.setTrainable(false)
            self.adapters = lora
            self.optimizer = lora.makeOptimizer(beta1: config.beta1, beta2: config.beta2, eps: config.eps,
                                                weightDecay: config.weightDecay)
            self.baseFingerprint = Self.fingerprint(model.parameters)
        case .full:
            model.setTrainable(true)
            self.adapters = nil
            self.optimizer = model.makeOptimizer(beta1: config.beta1, beta2: config.beta2, eps: config.eps,
                                                 weightDecay: config.weightDecay)
            self.baseFingerprint = 0
        }
        generator = Xoshiro256(seed: config.seed ^ 0x5851_F42D_4C95_7F2D)
        progress.order = nextOrder()
    }

    /// Number of trained parameters.
    public var trainableParameterCount: Int { adapters?.parameterCount ?? model.trainableParameterCount }

    /// A new epoch's example order.
    func nextOrder() -> [Int] {
        var order = Array(0..<dataset.sequences.count)
        guard config.shuffle else { return order }
        for i in stride(from: order.count - 1, to: 0, by: -1) {
            order.swapAt(i, Int(generator.next() % UInt64(i + 1)))
        }
        return order
    }

    /// The next `batchSize` example indices (advancing the position, reshuffling at epoch ends).
    func nextBatch() -> [Int] {
        var rows: [Int] = []
        while rows.count < config.batchSize {
            if progress.cursor == progress.order.count {
                progress.epoch += 1
                progress.cursor = 0
                progress.order = nextOrder()
            }
            rows.append(progress.order[progress.cursor])
            progress.cursor += 1
        }
        return rows
    }

    /// Inputs and targets `[B][T]` of examples `rows`, `T` the longest input; padding and
    /// prompt positions get target -1.
    func batch(_ rows: [Int]) -> (inputs: [[Int]], targets: [[Int]], lossTokens: Int, tokens: Int) {
        let seqs = rows.map { dataset.sequences[$0] }
        let T = (seqs.map(\.tokens.count).max() ?? 1) - 1
        var inputs: [[Int]] = [], targets: [[Int]] = [], lossTokens = 0, tokens = 0
        for s in seqs {
            let n = s.tokens.count - 1
            var inp = Array(s.tokens[0..<n]), tgt = [Int](repeating: -1, count: T)
            for t in (s.completionStart - 1)..<n { tgt[t] = s.tokens[t + 1] }
            inp += [Int](repeating: dataset.paddingToken, count: T - n)
            inputs.append(inp)
            targets.append(tgt)
            lossTokens += s.completionCount
            tokens += n
        }
        return (inputs, targets, lossTokens, tokens)
    }

    /// One optimizer step on the next batch.
    ///
    /// The batch counts as consumed even when the step is refused (a NaN or infinite loss or
    /// gradient: ``LlamaError/nonFiniteLoss(_:)``, ``LlamaError/nonFiniteGradient(norm:)``), in
    /// which case the trained weights and the optimizer state are unchanged.
    @discardableResult
    public func step() throws(LlamaFineTuningError) -> LlamaFineTuningStep {
        let rows = nextBatch()
        let epoch = progress.epoch
        let (inputs, targets, lossTokens, tokens) = batch(rows)
        let lr = config.schedule.learningRate(step: progress.step)
        let loss: Float, norm: Double
        do throws(LlamaError) {
            if let lora = adapters {
                lora.zeroGradients()
                lora.isTraining = true
                defer { lora.isTraining = false }
                loss = try model.forwardBackward(inputs: inputs, targets: targets)
                guard loss.isFinite else { throw .nonFiniteLoss(loss) }
                norm = GradientClipping.globalNorm(lora.gradients.data, count: lora.parameterCount)
                guard norm.isFinite else { throw .nonFiniteGradient(norm: norm) }
                optimizer.update(params: lora.parameters.data, grads: lora.gradients.data, segments: lora.segments,
                                 lr: lr, gradScale: GradientClipping.scale(norm: norm, maxNorm: config.maxGradNorm),
                                 onlySegments: true)
            } else {
                let result = try model.trainStep(inputs: inputs, targets: targets, optimizer: optimizer,
                                                 learningRate: lr, maxGradNorm: config.maxGradNorm)
                loss = result.loss
                norm = result.gradNorm
            }
        } catch {
            throw .model(error)
        }
        progress.step += 1
        return LlamaFineTuningStep(step: progress.step, epoch: epoch, loss: loss, gradNorm: norm, learningRate: lr,
                                   lossTokens: lossTokens, tokens: tokens,
                                   paddedTokens: inputs.count * (inputs.first?.count ?? 0))
    }

    /// Steps until ``progress`` reaches `steps`, polling `isCancelled` before each step.
    ///
    /// With `checkpointDirectory`, a checkpoint is saved every `checkpointEvery` steps (0: only
    /// at the end), at the end and when cancelled. `onStep` sees every step's report.
    /// - Throws: ``LlamaFineTuningError/cancelled`` once `isCancelled` returns true (after the
    ///   checkpoint), or the first refused step.
    public func train(until steps: Int, checkpointDirectory: String? = nil, checkpointEvery: Int = 0,
                      isCancelled: () -> Bool = { Task.isCancelled },
                      onStep: (LlamaFineTuningStep) -> Void = { _ in }) throws(LlamaFineTuningError) {
        while progress.step < steps {
            if isCancelled() {
                if let checkpointDirectory { try saveCheckpoint(directory: checkpointDirectory) }
                throw .cancelled
            }
            onStep(try step())
            if let checkpointDirectory, checkpointEvery > 0, progress.step % checkpointEvery == 0, progress.step < steps {
                try saveCheckpoint(directory: checkpointDirectory)
            }
        }
        if let checkpointDirectory { try saveCheckpoint(directory: checkpointDirectory) }
    }

    /// Frees the model's training activations (after the last step).
    public func releaseActivations() { model.releaseActivations() }

    /// FNV-1a over every 1009th weight (bit patterns) and the count.
    static func fingerprint(_ t: Tensor) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ x: UInt64) { h = (h ^ x) &* 0x100_0000_01b3 }
        mix(UInt64(t.count))
        for i in stride(from: 0, to: t.count, by: 1009) { mix(UInt64(t[i].bitPattern)) }
        return h
    }
}
