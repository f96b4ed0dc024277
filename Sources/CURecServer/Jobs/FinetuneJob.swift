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

    var name: String { "finetune" }
    var parameterSummary: String { Self.summary }
    static let summary =
        "dataset=NAME[@vN] and output=NAME (required); method=lora|full, rank, alpha, dropout, "
        + "targets (q,k,v,o,gate,up,down), steps, batch, learning_rate, max_length, checkpoint_every, seed"

    static let knownKeys: Set<String> = [
        "dataset", "output", "method", "rank", "alpha", "dropout", "targets", "steps", "batch",
        "learning_rate", "max_length", "checkpoint_every", "seed",
    ]

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

    func validate(_ parameters: [String: String]) throws(JobError) {
        let settings = try Self.settings(parameters)
        do {
            _ = try datasets.find(settings.dataset, version: settings.datasetVersion)
        } catch {
            throw .invalidParameter("finetune: \(error.description)")
        }
        guard FileManager.default.fileExists(atPath: basePath) else {
            throw .invalidParameter("finetune: the base model file \(basePath) is missing (scripts/fetch-lm fetches it)")
        }
    }

    static func settings(_ parameters: [String: String]) throws(JobError) -> Settings {
        for key in parameters.keys where !knownKeys.contains(key) {
            throw .invalidParameter("finetune: unknown parameter '\(ChatModelStore.shortened(key))'; expected \(summary)")
        }
        guard let datasetText = parameters["dataset"], !datasetText.isEmpty else {
            throw .invalidParameter("finetune: parameter 'dataset' (an uploaded dataset, NAME or NAME@vN) is required")
        }
        let parts = datasetText.split(separator: "@", maxSplits: 1).map(String.init)
        let dataset: String
        do {
            dataset = try DatasetStore.checkName(parts[0])
        } catch {
            throw .invalidParameter("finetune: parameter 'dataset': \(error.description)")
        }
        let version = parts.count == 2 ? parts[1] : nil
        if let version, !(version.hasPrefix("v") && Int(version.dropFirst()).map { $0 > 0 } == true) {
            throw .invalidParameter("finetune: parameter 'dataset' takes a version like NAME@v2")
        }
        guard let output = parameters["output"], ChatModelStore.isPlainName(output), output != ChatModelStore.baseName else {
            throw .invalidParameter("finetune: parameter 'output' (the model name to publish) must be 1 to 64 letters, digits, '-', '_' or '.', and not '\(ChatModelStore.baseName)'")
        }
        var lora = LoRAConfig()
        let method = parameters["method"] ?? "lora"
        guard method == "lora" || method == "full" else {
            throw .invalidParameter("finetune: parameter 'method' must be lora or full")
        }
        if let value = try JobParameters.integer(parameters, "rank", in: 1...256, kind: "finetune") { lora.rank = value }
        if let value = try number(parameters, "alpha", in: 0.001...4096) { lora.alpha = value }
        if let value = try number(parameters, "dropout", in: 0...0.9) { lora.dropout = value }
        if let text = parameters["targets"] {
            var targets: [LoRATarget] = []
            for name in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
                guard let target = LoRATarget.allCases.first(where: { $0.shortName == name }) else {
                    throw .invalidParameter("finetune: parameter 'targets' lists projections among q, k, v, o, gate, up, down")
                }
                if !targets.contains(target) { targets.append(target) }
            }
            guard !targets.isEmpty else { throw .invalidParameter("finetune: parameter 'targets' is empty") }
            lora.targets = targets.sorted()
        }
        let batch = try JobParameters.integer(parameters, "batch", in: 1...64, kind: "finetune") ?? 4
        let steps = try JobParameters.integer(parameters, "steps", in: 1...1_000_000, kind: "finetune")
        let learningRate = try number(parameters, "learning_rate", in: 1e-7...1) ?? (method == "lora" ? 2e-4 : 2e-5)
        let maxLength = try JobParameters.integer(parameters, "max_length", in: 16...8192, kind: "finetune") ?? 512
        let checkpointEvery = try JobParameters.integer(parameters, "checkpoint_every", in: 1...100_000, kind: "finetune") ?? 20
        let seed = UInt64(try JobParameters.integer(parameters, "seed", in: 0...Int.max, kind: "finetune") ?? 0)
        let training = LlamaFineTuningConfig(
            method: method == "lora" ? .lora(lora) : .full, batchSize: batch, learningRate: learningRate,
            minLearningRate: learningRate / 10, warmupSteps: 0, totalSteps: steps ?? 1, seed: seed)
        do {
            try training.validate()
        } catch {
            throw .invalidParameter("finetune: \(error.description)")
        }
        return Settings(dataset: dataset, datasetVersion: version, output: output, training: training,
                        steps: steps, maxLength: maxLength, checkpointEvery: checkpointEvery)
    }

    private static func number(_ parameters: [String: String], _ key: String,
                               in range: ClosedRange<Float>) throws(JobError) -> Float? {
        guard let text = parameters[key] else { return nil }
        guard let value = Float(text), value.isFinite, range.contains(value) else {
            throw .invalidParameter("finetune: parameter '\(key)' must be a number in \(range.lowerBound)...\(range.upperBound), not '\(ChatModelStore.shortened(text))'")
        }
        return value
    }

    func run(_ context: JobContext) throws -> JobOutcome {
        var settings = try Self.settings(context.parameters)
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
        var metadata: [String: String] = [
            "kind": ChatModelStore.fineTunedKind, "base": ChatModelStore.baseName,
            "base_file": (basePath as NSString).lastPathComponent,
            "dataset": "\(dataset.name)@\(dataset.version)", "job": context.id, "steps": String(steps),
            "examples": String(examples.sequences.count), "final_loss": String(lastLoss),
        ]
        let directory: String
        switch training.method {
        case .lora(let lora):
            metadata["method"] = "lora"
            metadata["rank"] = String(lora.rank)
            metadata["targets"] = lora.targets.map(\.shortName).joined(separator: ",")
            guard let adapters = tuner.adapters else { throw JobError.invalidParameter("finetune: no adapters were trained") }
            directory = try artifacts.addVersion(of: settings.output, metadata: metadata) { folder in
                try adapters.savePeft(directory: folder, baseModelNameOrPath: "HuggingFaceTB/SmolLM2-135M-Instruct")
            }
        case .full:
            metadata["method"] = "full"
            directory = try artifacts.addVersion(of: settings.output, metadata: metadata) { folder in
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
