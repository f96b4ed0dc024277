import CURecJobs
import CURecPipeline
import CURecPluginHost
import Foundation

/// Job kind `pipeline`: the whole CURec method (see `CURecPipeline.PipelineRunner`): corpus,
/// alignment fine-tuning of SmolLM2 (LoRA), collaborative reward model on MiniLM content
/// embeddings, GRPO on the LoRA model, reason tables (base, aligned, GRPO, corrected), SASRec
/// with reason features over several seeds against the ablation variants, and a report.
///
/// Parameters (all optional): ``Parameters``. With `run` (a name) the workspace becomes
/// `<data_dir>/pipelines/<run>` and outlives the job, and with `stop_after` stages
/// can be run one job at a time: `pipeline run=exp stop_after=grpo`, then `pipeline run=exp`
/// continues from the reason tables.
///
/// Without `run` the workspace is the job's checkpoint directory. Either way a job
/// interrupted by a crash or a shutdown resumes at its first unfinished stage. On success the outputs become artifacts:
/// `lm-aligned` and `curec-reasons` (the aligned and the GRPO-tuned SmolLM2 as LoRA adapters, which
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
    static let tunedChatModel = PairReasons.tunedModelName
    static let recommenderLibrary = "CURecSASRec"

    /// The parameters of `pipeline`; the defaults are the profile's (`PipelineConfig`).
    enum Parameters {
        static let standard = PipelineConfig.standard
        static let quick = PipelineConfig.quick
        static let stages = PipelineStage.allCases.filter { $0 != .report }.map(\.rawValue)

        static let profile: JobParameter<String> = .choice(
            "profile", [standard.profile, quick.profile], default: standard.profile,
            doc: "the configuration: `quick` runs every stage in minutes")
        static let seeds: JobParameter<[Int]?> = .optionalIntegers(
            "seeds", in: 0...Int.max, defaultText: "`\(list(standard.seeds))` (standard), `\(list(quick.seeds))` (quick)",
            doc: "seeds of each downstream variant")
        static let alignSteps: JobParameter<Int?> = .optionalInteger(
            "align_steps", in: 1...1_000_000,
            defaultText: "\(standard.alignment.steps) (standard), \(quick.alignment.steps) (quick)", doc: "alignment fine-tuning steps")
        static let grpoSteps: JobParameter<Int?> = .optionalInteger(
            "grpo_steps", in: 1...100_000, defaultText: "\(standard.grpo.steps) (standard), \(quick.grpo.steps) (quick)", doc: "GRPO steps")
        static let candidates: JobParameter<Int?> = .optionalInteger(
            "candidates", in: 1...64,
            defaultText: "\(standard.correction.candidates) (standard), \(quick.correction.candidates) (quick)",
            doc: "reasons sampled per subject for correction")
        static let run: JobParameter<String?> = .optionalText(
            "run", rule: .resourceName, defaultText: "none: the job's own workspace",
            doc: "a workspace `<data_dir>/pipelines/<run>` that outlives the job, so later jobs continue it")
        static let stopAfter: JobParameter<String?> = .optionalChoice(
            "stop_after", stages, defaultText: "none: every stage", doc: "end after this stage (needs `run`)")
        static let schema = JobParameterSchema(
            kind: "pipeline", [profile, seeds, alignSteps, grpoSteps, candidates, run, stopAfter])

        static func list(_ seeds: [UInt64]) -> String { seeds.map(String.init).joined(separator: ",") }
    }

    var name: String { "pipeline" }
    var parameters: JobParameterSchema { Parameters.schema }

    func validate(_ values: JobParameterValues) throws(JobError) {
        _ = try Self.configuration(values)
        _ = try Self.lastStage(values)
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
    static func lastStage(_ values: JobParameterValues) throws(JobError) -> PipelineStage {
        guard let text = values[Parameters.stopAfter], let stage = PipelineStage(rawValue: text) else { return .report }
        guard values[Parameters.run] != nil else {
            throw .invalidParameter("pipeline: 'stop_after' needs 'run=NAME', so that a later pipeline job with the same run continues it")
        }
        return stage
    }

    /// The pipeline configuration a parameter set asks for.
    static func configuration(_ values: JobParameterValues) throws(JobError) -> PipelineConfig {
        var config: PipelineConfig = values[Parameters.profile] == Parameters.quick.profile ? .quick : .standard
        if let steps = values[Parameters.alignSteps] {
            config.alignment.steps = steps
            config.alignment.warmupSteps = min(config.alignment.warmupSteps, max(1, steps / 10))
            config.pretraining.steps = steps
            config.pretraining.warmupSteps = min(config.pretraining.warmupSteps, max(1, steps / 10))
        }
        if let steps = values[Parameters.grpoSteps] { config.grpo.steps = steps }
        if let candidates = values[Parameters.candidates] { config.correction.candidates = candidates }
        if let seeds = values[Parameters.seeds] { config.seeds = seeds.map { UInt64($0) } }
        do {
            try config.validate()
        } catch {
            throw .invalidParameter("pipeline: \(error)")
        }
        return config
    }

    func run(_ context: JobContext) throws -> JobOutcome {
        guard let data else { throw JobError.invalidParameter("no dataset loaded") }
        let config = try Self.configuration(context.values)
        let last = try Self.lastStage(context.values)
        let run = context.values[Parameters.run]
        let workspace = run.map { (artifacts.root as NSString).appendingPathComponent("pipelines/\($0)") }
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
            context.log("stopped after \(last.rawValue); submit `pipeline run=\(run ?? "")` to continue")
            return JobOutcome(metrics: metrics)
        }

        context.progress(stage: "save", step: 0, total: 1)
        func manifest(_ kind: ArtifactKind, stage: String? = nil) -> ArtifactManifest {
            var manifest = ArtifactManifest(kind: kind)
            manifest.dataset = data.dataset.name
            manifest.job = context.id
            manifest.profile = config.profile
            manifest.stage = stage
            return manifest
        }
        func chatManifest(stage: String, method: ArtifactManifest.FineTuningMethod) -> ArtifactManifest {
            var chat = manifest(.chatModel, stage: stage)
            chat.base = ChatModelStore.baseName
            chat.baseFile = (chatModelPath as NSString).lastPathComponent
            chat.method = method
            return chat
        }
        let reasons = try artifacts.addVersion(of: PublishedName.reasonTable.rawValue, manifest: manifest(.reasonTable)) { staging in
            if let served = outcome.reasonTableDirectories[ReasonTableKind.served.key] { try copyContents(of: served, into: staging) }
            for kind in ReasonTableKind.all where kind != ReasonTableKind.served {
                guard let directory = outcome.reasonTableDirectories[kind.key] else { continue }
                try FileManager.default.copyItem(atPath: directory, toPath: (staging as NSString).appendingPathComponent(kind.key))
            }
        }
        let report = try publish(PublishedName.report.rawValue, from: outcome.reportDirectory, manifest: manifest(.report))
        let reportRelative = "models/report/\((report as NSString).lastPathComponent)"
        context.log("saved models/reasons/\((reasons as NSString).lastPathComponent) and \(reportRelative)")
        switch outcome.languageModel {
        case .chat:
            // Chat-model fine-tunings that `Generate` serves by name (LoRA adapters over lm_path);
            // pair reasons use the newest `tunedChatModel`.
            try publish(PublishedName.alignedChatModel.rawValue, from: outcome.alignedModelDirectory,
                        manifest: chatManifest(stage: "align", method: config.alignment.method == .lora ? .lora : .full))
            if config.alignment.method == .lora {
                try publish(Self.tunedChatModel, from: outcome.tunedModelDirectory, manifest: chatManifest(stage: "grpo", method: .lora))
            } else {
                context.log("the GRPO adapters sit on fully fine-tuned weights; they stay in the workspace and are not published")
            }
        case .gpt:
            try publish(PublishedName.pretrainedLanguageModel.rawValue, from: outcome.alignedModelDirectory, manifest: manifest(.languageModel, stage: "align"))
            try publish(PublishedName.languageModel.rawValue, from: outcome.tunedModelDirectory, manifest: manifest(.languageModel, stage: "grpo"))
        }
        // Last, so reasons, report and the LM are in place when the reason-aware recommender serves.
        if let served = try ReasonAwareRecommender.serveLatest(name: servedName, plugins: plugins, artifacts: artifacts) {
            context.log("now serving '\(servedName)' (SASRec with CURec reason features) from \(served)")
            // Every daemon following the model registry serves it from now on.
            try artifacts.markServed(servedName, version: (served as NSString).lastPathComponent)
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
        if run == nil { try? FileManager.default.removeItem(atPath: workspace) }
        onFinished()
        return JobOutcome(metrics: metrics, artifact: reportRelative)
    }

    @discardableResult
    private func publish(_ name: String, from directory: String, manifest: ArtifactManifest) throws -> String {
        try artifacts.addVersion(of: name, manifest: manifest) { staging in try copyContents(of: directory, into: staging) }
    }

    private func copyContents(of source: String, into destination: String) throws {
        for entry in try FileManager.default.contentsOfDirectory(atPath: source) {
            try FileManager.default.copyItem(atPath: (source as NSString).appendingPathComponent(entry),
                                             toPath: (destination as NSString).appendingPathComponent(entry))
        }
    }
}
