import CURecJobs
import CURecModels
import CURecPipeline
import Foundation

/// Job kind `pretrain`: CURec stages 1 and 2. Builds the instruction + reasoning corpus from
/// the training split, trains a BPE vocabulary and the built-in GPT on it, reports held-out
/// perplexity, and saves the language model as `models/<name>/vN` (GPT-2 format checkpoint +
/// tokenizer.json), which GenerationService serves.
///
/// Parameters (all optional): ``Parameters``. Resumable from its checkpoints.
struct PretrainJob: JobKind {
    let data: ServingData?
    let artifacts: ArtifactStore

    /// The parameters of `pretrain`; the defaults are `PretrainingConfig`'s.
    enum Parameters {
        static let defaults = PretrainingConfig()
        static let name: JobParameter<String> = .text(
            "name", default: PairReasons.builtInModelName, rule: .plainName, doc: "the model name: the result is `models/<name>/vN`")
        static let steps: JobParameter<Int?> = .optionalInteger(
            "steps", in: 1...1_000_000, defaultText: String(defaults.steps),
            doc: "training steps (warm-up shortened to a tenth of them when given)")
        static let layers: JobParameter<Int> = .integer("layers", default: defaults.layers, in: 1...24, doc: "transformer blocks")
        static let heads: JobParameter<Int> = .integer("heads", default: defaults.heads, in: 1...32, doc: "attention heads; must divide `width`")
        static let width: JobParameter<Int> = .integer("width", default: defaults.width, in: 8...2048, doc: "embedding width")
        static let context: JobParameter<Int> = .integer("context", default: defaults.context, in: 16...2048, doc: "context length, tokens")
        static let vocabulary: JobParameter<Int> = .integer(
            "vocabulary", default: defaults.vocabularySize, in: 300...65536, doc: "BPE vocabulary size")
        static let batch: JobParameter<Int> = .integer("batch", default: defaults.batch, in: 1...256, doc: "sequences per step")
        static let seed: JobParameter<Int> = .integer("seed", default: Int(defaults.seed), in: 0...Int.max, doc: "random seed")
        static let schema = JobParameterSchema(
            kind: "pretrain", [name, steps, layers, heads, width, context, vocabulary, batch, seed])
    }

    var name: String { "pretrain" }
    var parameters: JobParameterSchema { Parameters.schema }

    func validate(_ values: JobParameterValues) throws(JobError) {
        _ = try Self.configuration(values)
        guard data != nil else { throw .invalidParameter("pretrain: the daemon has no dataset loaded") }
    }

    static func configuration(_ values: JobParameterValues) throws(JobError) -> PretrainingConfig {
        var config = PretrainingConfig()
        if let steps = values[Parameters.steps] {
            config.steps = steps
            config.warmupSteps = min(config.warmupSteps, max(1, steps / 10))
        }
        config.layers = values[Parameters.layers]
        config.heads = values[Parameters.heads]
        config.width = values[Parameters.width]
        config.context = values[Parameters.context]
        config.vocabularySize = values[Parameters.vocabulary]
        config.batch = values[Parameters.batch]
        config.seed = UInt64(values[Parameters.seed])
        guard config.width % config.heads == 0 else {
            throw .invalidParameter("pretrain: width \(config.width) must be a multiple of heads \(config.heads)")
        }
        return config
    }

    func run(_ context: JobContext) throws -> JobOutcome {
        guard let data else { throw JobError.invalidParameter("no dataset loaded") }
        let config = try Self.configuration(context.values)
        let name = context.values[Parameters.name]
        context.progress(stage: "corpus", step: 0, total: 1)
        let builder = try CorpusBuilder(dataset: data.dataset, split: data.split)
        let examples = builder.build { progress in
            context.progress(stage: "corpus", step: UInt64(progress.completed), total: UInt64(progress.total))
        }
        context.log("corpus: \(examples.count) examples from the training split")
        if context.isCancelled { throw JobCancelled() }
        let result: PretrainingResult
        do {
            result = try AlignmentPretraining.run(
                texts: examples.map(\.text), config: config, checkpointDirectory: context.checkpointDirectory,
                progress: { step, total, metrics in
                    context.progress(stage: "pretrain", step: UInt64(step), total: UInt64(total), metrics: metrics)
                },
                isCancelled: { context.isCancelled })
        } catch {
            if context.isCancelled { throw JobCancelled() }
            throw error
        }
        if result.resumedFromStep > 0 { context.log("resumed from step \(result.resumedFromStep)") }
        context.log(String(format: "held-out perplexity %.2f (loss %.4f), train loss %.4f",
                           result.heldOutPerplexity, result.heldOutLoss, result.trainLoss))
        context.progress(stage: "save", step: 0, total: 1)
        var manifest = ArtifactManifest(kind: .languageModel)
        manifest.dataset = data.dataset.name
        manifest.job = context.id
        manifest.examples = examples.count
        manifest.steps = config.steps
        manifest.heldOutPerplexity = (result.heldOutPerplexity * 10_000).rounded() / 10_000
        manifest.modelConfig = "\(result.model.config)"
        let directory = try artifacts.addVersion(of: name, manifest: manifest) { staging in
            try result.model.save(directory: staging)
            try result.tokenizer.saveTokenizerJSON(path: (staging as NSString).appendingPathComponent("tokenizer.json"))
        }
        let relative = "models/\(name)/\((directory as NSString).lastPathComponent)"
        context.log("saved \(relative)")
        try? FileManager.default.removeItem(atPath: context.checkpointDirectory)
        return JobOutcome(metrics: [
            "held_out_perplexity": result.heldOutPerplexity, "held_out_loss": result.heldOutLoss,
            "train_loss": result.trainLoss, "examples": Double(examples.count),
        ], artifact: relative)
    }
}
