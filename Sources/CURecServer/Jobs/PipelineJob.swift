import CURecJobs
import CURecPipeline
import CURecPluginHost
import Foundation

/// Job kind `pipeline`: the whole CURec method (see `CURecPipeline.PipelineRunner`): corpus,
/// alignment fine-tuning of SmolLM2 (LoRA), collaborative reward model on MiniLM content
/// embeddings, GRPO on the LoRA model, reason tables (base, aligned, GRPO, corrected), SASRec
/// with reason features over several seeds against the ablation variants, and a report.
///
/// Parameters (all optional): `profile` (`standard` or `quick`, default standard), `seeds`
/// (comma-separated), `align_steps`, `grpo_steps`, `candidates`, `run` (a name: the
/// workspace becomes `<data_dir>/pipelines/<run>` and outlives the job) and `stop_after`
/// (a stage: align, content, reward, grpo, reasons, downstream; needs `run`), so stages
/// can be run one job at a time: `pipeline run=exp stop_after=grpo`, then `pipeline run=exp`
/// continues from the reason tables.
///
/// Without `run` the workspace is the job's checkpoint directory. Either way a job
/// interrupted by a crash or a shutdown resumes at its first unfinished stage. On success the outputs become artifacts:
/// `lm-aligned` and `lm-curec` (the aligned and the GRPO-tuned SmolLM2 as LoRA adapters, which
/// `Generate` serves by name), `reasons` (the corrected reason table, with the other tables
/// beside it), `report`
/// (report.md, charts, results.json) and `<served>` (the kept SASRec, saved during the
/// ablation and loaded as the serving instance only after everything else is published).
struct PipelineJob: JobKind {
    let data: ServingData?
    let plugins: PluginHost
    let artifacts: ArtifactStore
    let miniLMDirectory: String
    /// The GGUF file of SmolLM2-135M-Instruct (the daemon's `lm_path`).
    let chatModelPath: String
    let servedName: String
    /// Called after a successful run (the daemon logs sample recommendations with reasons).
    let onFinished: @Sendable () -> Void

    static let rewardLibrary = "CURecCollaborativeReward"
    /// The artifact name of the GRPO-tuned SmolLM2 (LoRA adapters) the job publishes.
    static let tunedChatModel = "lm-curec"
    static let recommenderLibrary = "CURecSASRec"

    var name: String { "pipeline" }
    var parameterSummary: String {
        "profile=standard|quick, seeds=42,1,2,3,4, align_steps, grpo_steps, candidates, run=NAME, stop_after=STAGE (all optional)"
    }

    func validate(_ parameters: [String: String]) throws(JobError) {
        let known: Set = ["profile", "seeds", "align_steps", "grpo_steps", "candidates", "run", "stop_after"]
        if let unknown = parameters.keys.first(where: { !known.contains($0) }) {
            throw .invalidParameter("pipeline: unknown parameter '\(unknown)'; expected \(parameterSummary)")
        }
        _ = try Self.configuration(parameters)
        _ = try Self.lastStage(parameters)
        if let run = parameters["run"], run.isEmpty || run.contains("/") || run.hasPrefix(".") {
            throw .invalidParameter("pipeline: parameter 'run' must be a plain name (no '/', not starting with '.')")
        }
        guard data != nil else { throw .invalidParameter("pipeline: the daemon has no dataset loaded (run scripts/fetch-data and restart)") }
        guard FileManager.default.fileExists(atPath: chatModelPath) else {
            throw .invalidParameter("pipeline: the SmolLM2 model file is missing (run scripts/fetch-lm, or set lm_path)")
        }
        guard FileManager.default.fileExists(atPath: (miniLMDirectory as NSString).appendingPathComponent("model.safetensors")) else {
            throw .invalidParameter("pipeline: the MiniLM sentence encoder is missing from \(miniLMDirectory) (run scripts/fetch-minilm, or set minilm_dir)")
        }
        for library in [Self.rewardLibrary, Self.recommenderLibrary] {
            do {
                _ = try plugins.resolve(library: library)
            } catch {
                throw .invalidParameter("pipeline: \(error)")
            }
        }
    }

    /// The stage a parameter set stops after (`report`: run everything).
    static func lastStage(_ parameters: [String: String]) throws(JobError) -> PipelineStage {
        guard let text = parameters["stop_after"] else { return .report }
        guard let stage = PipelineStage(rawValue: text), stage != .report else {
            let names = PipelineStage.allCases.filter { $0 != .report }.map(\.rawValue).joined(separator: ", ")
            throw .invalidParameter("pipeline: parameter 'stop_after' must be one of \(names), not '\(text)'")
        }
        guard parameters["run"] != nil else {
            throw .invalidParameter("pipeline: 'stop_after' needs 'run=NAME', so that a later pipeline job with the same run continues it")
        }
        return stage
    }

    /// The pipeline configuration a parameter set asks for.
    static func configuration(_ parameters: [String: String]) throws(JobError) -> PipelineConfig {
        var config: PipelineConfig
        switch parameters["profile"] ?? "standard" {
        case "standard", "": config = .standard
        case "quick": config = .quick
        case let other: throw .invalidParameter("pipeline: parameter 'profile' must be standard or quick, not '\(other)'")
        }
        func integer(_ key: String, _ range: ClosedRange<Int>) throws(JobError) -> Int? {
            try JobParameters.integer(parameters, key, in: range, kind: "pipeline")
        }
        if let steps = try integer("align_steps", 1...1_000_000) {
            config.alignment.steps = steps
            config.alignment.warmupSteps = min(config.alignment.warmupSteps, max(1, steps / 10))
            config.pretraining.steps = steps
            config.pretraining.warmupSteps = min(config.pretraining.warmupSteps, max(1, steps / 10))
        }
        if let steps = try integer("grpo_steps", 1...100_000) { config.grpo.steps = steps }
        if let candidates = try integer("candidates", 1...64) { config.correction.candidates = candidates }
        if let text = parameters["seeds"] {
            var seeds: [UInt64] = []
            for part in text.split(separator: ",") {
                guard let seed = UInt64(part.trimmingCharacters(in: .whitespaces)) else {
                    throw .invalidParameter("pipeline: parameter 'seeds' must be comma-separated non-negative integers, not '\(text)'")
                }
                seeds.append(seed)
            }
            config.seeds = seeds
        }
        do {
            try config.validate()
        } catch {
            throw .invalidParameter("pipeline: \(error)")
        }
        return config
    }

    func run(_ context: JobContext) throws -> JobOutcome {
        guard let data else { throw JobError.invalidParameter("no dataset loaded") }
        let config = try Self.configuration(context.parameters)
        let last = try Self.lastStage(context.parameters)
        let workspace = context.parameters["run"].map { (artifacts.root as NSString).appendingPathComponent("pipelines/\($0)") }
            ?? context.checkpointDirectory
        let environment = PluginPipelineEnvironment(
            data: data, plugins: plugins, artifacts: artifacts, miniLMDirectory: miniLMDirectory, chatModelPath: chatModelPath,
            rewardLibrary: Self.rewardLibrary, recommenderLibrary: Self.recommenderLibrary,
            servedName: servedName, jobID: context.id, log: { context.log($0) })
        let runner = PipelineRunner(
            environment: environment, config: config, workspace: workspace,
            log: { context.log($0) },
            progress: { stage, step, total, metrics in
                context.progress(stage: stage, step: UInt64(max(step, 0)), total: UInt64(max(total, 0)), metrics: metrics)
            },
            isCancelled: { context.isCancelled })
        let outcome: PipelineOutcome
        do {
            outcome = try runner.run(through: last)
        } catch {
            if context.isCancelled { throw JobCancelled() }
            throw error
        }
        if outcome.completedThrough != .report {
            var metrics: [String: Double] = [:]
            for stage in outcome.stages { metrics["seconds.\(stage.name)"] = stage.seconds }
            context.log("stopped after \(last.rawValue); submit `pipeline run=\(context.parameters["run"] ?? "")` to continue")
            return JobOutcome(metrics: metrics)
        }

        context.progress(stage: "save", step: 0, total: 1)
        let base: [String: String] = ["dataset": data.dataset.name, "job": context.id, "profile": config.profile]
        let reasons = try artifacts.addVersion(of: "reasons", metadata: base.merging(["kind": "reason-table"]) { $1 }) { staging in
            if let served = outcome.reasonTableDirectories[ReasonTableKind.served.key] { try copyContents(of: served, into: staging) }
            for kind in ReasonTableKind.all where kind != ReasonTableKind.served {
                guard let directory = outcome.reasonTableDirectories[kind.key] else { continue }
                try FileManager.default.copyItem(atPath: directory, toPath: (staging as NSString).appendingPathComponent(kind.key))
            }
        }
        let report = try publish("report", from: outcome.reportDirectory, metadata: base.merging(["kind": "report"]) { $1 })
        let reportRelative = "models/report/\((report as NSString).lastPathComponent)"
        context.log("saved models/reasons/\((reasons as NSString).lastPathComponent) and \(reportRelative)")
        switch outcome.languageModel {
        case .chat:
            // Chat-model fine-tunings that `Generate` serves by name (LoRA adapters over lm_path).
            try publish("lm-aligned", from: outcome.alignedModelDirectory,
                        metadata: base.merging(["kind": ChatModelStore.fineTunedKind, "stage": "align",
                                                "method": config.alignment.method.rawValue]) { $1 })
            if config.alignment.method == .lora {
                try publish(Self.tunedChatModel, from: outcome.tunedModelDirectory,
                            metadata: base.merging(["kind": ChatModelStore.fineTunedKind, "stage": "grpo", "method": "lora"]) { $1 })
            } else {
                context.log("the GRPO adapters sit on fully fine-tuned weights; they stay in the workspace and are not published")
            }
        case .gpt:
            try publish("lm-pretrain", from: outcome.alignedModelDirectory, metadata: base.merging(["kind": "language-model", "stage": "align"]) { $1 })
            try publish("lm", from: outcome.tunedModelDirectory, metadata: base.merging(["kind": "language-model", "stage": "grpo"]) { $1 })
        }
        // Last, so reasons, report and the LM are in place when the reason-aware recommender serves.
        if let served = try ReasonAwareRecommender.serveLatest(name: servedName, plugins: plugins, artifacts: artifacts) {
            context.log("now serving '\(servedName)' (SASRec with CURec reason features) from \(served)")
        }

        var metrics: [String: Double] = [:]
        for variant in DownstreamVariant.all {
            let runs = outcome.downstream.filter { $0.variant == variant.key }
            guard !runs.isEmpty else { continue }
            for metric in ["ndcg@10", "recall@10"] {
                metrics["\(variant.key).\(metric)"] = runs.reduce(0) { $0 + ($1.test[metric] ?? 0) } / Double(runs.count)
            }
        }
        for stage in outcome.stages { metrics["seconds.\(stage.name)"] = stage.seconds }
        // A named run's workspace is kept (the user may inspect or extend it); the job's own is not.
        if context.parameters["run"] == nil { try? FileManager.default.removeItem(atPath: workspace) }
        onFinished()
        return JobOutcome(metrics: metrics, artifact: reportRelative)
    }

    @discardableResult
    private func publish(_ name: String, from directory: String, metadata: [String: String]) throws -> String {
        try artifacts.addVersion(of: name, metadata: metadata) { staging in try copyContents(of: directory, into: staging) }
    }

    private func copyContents(of source: String, into destination: String) throws {
        for entry in try FileManager.default.contentsOfDirectory(atPath: source) {
            try FileManager.default.copyItem(atPath: (source as NSString).appendingPathComponent(entry),
                                             toPath: (destination as NSString).appendingPathComponent(entry))
        }
    }
}
