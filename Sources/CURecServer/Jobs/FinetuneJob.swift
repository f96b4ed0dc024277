import CURecJobs
import CURecModels
import CURecTensor
import Foundation

/// Job kind `finetune`: fine-tunes the pretrained chat model on a client's uploaded chat
/// dataset and publishes the result as `models/<output>/vN`, which
/// `GenerationService.Generate` serves under the name `<output>`.
///
/// LoRA (default) publishes `adapter_model.safetensors` + `adapter_config.json` in the layout
/// the `peft` library reads; `method=full` publishes every weight (`model.safetensors`). The
/// loss is taken on each example's last assistant turn only. Progress reports loss, learning
/// rate and tokens per step; cancellation stops between steps; a restarted job resumes from
/// its last checkpoint (every `checkpoint_every` steps) on the same dataset version.
struct FinetuneJob: JobKind {
    let datasets: DatasetStore
    let artifacts: ArtifactStore
    /// The GGUF file of the base model.
    let basePath: String

    /// The parameters of `finetune`.
    enum Parameters {
        /// The learning rate when none is given, by method.
        static let loraLearningRate = 2e-4
        static let fullLearningRate = 2e-5

        static let dataset: JobParameter<String> = .required(
            "dataset", rule: JobParameterTextRule("be an uploaded dataset, NAME or NAME@vN") { text in
                (try? FinetuneJob.datasetReference(text)) != nil
            },
            doc: "the uploaded chat dataset, `NAME` (its newest version) or `NAME@vN`")
        static let output: JobParameter<String> = .required(
            "output", rule: .publishableName(by: "finetune"),
            doc: "the model name to publish: `models/<output>/vN`, served as `model=<output>`")
        static let method: JobParameter<String> = .choice(
            "method", ["lora", "full"], default: "lora",
            doc: "LoRA adapters (`peft` layout) or every weight (`model.safetensors`)")
        static let rank: JobParameter<Int> = .integer("rank", default: 8, in: 1...256, doc: "LoRA rank")
        static let alpha: JobParameter<Double> = .number("alpha", default: 16, in: 0.001...4096, doc: "LoRA scale numerator (scale alpha/rank)")
        static let dropout: JobParameter<Double> = .number("dropout", default: 0.05, in: 0...0.9, doc: "LoRA input dropout")
        static let targets: JobParameter<[String]> = .choices(
            "targets", among: LoRATarget.allCases.map(\.shortName), default: LoRAConfig().targets.map(\.shortName),
            doc: "the projections that get adapters")
        static let steps: JobParameter<Int?> = .optionalInteger(
            "steps", in: 1...1_000_000, defaultText: "one pass over the examples", doc: "optimizer steps")
        static let batch: JobParameter<Int> = .integer("batch", default: 4, in: 1...64, doc: "conversations per step")
        static let learningRate: JobParameter<Double?> = .optionalNumber(
            "learning_rate", in: 1e-7...1, defaultText: "\(loraLearningRate) (lora), \(fullLearningRate) (full)",
            doc: "peak learning rate (cosine decay to a tenth)")
        static let maxLength: JobParameter<Int> = .integer(
            "max_length", default: 512, in: 16...2048,
            doc: "tokens per conversation; longer ones lose their oldest prompt tokens")
        static let checkpointEvery: JobParameter<Int> = .integer(
            "checkpoint_every", default: 20, in: 1...100_000, doc: "steps between resumable checkpoints")
        static let seed: JobParameter<Int> = .integer("seed", default: 0, in: 0...Int.max, doc: "random seed")
        static let schema = JobParameterSchema(kind: "finetune", [
            dataset, output, method, rank, alpha, dropout, targets, steps, batch, learningRate, maxLength,
            checkpointEvery, seed,
        ])
    }

    var name: String { "finetune" }
    var parameters: JobParameterSchema { Parameters.schema }

    /// Everything a run needs, read from the parameters.
    struct Settings {
        var dataset: String
        var datasetVersion: String?
        var output: String
        var training: LlamaFineTuningConfig
        var steps: Int?
        var maxLength: Int
        var checkpointEvery: Int
    }

    /// The most tokens one optimizer step may hold (`batch` x `max_length`): SmolLM2's
    /// logits alone take about 400 KB per token with their gradient.
    static let maximumTokensPerStep = 8192

    func validate(_ values: JobParameterValues) throws(JobError) {
        let tokens = values[Parameters.batch] * values[Parameters.maxLength]
        guard tokens <= Self.maximumTokensPerStep else {
            throw .invalidParameter("finetune: batch x max_length is \(tokens) tokens per step; at most \(Self.maximumTokensPerStep) "
                                    + "(lower batch or max_length)")
        }
        let settings = try Self.settings(values)
        do {
            _ = try datasets.find(settings.dataset, version: settings.datasetVersion)
        } catch {
            throw .invalidParameter("finetune: \(error.description)")
        }
        guard FileManager.default.fileExists(atPath: basePath) else {
            throw .invalidParameter("finetune: the base model file \(basePath) is missing (scripts/fetch-lm fetches it)")
        }
    }

    /// A dataset reference `NAME` or `NAME@vN`: the checked name and the version, if any.
    static func datasetReference(_ text: String) throws(DatasetError) -> (name: String, version: String?) {
        let parts = text.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let name = try DatasetStore.checkName(parts[0])
        guard parts.count == 2 else { return (name, nil) }
        guard parts[1].hasPrefix("v"), let number = Int(parts[1].dropFirst()), number > 0 else { throw .notFound(text) }
        return (name, parts[1])
    }

    static func settings(_ values: JobParameterValues) throws(JobError) -> Settings {
        let reference: (name: String, version: String?)
        do {
            reference = try datasetReference(values[Parameters.dataset])
        } catch {
            throw .invalidParameter("finetune: parameter 'dataset': \(error.description)")
        }
        let method = values[Parameters.method]
        var lora = LoRAConfig()
        lora.rank = values[Parameters.rank]
        lora.alpha = Float(values[Parameters.alpha])
        lora.dropout = Float(values[Parameters.dropout])
        lora.targets = values[Parameters.targets].compactMap { name in LoRATarget.allCases.first { $0.shortName == name } }.sorted()
        let learningRate = Float(values[Parameters.learningRate]
                                 ?? (method == "lora" ? Parameters.loraLearningRate : Parameters.fullLearningRate))
        let steps = values[Parameters.steps]
        let training = LlamaFineTuningConfig(
            method: method == "lora" ? .lora(lora) : .full, batchSize: values[Parameters.batch], learningRate: learningRate,
            minLearningRate: learningRate / 10, warmupSteps: 0, totalSteps: steps ?? 1,
            seed: UInt64(values[Parameters.seed]))
        do {
            try training.validate()
        } catch {
            throw .invalidParameter("finetune: \(error.description)")
        }
        return Settings(dataset: reference.name, datasetVersion: reference.version, output: values[Parameters.output],
                        training: training, steps: steps, maxLength: values[Parameters.maxLength],
                        checkpointEvery: values[Parameters.checkpointEvery])
    }

    func run(_ context: JobContext) throws -> JobOutcome {
        var settings = try Self.settings(context.values)
        // The dataset version is fixed on the first attempt, so a resumed job trains on the
        // same data even if a newer version was uploaded since.
        let pinned = (context.checkpointDirectory as NSString).appendingPathComponent("dataset-version")
        if let text = try? String(contentsOfFile: pinned, encoding: .utf8), !text.isEmpty {
            settings.datasetVersion = text
        }
        let dataset = try datasets.find(settings.dataset, version: settings.datasetVersion)
        try FileManager.default.createDirectory(atPath: context.checkpointDirectory, withIntermediateDirectories: true)
        try dataset.version.write(toFile: pinned, atomically: true, encoding: .utf8)

        context.progress(stage: "load", step: 0, total: 1)
        let conversations = try Self.conversations(in: dataset.path)
        let file = try GGUFFile.read(path: basePath)
        let tokenizer = try PretrainedTokenizer(gguf: file)
        let model = try LlamaModel.load(gguf: file)
        let examples = try LlamaChatDataset(conversations: conversations, tokenizer: tokenizer,
                                            maxLength: min(settings.maxLength, model.config.context + 1),
                                            overlong: .truncatePrompt)
        var training = settings.training
        let steps = settings.steps ?? max(1, (examples.sequences.count + training.batchSize - 1) / training.batchSize)
        training.totalSteps = steps
        training.warmupSteps = min(10, steps / 10)
        let tuner = try LlamaFineTuner(model: model, dataset: examples, config: training)
        let checkpoints = (context.checkpointDirectory as NSString).appendingPathComponent("finetune")
        if LlamaFineTuner.hasCheckpoint(directory: checkpoints) {
            try tuner.loadCheckpoint(directory: checkpoints)
            context.log("resumed from step \(tuner.progress.step)")
        }
        context.log("\(examples.sequences.count) examples from \(dataset.name)@\(dataset.version) "
                    + "(\(examples.truncated.count) shortened to \(settings.maxLength) tokens); "
                    + "\(tuner.trainableParameterCount) trainable parameters; \(steps) steps")
        let lastLoss = try Self.train(tuner, steps: steps, checkpoints: checkpoints,
                                      every: settings.checkpointEvery, context: context)
        tuner.releaseActivations()

        context.progress(stage: "save", step: 0, total: 1)
        var manifest = ArtifactManifest(kind: .chatModel)
        manifest.base = ChatModelStore.baseName
        manifest.baseFile = (basePath as NSString).lastPathComponent
        manifest.dataset = "\(dataset.name)@\(dataset.version)"
        manifest.job = context.id
        manifest.steps = steps
        manifest.examples = examples.sequences.count
        manifest.finalLoss = Double(lastLoss)
        let directory: String
        switch training.method {
        case .lora(let lora):
            manifest.method = .lora
            manifest.rank = lora.rank
            manifest.targets = lora.targets.map(\.shortName)
            guard let adapters = tuner.adapters else { throw JobError.invalidParameter("finetune: no adapters were trained") }
            directory = try artifacts.addVersion(of: settings.output, manifest: manifest) { folder in
                try adapters.savePeft(directory: folder, baseModelNameOrPath: "HuggingFaceTB/SmolLM2-135M-Instruct")
            }
        case .full:
            manifest.method = .full
            directory = try artifacts.addVersion(of: settings.output, manifest: manifest) { folder in
                try LlamaWeightsFile.save(model, path: (folder as NSString).appendingPathComponent(LlamaWeightsFile.fileName))
            }
        }
        let version = "models/\(settings.output)/\((directory as NSString).lastPathComponent)"
        context.log("published \(version)")
        return JobOutcome(metrics: ["final_loss": Double(lastLoss), "steps": Double(steps),
                                    "examples": Double(examples.sequences.count)], artifact: version)
    }

    /// Trains to `steps`, reporting each step; returns the last step's loss.
    static func train(_ tuner: LlamaFineTuner, steps: Int, checkpoints: String, every: Int,
                      context: JobContext) throws -> Float {
        let lastLoss = LossBox()
        do {
            try tuner.train(until: steps, checkpointDirectory: checkpoints, checkpointEvery: every,
                            isCancelled: { context.isCancelled }, onStep: { report in
                lastLoss.value = report.loss
                context.progress(stage: "finetune", step: UInt64(report.step), total: UInt64(steps), metrics: [
                    "loss": Double(report.loss), "learning_rate": Double(report.learningRate),
                    "tokens": Double(report.tokens), "loss_tokens": Double(report.lossTokens),
                ])
            })
        } catch {
            if case .cancelled = error { throw JobCancelled() }
            throw error
        }
        return lastLoss.value
    }

    /// The last reported loss (written by the progress callback).
    final class LossBox {
        var value: Float = .nan
    }

    /// The conversations of a stored dataset file (already checked when it was uploaded).
    static func conversations(in path: String) throws -> [[ChatMessage]] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw JobError.invalidParameter("finetune: the dataset file \(path) cannot be read")
        }
        var conversations: [[ChatMessage]] = []
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
            let bytes = Array(line)
            if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            let example = try ChatExampleValidator.parse(bytes)
            conversations.append(example.messages.map { turn in
                ChatMessage(role: turn.role == "system" ? .system : turn.role == "user" ? .user : .assistant,
                            content: turn.content)
            })
        }
        return conversations
    }
}

extension LoRATarget {
    /// The name a `finetune` job's `targets` parameter uses: q, k, v, o, gate, up, down.
    var shortName: String {
        switch self {
        case .query: return "q"
        case .key: return "k"
        case .value: return "v"
        case .output: return "o"
        case .gate: return "gate"
        case .up: return "up"
        case .down: return "down"
        }
    }
}
