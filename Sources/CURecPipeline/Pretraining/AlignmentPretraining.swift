import CURecModels
import CURecTensor
import Foundation

/// Settings of stage 2, alignment pretraining of the built-in language model.
public struct PretrainingConfig: Sendable, Codable, Equatable {
    /// BPE vocabulary size (special and byte tokens included).
    public var vocabularySize = 2048
    public var layers = 4
    public var heads = 4
    public var width = 128
    public var context = 256
    /// Sequences per step.
    public var batch = 8
    public var steps = 400
    public var maxLearningRate: Float = 3e-3
    public var minLearningRate: Float = 3e-4
    public var warmupSteps = 40
    public var weightDecay: Float = 0.1
    public var seed: UInt64 = 1
    /// Share of the texts held out to report perplexity (never trained on).
    public var heldOutFraction = 0.05
    /// Save resumable weights every this many steps (0: never).
    public var checkpointEvery = 50

    public init() {}
}

/// What stage 2 produced.
public struct PretrainingResult: @unchecked Sendable {
    public let tokenizer: BPETokenizer
    public let model: GPTModel
    /// Mean training loss over the last 20 steps.
    public let trainLoss: Double
    /// Mean next-token loss on held-out texts, and its perplexity exp(loss).
    public let heldOutLoss: Double
    public let heldOutPerplexity: Double
    public let stepsRun: Int
    /// The step training resumed from (0 when it started fresh).
    public let resumedFromStep: Int
}

/// Why stage 2 failed.
public enum PretrainingError: Error, CustomStringConvertible, Sendable {
    case emptyCorpus
    case tokenizer(String)
    case model(String)
    case cancelled

    public var description: String {
        switch self {
        case .emptyCorpus: return "the pretraining corpus is empty"
        case .tokenizer(let message): return "tokenizer: \(message)"
        case .model(let message): return "model: \(message)"
        case .cancelled: return "pretraining was cancelled"
        }
    }
}

/// Stage 2 of CURec: train a BPE vocabulary on the instruction/reasoning corpus, then train
/// the GPT-style model on it from scratch (no pretrained LM is available offline), and report
/// held-out perplexity.
///
/// Texts are split into training and held-out sets by a seeded shuffle; training samples
/// random windows of `context + 1` tokens from the training texts joined with
/// `<|endoftext|>`. With a checkpoint directory the weights, tokenizer and step are saved
/// every `checkpointEvery` steps and a later run with the same config continues from there
/// (AdamW moments restart; the learning-rate schedule continues).
public enum AlignmentPretraining {
    public static let endOfText = "<|endoftext|>"

    public static func run(
        texts: [String], config: PretrainingConfig, checkpointDirectory: String? = nil,
        progress: (_ step: Int, _ total: Int, _ metrics: [String: Double]) -> Void = { _, _, _ in },
        isCancelled: () -> Bool = { false }
    ) throws(PretrainingError) -> PretrainingResult {
        let usable = texts.filter { !$0.isEmpty }
        guard !usable.isEmpty else { throw .emptyCorpus }
        var random = Xoshiro256(seed: config.seed)
        var order = Array(usable.indices)
        for index in stride(from: order.count - 1, to: 0, by: -1) {
            order.swapAt(index, Int(random.next() % UInt64(index + 1)))
        }
        let heldOutCount = usable.count < 20 ? 0 : max(1, Int(Double(usable.count) * config.heldOutFraction))
        let heldOut = order.prefix(heldOutCount).map { usable[$0] }
        let training = order.dropFirst(heldOutCount).map { usable[$0] }

        // Resume or start: tokenizer and model.
        var tokenizer: BPETokenizer
        var model: GPTModel
        var startStep = 0
        if let directory = checkpointDirectory, let resumed = loadCheckpoint(directory, config: config) {
            (tokenizer, model, startStep) = resumed
        } else {
            do {
                tokenizer = try BPETrainer(vocabularySize: config.vocabularySize, specialTokens: [endOfText]).train(training)
            } catch {
                throw .tokenizer(error.description)
            }
            let gptConfig = GPTConfig(layers: config.layers, heads: config.heads, width: config.width,
                                      context: config.context, vocab: tokenizer.vocabularySize)
            do {
                model = try GPTModel(config: gptConfig, seed: config.seed)
            } catch {
                throw .model(error.description)
            }
        }
        guard let separator = tokenizer.id(of: endOfText) else { throw .tokenizer("no \(endOfText) token") }
        var stream: [Int] = []
        for text in training {
            stream.append(contentsOf: tokenizer.encode(text).map(Int.init))
            stream.append(Int(separator))
        }
        let window = config.context + 1
        guard stream.count > window else {
            throw .model("the corpus has \(stream.count) tokens; it needs more than the context (\(window))")
        }
        let optimizer = model.makeOptimizer(weightDecay: config.weightDecay)
        let schedule = CosineSchedule(maxLR: config.maxLearningRate, minLR: config.minLearningRate,
                                      warmupSteps: config.warmupSteps, totalSteps: config.steps)
        // The sampler's stream is derived from the step, so a resumed run draws the same windows.
        var recentLosses: [Double] = []
        var step = startStep
        while step < config.steps {
            if isCancelled() { throw .cancelled }
            var sampler = Xoshiro256(seed: config.seed &+ 0x5851_F42D &* UInt64(step + 1))
            var inputs: [[Int]] = []
            var targets: [[Int]] = []
            for _ in 0..<config.batch {
                let start = Int(sampler.next() % UInt64(stream.count - window))
                let slice = Array(stream[start..<(start + window)])
                inputs.append(Array(slice.dropLast()))
                targets.append(Array(slice.dropFirst()))
            }
            let result: TrainStepResult
            do {
                result = try model.trainStep(inputs: inputs, targets: targets, optimizer: optimizer,
                                             learningRate: schedule.learningRate(step: step))
            } catch {
                throw .model("step \(step): \(error.description)")
            }
            recentLosses.append(Double(result.loss))
            if recentLosses.count > 20 { recentLosses.removeFirst() }
            step += 1
            progress(step, config.steps, ["loss": Double(result.loss), "lr": Double(result.learningRate)])
            if let directory = checkpointDirectory, config.checkpointEvery > 0, step % config.checkpointEvery == 0,
               step < config.steps {
                try saveCheckpoint(directory, tokenizer: tokenizer, model: model, step: step)
            }
        }
        let heldOutLoss = try evaluate(model: model, tokenizer: tokenizer, texts: heldOut.isEmpty ? Array(training.prefix(5)) : heldOut,
                                       separator: Int(separator))
        model.releaseActivations()
        let trainLoss = recentLosses.isEmpty ? heldOutLoss : recentLosses.reduce(0, +) / Double(recentLosses.count)
        return PretrainingResult(tokenizer: tokenizer, model: model, trainLoss: trainLoss, heldOutLoss: heldOutLoss,
                                 heldOutPerplexity: exp(heldOutLoss), stepsRun: config.steps - startStep,
                                 resumedFromStep: startStep)
    }

    /// Mean next-token loss over non-overlapping windows of the held-out texts.
    public static func evaluate(model: GPTModel, tokenizer: BPETokenizer, texts: [String],
                                separator: Int) throws(PretrainingError) -> Double {
        var stream: [Int] = []
        for text in texts {
            stream.append(contentsOf: tokenizer.encode(text).map(Int.init))
            stream.append(separator)
        }
        let context = model.config.context
        var total = 0.0
        var windows = 0
        var start = 0
        while start + 2 <= stream.count {
            let end = min(start + context + 1, stream.count)
            let slice = Array(stream[start..<end])
            do {
                total += Double(try model.loss(inputs: [Array(slice.dropLast())], targets: [Array(slice.dropFirst())]))
            } catch {
                throw .model("held-out evaluation: \(error.description)")
            }
            windows += 1
            start = end - 1
            if windows >= 64 { break }
        }
        return windows == 0 ? .nan : total / Double(windows)
    }

    private static func saveCheckpoint(_ directory: String, tokenizer: BPETokenizer, model: GPTModel,
                                       step: Int) throws(PretrainingError) {
        let final = (directory as NSString).appendingPathComponent("pretrain-step-\(step)")
        let staging = final + ".tmp"
        try? FileManager.default.removeItem(atPath: staging)
        do {
            try model.save(directory: staging)
        } catch {
            throw .model("checkpoint: \(error.description)")
        }
        do {
            try tokenizer.saveTokenizerJSON(path: (staging as NSString).appendingPathComponent("tokenizer.json"))
        } catch {
            throw .tokenizer("checkpoint: \(error.description)")
        }
        try? "\(step)\n".write(toFile: (staging as NSString).appendingPathComponent("step"), atomically: true, encoding: .utf8)
        guard rename(staging, final) == 0 else { throw .model("cannot move checkpoint \(staging) into place") }
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        where entry.hasPrefix("pretrain-step-") && entry != "pretrain-step-\(step)" {
            try? FileManager.default.removeItem(atPath: (directory as NSString).appendingPathComponent(entry))
        }
    }

    private static func loadCheckpoint(_ directory: String, config: PretrainingConfig) -> (BPETokenizer, GPTModel, Int)? {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        let steps = entries.compactMap { entry -> Int? in
            guard entry.hasPrefix("pretrain-step-"), !entry.hasSuffix(".tmp") else { return nil }
            return Int(entry.dropFirst("pretrain-step-".count))
        }.sorted(by: >)
        for step in steps where step < config.steps {
            let path = (directory as NSString).appendingPathComponent("pretrain-step-\(step)")
            guard let tokenizer = try? BPETokenizer.load(tokenizerJSONPath: (path as NSString).appendingPathComponent("tokenizer.json")),
                  let model = try? GPTModel.load(directory: path),
                  model.config.layers == config.layers, model.config.width == config.width,
                  model.config.heads == config.heads, model.config.context == config.context else { continue }
            return (tokenizer, model, step)
        }
        return nil
    }
}
