import CURecJobs
import CURecModels
import CURecPipeline
import Foundation

/// Job kind `pretrain`: CURec stages 1 and 2. Builds the instruction + reasoning corpus from
/// the training split, trains a BPE vocabulary and the built-in GPT on it, reports held-out
/// perplexity, and saves the language model as `models/<name>/vN` (GPT-2 format checkpoint +
/// tokenizer.json), which GenerationService serves.
///
/// Parameters (all optional): `name` (default `lm`), `steps`, `layers`, `heads`, `width`,
/// `context`, `vocabulary`, `batch`, `seed`. Resumable from its checkpoints.
struct PretrainJob: JobKind {
    let data: ServingData?
    let artifacts: ArtifactStore

    var name: String { "pretrain" }
    var parameterSummary: String { "name, steps, layers, heads, width, context, vocabulary, batch, seed (all optional)" }

    static let integerKeys = ["steps", "layers", "heads", "width", "context", "vocabulary", "batch", "seed"]

    func validate(_ parameters: [String: String]) throws(JobError) {
        for key in parameters.keys where key != "name" && !Self.integerKeys.contains(key) {
            throw .invalidParameter("pretrain: unknown parameter '\(key)'; expected \(parameterSummary)")
        }
        _ = try Self.configuration(parameters)
        if let name = parameters["name"], name.isEmpty || name.contains("/") || name.hasPrefix(".") {
            throw .invalidParameter("pretrain: parameter 'name' must be a plain name (no '/', not starting with '.')")
        }
        guard data != nil else { throw .invalidParameter("pretrain: the daemon has no dataset loaded") }
    }

    static func configuration(_ parameters: [String: String]) throws(JobError) -> PretrainingConfig {
        var config = PretrainingConfig()
        func integer(_ key: String, _ range: ClosedRange<Int>) throws(JobError) -> Int? {
            try JobParameters.integer(parameters, key, in: range, kind: "pretrain")
        }
        if let value = try integer("steps", 1...1_000_000) { config.steps = value; config.warmupSteps = min(config.warmupSteps, max(1, value / 10)) }
        if let value = try integer("layers", 1...24) { config.layers = value }
        if let value = try integer("heads", 1...32) { config.heads = value }
        if let value = try integer("width", 8...2048) { config.width = value }
        if let value = try integer("context", 16...2048) { config.context = value }
        if let value = try integer("vocabulary", 300...65536) { config.vocabularySize = value }
        if let value = try integer("batch", 1...256) { config.batch = value }
        if let value = try integer("seed", 0...Int.max) { config.seed = UInt64(value) }
        guard config.width % config.heads == 0 else {
            throw .invalidParameter("pretrain: width \(config.width) must be a multiple of heads \(config.heads)")
        }
        return config
    }

    func run(_ context: JobContext) throws -> JobOutcome {
        guard let data else { throw JobError.invalidParameter("no dataset loaded") }
        let config = try Self.configuration(context.parameters)
        let name = context.parameters["name"].flatMap { $0.isEmpty ? nil : $0 } ?? "lm"
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
        let directory = try artifacts.addVersion(of: name, metadata: [
            "kind": "language-model", "dataset": data.dataset.name, "job": context.id,
            "examples": String(examples.count), "steps": String(config.steps),
            "held_out_perplexity": String(format: "%.4f", result.heldOutPerplexity),
            "config": "\(result.model.config)",
        ]) { staging in
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
