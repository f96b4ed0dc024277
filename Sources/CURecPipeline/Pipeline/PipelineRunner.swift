import CURecData
import CURecModels
import CURecTensor
import Foundation

/// Timing and numbers of one finished stage, kept in the workspace so a resumed run skips it.
public struct PipelineStageRecord: Sendable, Codable, Equatable {
    public var name: String
    public var seconds: Double
    public var metrics: [String: Double]
    /// Per-step curves (e.g. `loss`, `reward`, `kl`, `length`).
    public var curves: [String: [Double]]
}

/// The test metrics of one downstream run.
public struct DownstreamResult: Sendable, Codable, Equatable {
    public var variant: String
    public var seed: UInt64
    /// Validation NDCG@10 of the returned model (what early stopping selected on).
    public var validationNDCG10: Double
    /// Test metrics: `recall@10`, `recall@20`, `ndcg@10`, `ndcg@20`, `mrr@10`.
    public var test: [String: Double]
    public var seconds: Double
    /// Test NDCG@10 of every test user, users in ascending dataset index (the split's order;
    /// `significance.json` in the report lists their ids). Nil in results written before it
    /// was recorded.
    public var testNDCG10ByUser: [Double]? = nil
    /// The reason features the run used (``ReasonFeatureUse`` raw value); nil for a variant
    /// without reasons.
    public var features: String? = nil
}

/// How a variant's reason features were chosen: every ``ReasonFeatureUse`` trained on the
/// first seed, and the one with the best validation NDCG@10.
public struct FeatureChoice: Sendable, Codable, Equatable {
    public var variant: String
    public var seed: UInt64
    /// Validation NDCG@10 per ``ReasonFeatureUse`` raw value.
    public var validationNDCG10: [String: Double]
    public var chosen: String
}

/// Where a pipeline left its outputs (all inside the workspace).
public struct PipelineOutcome: Sendable {
    /// The last stage run; the outputs of later stages are empty.
    public var completedThrough: PipelineStage
    public var workspace: String
    /// The language model in use.
    public var languageModel: PipelineLanguageModel
    /// The aligned LM: the built-in GPT (model files and tokenizer.json), or the chat model's
    /// fine-tuning (PEFT LoRA adapters, or full float32 weights; `metadata.json` names the
    /// method).
    public var alignedModelDirectory: String
    /// The GRPO-tuned LM, in the same formats (the chat model's GRPO trains LoRA adapters).
    public var tunedModelDirectory: String
    /// Reason tables per ``ReasonTableKind`` key.
    public var reasonTableDirectories: [String: String]
    /// The report (report.md, charts, results.json).
    public var reportDirectory: String
    public var stages: [PipelineStageRecord]
    public var downstream: [DownstreamResult]
}

/// Runs the CURec stages in order inside a workspace directory: corpus, alignment
/// pretraining, reward model, GRPO, reason tables (greedy and corrected), downstream SASRec
/// variants over several seeds, report. Each finished stage is recorded in
/// `stages.json`; a run restarted on the same workspace (e.g. after a crash) skips recorded
/// stages and resumes pretraining from its checkpoints and the downstream ablation from its
/// finished runs.
public final class PipelineRunner: @unchecked Sendable {
    public let environment: any PipelineEnvironment
    public let config: PipelineConfig
    public let workspace: String
    let log: (String) -> Void
    let progress: (_ stage: String, _ step: Int, _ total: Int, _ metrics: [String: Double]) -> Void
    let isCancelled: () -> Bool

    private var records: [PipelineStageRecord] = []
    private lazy var statistics = CollaborativeStatistics(dataset: environment.dataset, split: environment.split)

    public init(environment: any PipelineEnvironment, config: PipelineConfig, workspace: String,
                log: @escaping (String) -> Void = { _ in },
                progress: @escaping (_ stage: String, _ step: Int, _ total: Int, _ metrics: [String: Double]) -> Void = { _, _, _, _ in },
                isCancelled: @escaping () -> Bool = { false }) {
        self.environment = environment
        self.config = config
        self.workspace = workspace
        self.log = log
        self.progress = progress
        self.isCancelled = isCancelled
    }

    private func path(_ component: String) -> String { (workspace as NSString).appendingPathComponent(component) }

    // MARK: - Stage bookkeeping

    private func loadRecords() {
        guard let data = FileManager.default.contents(atPath: path("stages.json")),
              let saved = try? JSONDecoder().decode([PipelineStageRecord].self, from: data) else { return }
        records = saved
    }

    private func record(_ record: PipelineStageRecord) throws {
        records.removeAll { $0.name == record.name }
        records.append(record)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(records).write(to: URL(fileURLWithPath: path("stages.json")), options: .atomic)
    }

    private func finished(_ name: String) -> PipelineStageRecord? { records.first { $0.name == name } }

    /// What a workspace was started with: its config and dataset. A later run on the same
    /// workspace must match, or stages trained under one config would mix with another's.
    struct Manifest: Codable, Equatable {
        var config: PipelineConfig
        var dataset: String
        var users: Int
        var items: Int
    }

    private func checkManifest() throws {
        let dataset = environment.dataset
        let mine = Manifest(config: config, dataset: dataset.name, users: dataset.userCount, items: dataset.itemCount)
        let file = URL(fileURLWithPath: path("manifest.json"))
        if let data = try? Data(contentsOf: file) {
            guard let saved = try? JSONDecoder().decode(Manifest.self, from: data) else {
                throw PipelineError.invalidConfig("\(file.path) is unreadable; use a new workspace")
            }
            guard saved == mine else {
                throw PipelineError.invalidConfig(
                    "the workspace \(workspace) was started with profile '\(saved.config.profile)' on \(saved.dataset) "
                    + "(\(saved.users) users, \(saved.items) items) and other settings; continue it with the same profile and "
                    + "parameters, or use a new run name")
            }
            return
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(mine).write(to: file, options: .atomic)
    }

    private func checkCancelled() throws {
        if isCancelled() { throw PipelineError.cancelled }
    }

    // MARK: - Shared inputs (built on first use, so a resumed run builds only what it needs)

    private var cachedBuilder: CorpusBuilder?
    private var cachedEmbedder: (any ReasonEmbedder)?
    private var cachedContent: [Float]?
    private var cachedRewarder: ReasonRewarder?
    private var cachedModels: [ReasonTableKind.Writer: any ReasonLanguageModel] = [:]
    private var baseBackbone: LlamaBackbone?
    private var alignedBackbone: LlamaBackbone?

    private var contentPath: String { path("content/item_embeddings.f32") }
    private func modelDirectory(_ writer: ReasonTableKind.Writer) -> String {
        switch writer {
        case .base: return path("lm-base")
        case .aligned: return path("lm-aligned")
        case .tuned: return path("lm-rl")
        }
    }

    private func builder() throws -> CorpusBuilder {
        if let cachedBuilder { return cachedBuilder }
        var corpusConfiguration = CorpusConfiguration()
        corpusConfiguration.historyShown = config.historyShown
        let made = try CorpusBuilder(dataset: environment.dataset, split: environment.split, configuration: corpusConfiguration)
        cachedBuilder = made
        return made
    }

    private func embedder() throws -> any ReasonEmbedder {
        if let cachedEmbedder { return cachedEmbedder }
        let made = try environment.makeEmbedder()
        cachedEmbedder = made
        return made
    }

    private func content() throws -> [Float] {
        if let cachedContent { return cachedContent }
        let read = try ReasonTable.floats(contentPath)
        cachedContent = read
        return read
    }

    /// The reward of a reason. The collaborative model lives in memory only, so a resumed run
    /// trains it again (it is fast) the first time a stage needs it.
    private func rewarder() throws -> ReasonRewarder {
        if let cachedRewarder { return cachedRewarder }
        let embedder = try embedder()
        let content = try content()
        progress(PipelineStage.reward.rawValue, 0, 1, [:])
        let scorer = try environment.trainRewardModel(
            itemFeatures: content, dimension: embedder.dimension, config: config.rewardModelConfig,
            progress: { step, total in self.progress(PipelineStage.reward.rawValue, step, total, [:]) },
            isCancelled: isCancelled)
        let made = try ReasonRewarder(statistics: try builder().statistics, verifier: ReasonVerifier(dataset: environment.dataset),
                                      embedder: embedder, scorer: scorer, config: config.reward)
            .calibrated(itemFeatures: content, dimension: embedder.dimension)
        cachedRewarder = made
        return made
    }

    /// The chat model as the GGUF file holds it (float32 to train; 4-bit to decode when
    /// ``PipelineConfig/decodeQuantized``).
    private func chatBackbone() throws -> LlamaBackbone {
        if let baseBackbone { return baseBackbone }
        let loaded = try environment.loadChatModel(weights: .float32)
        let decoder = config.decodeQuantized ? try environment.loadChatModel(weights: .quantized).model : nil
        let made = LlamaBackbone(trainable: loaded.model, decoder: decoder, tokenizer: loaded.tokenizer)
        baseBackbone = made
        return made
    }

    /// The backbone of the aligned model: the same as the base with LoRA alignment; after full
    /// fine-tuning, a float32 copy with the aligned weights (it decodes in float32).
    private func alignedChatBackbone() throws -> LlamaBackbone {
        if config.alignment.method == .lora { return try chatBackbone() }
        if let alignedBackbone { return alignedBackbone }
        let model = try environment.loadChatModel(weights: .float32).model
        try LlamaWeightsFile.load(path: (modelDirectory(.aligned) as NSString).appendingPathComponent(LlamaWeightsFile.fileName),
                                  into: model)
        let made = LlamaBackbone(trainable: model, tokenizer: try chatBackbone().tokenizer)
        alignedBackbone = made
        return made
    }

    /// The model that writes a table (loaded from the workspace on first use).
    private func languageModel(_ writer: ReasonTableKind.Writer) throws -> any ReasonLanguageModel {
        if let cached = cachedModels[writer] { return cached }
        let loaded: any ReasonLanguageModel
        switch (config.languageModel, writer) {
        case (.gpt, .base):
            // The built-in GPT's untrained initialisation, with the corpus tokenizer.
            let aligned = try loadLanguageModel(modelDirectory(.aligned))
            loaded = GPTReasonModel(model: try GPTModel(config: aligned.model.config, seed: config.pretraining.seed),
                                    tokenizer: aligned.tokenizer)
        case (.gpt, _):
            let model = try loadLanguageModel(modelDirectory(writer))
            loaded = GPTReasonModel(model: model.model, tokenizer: model.tokenizer)
        case (.chat, .base):
            loaded = LlamaReasonModel(backbone: try chatBackbone(), adapters: nil)
        case (.chat, .aligned):
            let backbone = try alignedChatBackbone()
            let adapters = config.alignment.method == .lora
                ? try LlamaLoRA.loadPeft(directory: modelDirectory(.aligned), modelConfig: backbone.trainable.config) : nil
            loaded = LlamaReasonModel(backbone: backbone, adapters: adapters)
        case (.chat, .tuned):
            let backbone = try alignedChatBackbone()
            loaded = LlamaReasonModel(backbone: backbone,
                                      adapters: try LlamaLoRA.loadPeft(directory: modelDirectory(.tuned), modelConfig: backbone.trainable.config))
        }
        cachedModels[writer] = loaded
        return loaded
    }

    /// Users and items that get reasons: the first ``PipelineConfig/reasonUsers`` users and the
    /// ``PipelineConfig/reasonItems`` most watched items in training (all when 0).
    func reasonSubjects() throws -> [ReasonSubject] {
        let dataset = environment.dataset
        let userCount = config.reasonUsers == 0 ? dataset.userCount : min(config.reasonUsers, dataset.userCount)
        var items = Array(0..<dataset.itemCount)
        if config.reasonItems > 0 {
            let audience = try builder().statistics.audienceByItem.map(\.count)
            items.sort { audience[$0] != audience[$1] ? audience[$0] > audience[$1] : $0 < $1 }
            items = Array(items.prefix(config.reasonItems)).sorted()
        }
        return (0..<userCount).map { .user(Int32($0)) } + items.map { .item(Int32($0)) }
    }

    /// The corpus prompt of a subject (user-preference or item-audience task).
    private func prompter() throws -> (ReasonSubject) -> String {
        let builder = try builder()
        return { subject in
            switch subject {
            case .user(let user): return builder.userPrompt(user: user)
            case .item(let item): return builder.itemPrompt(item: item)
            }
        }
    }

    // MARK: - The stage table

    /// The stages, in order. To add one, add a row here (and, if it is a new stop point, a
    /// case of ``PipelineStage``); see docs/pipeline.md.
    var stages: [PipelineStageDefinition] {
        let align = PipelineStage.align.rawValue, content = PipelineStage.content.rawValue
        let reward = PipelineStage.reward.rawValue, grpo = PipelineStage.grpo.rawValue
        var table: [PipelineStageDefinition] = [
            PipelineStageDefinition(.align, scratch: ["align-checkpoints"], run: runAlignment),
            PipelineStageDefinition(.content, run: runContent),
            PipelineStageDefinition(.reward, inputs: [content]) {
                _ = try self.rewarder()
                return PipelineStageOutput(metrics: ["dimension": Double(try self.embedder().dimension)])
            },
            PipelineStageDefinition(.grpo, inputs: [align, content, reward], run: runGRPO),
        ]
        for kind in ReasonTableKind.all {
            var inputs = [content, reward, kind.writer == .tuned ? grpo : align]
            if kind.corrected, let greedy = ReasonTableKind.all.first(where: { $0.writer == kind.writer && !$0.corrected }) {
                inputs.append(greedy.stageName)
            }
            table.append(PipelineStageDefinition(kind.stageName, group: .reasons, inputs: inputs) { try self.runReasons(kind)
            })
        }
        table.append(PipelineStageDefinition(.downstream, inputs: [content] + ReasonTableKind.all.map(\.stageName),
                                             scratch: [], run: runDownstream))
        table.append(PipelineStageDefinition("reason-quality", group: .downstream,
                                             inputs: [align, grpo, PipelineStage.downstream.rawValue], run: runReasonQuality))
        table.append(PipelineStageDefinition(.report, inputs: [PipelineStage.downstream.rawValue], recording: .everyRun) {
            var writer = PipelineReportWriter(config: self.config, dataset: self.environment.dataset, stages: self.records,
                                              downstream: try self.downstreamResults(), tables: self.tableDirectories)
            writer.reasonQuality = self.savedReasonQuality()
            writer.featureChoices = try self.featureChoices()
            try writer.write(to: self.path("report"))
            self.log("report written to \(self.path("report"))")
            return PipelineStageOutput()
        })
        return table
    }

    private var tableDirectories: [String: String] {
        Dictionary(uniqueKeysWithValues: ReasonTableKind.all.map { ($0.key, path($0.directory)) })
    }

    // MARK: - Run

    /// Runs every stage not yet recorded, up to and including `last`, and returns where the
    /// outputs are. A later run on the same workspace continues from there.
    public func run(through last: PipelineStage = .report) throws -> PipelineOutcome {
        try config.validate()
        let table = stages
        if let problem = PipelineStageDefinition.problem(in: table) { throw PipelineError.invalidConfig("stage table: \(problem)") }
        try FileManager.default.createDirectory(atPath: workspace, withIntermediateDirectories: true)
        try checkManifest()
        loadRecords()
        for stage in table where stage.group <= last {
            try run(stage)
        }
        let reachedReasons = last >= .reasons
        let outcome = PipelineOutcome(
            completedThrough: last, workspace: workspace, languageModel: config.languageModel,
            alignedModelDirectory: modelDirectory(.aligned), tunedModelDirectory: modelDirectory(.tuned), reasonTableDirectories: reachedReasons ? tableDirectories : [:],
            reportDirectory: last == .report ? path("report") : "", stages: records,
            downstream: last >= .downstream ? try downstreamResults() : [])
        if last != .report { log("stopped after stage \(last.rawValue); run again on this workspace to continue") }
        return outcome
    }

    /// The bookkeeping of one stage: skip when recorded, check cancellation, time, wrap
    /// errors, record, then drop its scratch directories.
    private func run(_ stage: PipelineStageDefinition) throws {
        if case .once = stage.recording, let done = finished(stage.name) {
            log("stage \(stage.name): already done (\(String(format: "%.1f", done.seconds)) s), skipped")
            for scratch in stage.scratch { try? FileManager.default.removeItem(atPath: path(scratch)) }
            return
        }
        try checkCancelled()
        log("stage \(stage.name): started")
        let start = Date()
        let output: PipelineStageOutput
        do {
            output = try stage.run()
        } catch let error as PipelineError {
            throw error
        } catch {
            if isCancelled() { throw PipelineError.cancelled }
            throw PipelineError.stage(stage.name, "\(error)")
        }
        guard case .once = stage.recording else { return }
        let seconds = Date().timeIntervalSince(start)
        try record(PipelineStageRecord(name: stage.name, seconds: seconds, metrics: output.metrics, curves: output.curves))
        // Only once the stage is recorded: a crash before that resumes from the scratch.
        for scratch in stage.scratch { try? FileManager.default.removeItem(atPath: path(scratch)) }
        log("stage \(stage.name): done in \(String(format: "%.1f", seconds)) s")
    }

    // MARK: - Stages

    /// Stages 1 and 2: the corpus, then alignment of the language model on it.
    private func runAlignment() throws -> PipelineStageOutput {
        progress("corpus", 0, 1, [:])
        let examples = try builder().build { p in self.progress("corpus", p.completed, p.total, [:]) }
        log("corpus: \(examples.count) examples from the training split")
        switch config.languageModel {
        case .gpt: return try runPretraining(examples)
        case .chat: return try runFineTuning(examples)
        }
    }

    /// Stage 2 on the chat model: alignment fine-tuning (LoRA or full), with the held-out
    /// perplexity of the base and the aligned model on the same answers.
    private func runFineTuning(_ examples: [CorpusExample]) throws -> PipelineStageOutput {
        let stage = PipelineStage.align.rawValue
        let backbone = try chatBackbone()
        let result = try AlignmentFineTuning.run(
            examples: examples, backbone: backbone, config: config.alignment, checkpointDirectory: path("align-checkpoints"),
            progress: { step, total, metrics in self.progress(stage, step, total, metrics) }, isCancelled: isCancelled)
        let directory = modelDirectory(.aligned)
        let staging = directory + ".partial"
        try? FileManager.default.removeItem(atPath: staging)
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        if let adapters = result.adapters {
            try adapters.savePeft(directory: staging, baseModelNameOrPath: "HuggingFaceTB/SmolLM2-135M-Instruct")
        } else {
            try LlamaWeightsFile.save(backbone.trainable, path: (staging as NSString).appendingPathComponent(LlamaWeightsFile.fileName))
            // The base model's float32 weights changed; reload them for the base model's reasons.
            baseBackbone = nil
        }
        try JSONSerialization.data(withJSONObject: ["method": config.alignment.method.rawValue, "stage": "align"])
            .write(to: URL(fileURLWithPath: (staging as NSString).appendingPathComponent("metadata.json")))
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.moveItem(atPath: staging, toPath: directory)
        cachedModels = [:]
        log(String(format: "align: held-out perplexity of the answers %.2f (base) -> %.2f (aligned) on %d examples, %d tokens",
                   result.baseHeldOutPerplexity, result.alignedHeldOutPerplexity, result.heldOutExamples, result.heldOutTokens))
        return PipelineStageOutput(
            metrics: ["examples": Double(examples.count), "train_examples": Double(result.trainExamples),
                      "held_out_examples": Double(result.heldOutExamples), "held_out_tokens": Double(result.heldOutTokens),
                      "base_held_out_perplexity": result.baseHeldOutPerplexity,
                      "resumed_from_step": Double(result.resumedFromStep),
                      "held_out_perplexity": result.alignedHeldOutPerplexity,
                      "train_loss": result.losses.suffix(10).reduce(0, +) / Double(max(1, min(10, result.losses.count)))],
            curves: ["loss": result.losses])
    }

    /// Stage 2 on the built-in GPT: BPE vocabulary and pretraining from scratch.
    private func runPretraining(_ examples: [CorpusExample]) throws -> PipelineStageOutput {
        let stage = PipelineStage.align.rawValue
        var losses: [Double] = []
        let result = try AlignmentPretraining.run(
            texts: examples.map(\.text), config: config.pretraining, checkpointDirectory: path("align-checkpoints"),
            progress: { step, total, metrics in
                if let loss = metrics["loss"] { losses.append(loss) }
                self.progress(stage, step, total, metrics)
            },
            isCancelled: isCancelled)
        try saveLanguageModel(result.model, result.tokenizer, to: modelDirectory(.aligned))
        cachedModels = [:]
        log(String(format: "align: held-out perplexity %.2f", result.heldOutPerplexity))
        return PipelineStageOutput(
            metrics: ["examples": Double(examples.count), "held_out_perplexity": result.heldOutPerplexity,
                      "held_out_loss": result.heldOutLoss, "train_loss": result.trainLoss],
            curves: ["loss": losses])
    }

    /// Content embeddings (raw-content baseline and the reward model's item features).
    private func runContent() throws -> PipelineStageOutput {
        let stage = PipelineStage.content.rawValue
        let builder = try builder(), embedder = try embedder()
        let texts = (0..<environment.dataset.itemCount).map { builder.contentText(item: Int32($0)) }
        var values: [Float] = []
        for start in stride(from: 0, to: texts.count, by: 256) {
            try checkCancelled()
            for row in try embedder.embed(Array(texts[start..<min(texts.count, start + 256)])) { values += row }
            progress(stage, min(texts.count, start + 256), texts.count, [:])
        }
        try FileManager.default.createDirectory(atPath: path("content"), withIntermediateDirectories: true)
        try ReasonTable.bytes(values).write(to: URL(fileURLWithPath: contentPath), options: .atomic)
        cachedContent = values
        return PipelineStageOutput(metrics: ["items": Double(texts.count), "dimension": Double(embedder.dimension)])
    }

    /// Stage 4: GRPO against the frozen aligned model (on the chat model: a copy of the
    /// aligned adapters, or fresh adapters after full fine-tuning, is trained).
    private func runGRPO() throws -> PipelineStageOutput {
        let stage = PipelineStage.grpo.rawValue
        let reference = try languageModel(.aligned)
        let rewarder = try rewarder()
        let policy: any ReasonLanguageModel
        switch reference {
        case let gpt as GPTReasonModel: policy = gpt.frozenCopy()
        case let chat as LlamaReasonModel: policy = try chat.trainableCopy(config: config.alignment.lora, seed: config.grpo.seed)
        default: throw PipelineError.invalidConfig("GRPO does not know how to copy \(type(of: reference))")
        }
        let writer = try ReasonWriter(languageModel: policy, maxTokens: config.answerTokens, batchSize: config.generationBatch)
        let subjects = grpoSubjects()
        let prompt = try prompter()
        let prompts = subjects.map { writer.promptTokens(prompt($0)) }
        var curves: [String: [Double]] = ["reward": [], "kl": [], "length": [], "loss": []]
        var grpoConfig = config.grpo
        grpoConfig.maxTokens = config.answerTokens
        let result = try GRPO.run(
            policy: policy, reference: reference, prompts: prompts, stopSequences: writer.stopSequences,
            config: grpoConfig,
            reward: { samples in
                let reasons = samples.map { sample in
                    (subject: subjects[sample.promptIndex], text: Optional(writer.written(sample.completion).reason))
                }
                return try rewarder.score(reasons).map { Float($0.total) }
            },
            progress: { step in
                curves["reward", default: []].append(step.meanReward)
                curves["kl", default: []].append(step.kl)
                curves["length", default: []].append(step.meanLength)
                curves["loss", default: []].append(step.loss)
                self.log(String(format: "grpo step %d: reward %.3f, KL %.4f, length %.1f tokens",
                                step.step, step.meanReward, step.kl, step.meanLength))
                self.progress(stage, step.step, self.config.grpo.steps,
                              ["reward": step.meanReward, "kl": step.kl, "length": step.meanLength])
            },
            isCancelled: isCancelled)
        try saveTuned(policy)
        cachedModels[.tuned] = nil
        let first = curves["reward"]?.first ?? 0, last = curves["reward"]?.last ?? 0
        log(String(format: "grpo: mean reward %.3f -> %.3f over %d steps", first, last, result.logs.count))
        return PipelineStageOutput(metrics: ["first_reward": first, "last_reward": last, "steps": Double(result.logs.count),
                                             "prompts": Double(prompts.count),
                                             "mean_kl": (curves["kl"] ?? []).reduce(0, +) / Double(max(1, result.logs.count)),
                                             "mean_length": (curves["length"] ?? []).reduce(0, +) / Double(max(1, result.logs.count))],
                                   curves: curves)
    }

    private func saveTuned(_ policy: any ReasonLanguageModel) throws {
        let directory = modelDirectory(.tuned)
        switch policy {
        case let gpt as GPTReasonModel:
            try saveLanguageModel(gpt.model, gpt.tokenizer, to: directory)
        case let chat as LlamaReasonModel:
            guard let adapters = chat.adapters else { throw LlamaReasonModelError.noAdapters }
            let staging = directory + ".partial"
            try? FileManager.default.removeItem(atPath: staging)
            try adapters.savePeft(directory: staging, baseModelNameOrPath: "HuggingFaceTB/SmolLM2-135M-Instruct")
            let metadata = ["method": "lora", "stage": "grpo", "aligned_method": config.alignment.method.rawValue]
            try JSONSerialization.data(withJSONObject: metadata)
                .write(to: URL(fileURLWithPath: (staging as NSString).appendingPathComponent("metadata.json")))
            try? FileManager.default.removeItem(atPath: directory)
            try FileManager.default.moveItem(atPath: staging, toPath: directory)
        default:
            throw PipelineError.invalidConfig("cannot save \(type(of: policy))")
        }
    }

    /// Stage 5: one reason table (greedy, or corrected from the same writer's greedy table).
    private func runReasons(_ kind: ReasonTableKind) throws -> PipelineStageOutput {
        let dataset = environment.dataset
        let subjects = try reasonSubjects()
        let model = try languageModel(kind.writer)
        let rewarder = try rewarder()
        let writer = try ReasonWriter(languageModel: model, maxTokens: config.answerTokens,
                                      batchSize: config.generationBatch, repetitionPenalty: config.repetitionPenalty)
        let prompt = try prompter()
        let report: (Int, Int) -> Void = { done, total in self.progress(kind.stageName, done, total, [:]) }
        let table: ReasonTable
        if kind.corrected {
            guard let greedyKind = ReasonTableKind.all.first(where: { $0.writer == kind.writer && !$0.corrected }) else {
                throw PipelineError.invalidConfig("the corrected table \(kind.key) has no greedy table of the same model")
            }
            let greedy = try ReasonTable.read(from: path(greedyKind.directory))
            table = try ReasonCorrection.correctedTable(
                subjects: subjects, prompt: prompt, writer: writer, rewarder: rewarder, greedy: greedy,
                userCount: dataset.userCount, itemCount: dataset.itemCount, config: config.correction,
                progress: report, isCancelled: isCancelled)
        } else {
            table = try ReasonCorrection.greedyTable(
                subjects: subjects, prompt: prompt, writer: writer, rewarder: rewarder,
                userCount: dataset.userCount, itemCount: dataset.itemCount, progress: report, isCancelled: isCancelled)
        }
        try table.write(to: path(kind.directory))
        let summary = table.summary
        log(String(format: "reasons %@: mean reward %.3f, collaborative %.3f, checks passed %.1f%%, non-empty %d/%d",
                   kind.key, summary.meanReward, summary.meanCollaborative, summary.passRate * 100,
                   summary.nonEmpty, summary.entries))
        return PipelineStageOutput(metrics: [
            "mean_reward": summary.meanReward, "mean_collaborative": summary.meanCollaborative,
            "pass_rate": summary.passRate, "non_empty": Double(summary.nonEmpty),
            "entries": Double(summary.entries), "mean_words": summary.meanWords])
    }

    private var resultsPath: String { path("downstream/results.json") }
    /// The first-seed runs of every reason feature use (the choice is made from them).
    private var candidatesPath: String { path("downstream/feature-candidates.json") }
    /// What the served variant's kept model recommends to every user (the reason quality
    /// stage draws its pairs from it).
    private var servedPath: String { path("downstream/served.json") }
    private var qualityPath: String { path("quality/reason-quality.json") }

    /// The downstream runs finished so far (the stage resumes from them).
    private func downstreamResults() throws -> [DownstreamResult] {
        guard let data = FileManager.default.contents(atPath: resultsPath) else { return [] }
        return try JSONDecoder().decode([DownstreamResult].self, from: data)
    }

    private func candidateResults() throws -> [DownstreamResult] {
        guard let data = FileManager.default.contents(atPath: candidatesPath) else { return [] }
        return try JSONDecoder().decode([DownstreamResult].self, from: data)
    }

    /// The reason feature use of every variant with reasons, chosen on validation NDCG@10 of
    /// the first seed (ties: the first in ``ReasonFeatureUse/allCases``).
    func featureChoices() throws -> [FeatureChoice] {
        let candidates = try candidateResults()
        return DownstreamVariant.all.compactMap { variant -> FeatureChoice? in
            let runs = candidates.filter { $0.variant == variant.key }
            guard let seed = runs.first?.seed else { return nil }
            var scores: [String: Double] = [:]
            for run in runs where run.seed == seed { if let use = run.features { scores[use] = run.validationNDCG10 } }
            var best: ReasonFeatureUse?
            var bestScore = -Double.infinity
            for use in ReasonFeatureUse.allCases {
                if let score = scores[use.rawValue], score > bestScore { best = use; bestScore = score }
            }
            guard let best else { return nil }
            return FeatureChoice(variant: variant.key, seed: seed, validationNDCG10: scores, chosen: best.rawValue)
        }
    }

    private static func save<T: Encodable>(_ value: T, to file: String, pretty: Bool = true) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys] : [.sortedKeys]
        try encoder.encode(value).write(to: URL(fileURLWithPath: file), options: .atomic)
    }

    /// One served list: a user's top items (dataset indices).
    struct ServedList: Codable {
        var user: Int32
        var items: [Int32]
    }

    /// The features of one run of `variant` (`use` for a variant with reasons).
    private func features(of variant: DownstreamVariant, use: ReasonFeatureUse?, tables: [ReasonTableKind: ReasonTable],
                          content: [Float], dimension: Int) -> (items: [Float], itemDimension: Int, users: [Float], userDimension: Int) {
        switch variant.features {
        case .none:
            return ([], 0, [], 0)
        case .content:
            return (content, dimension, [], 0)
        case .reasons(let kind, let withContent):
            guard let table = tables[kind] else { return withContent ? (content, dimension, [], 0) : ([], 0, [], 0) }
            let use = use ?? .itemsAndUsers
            var items: [Float] = [], itemDimension = 0
            switch (withContent, use.usesItemReasons) {
            case (true, true):
                items = Self.sideBySide(content, dimension, table.itemEmbeddings, table.dimension, rows: environment.dataset.itemCount)
                itemDimension = dimension + table.dimension
            case (true, false):
                items = content
                itemDimension = dimension
            case (false, true):
                items = table.itemEmbeddings
                itemDimension = table.dimension
            case (false, false):
                break
            }
            return use.usesUserReasons ? (items, itemDimension, table.userEmbeddings, table.dimension) : (items, itemDimension, [], 0)
        }
    }

    /// Stages 6 and 7: downstream SASRec variants over seeds, evaluated on validation and
    /// test. A variant with reasons first trains every ``ReasonFeatureUse`` on the first seed
    /// and keeps the one with the best validation NDCG@10 for all its seeds (that run is its
    /// first seed's result). The served variant's first seed is trained again to be kept, and
    /// what it recommends is saved for the reason quality stage.
    private func runDownstream() throws -> PipelineStageOutput {
        let stage = PipelineStage.downstream.rawValue
        try FileManager.default.createDirectory(atPath: path("downstream"), withIntermediateDirectories: true)
        var results = (try? downstreamResults()) ?? []
        var candidates = (try? candidateResults()) ?? []
        var tables: [ReasonTableKind: ReasonTable] = [:]
        for kind in ReasonTableKind.all { tables[kind] = try ReasonTable.read(from: path(kind.directory)) }
        let content = try content(), dimension = try embedder().dimension
        let withReasons = DownstreamVariant.all.filter { if case .reasons = $0.features { return true } else { return false } }
        let total = DownstreamVariant.all.count * config.seeds.count + withReasons.count * (ReasonFeatureUse.allCases.count - 1) + 1
        guard let firstSeed = config.seeds.first else { throw PipelineError.invalidConfig("seeds: at least one seed") }

        func train(_ variant: DownstreamVariant, seed: UInt64, use: ReasonFeatureUse?, keep: Bool) throws -> (DownstreamResult, any RecommenderScoring) {
            try checkCancelled()
            let chosen = features(of: variant, use: use, tables: tables, content: content, dimension: dimension)
            let run = RecommenderRun(variant: variant.key, seed: seed, itemFeatures: chosen.items, itemFeatureDimension: chosen.itemDimension,
                                     userFeatures: chosen.users, userFeatureDimension: chosen.userDimension,
                                     config: config.recommenderConfig, keep: keep)
            let runStart = Date()
            let done = results.count + candidates.count
            let label = "\(variant.key) seed \(seed)" + (use.map { " (\($0.rawValue))" } ?? "")
            log("downstream: training \(label)")
            let model = try environment.trainRecommender(
                run, progress: { step, steps, metrics in self.progress("\(stage) \(label)", step, steps, metrics) },
                isCancelled: isCancelled)
            var result = try evaluate(model, variant: variant.key, seed: seed, seconds: Date().timeIntervalSince(runStart))
            result.features = use?.rawValue
            log(String(format: "downstream %@: test NDCG@10 %.4f, Recall@10 %.4f (validation NDCG@10 %.4f)",
                       label, result.test["ndcg@10"] ?? 0, result.test["recall@10"] ?? 0, result.validationNDCG10))
            progress(stage, min(done + 1, total), total, [:])
            return (result, model)
        }

        for variant in DownstreamVariant.all {
            var use: ReasonFeatureUse? = nil
            if case .reasons = variant.features {
                for candidate in ReasonFeatureUse.allCases
                where !candidates.contains(where: { $0.variant == variant.key && $0.seed == firstSeed && $0.features == candidate.rawValue }) {
                    let (result, _) = try train(variant, seed: firstSeed, use: candidate, keep: false)
                    candidates.append(result)
                    try Self.save(candidates, to: candidatesPath, pretty: false)
                }
                use = try featureChoices().first { $0.variant == variant.key }.flatMap { ReasonFeatureUse(rawValue: $0.chosen) }
                if let use { log("downstream \(variant.key): reason features \(use.rawValue), chosen on validation NDCG@10 of seed \(firstSeed)") }
            }
            for (seedIndex, seed) in config.seeds.enumerated() {
                if results.contains(where: { $0.variant == variant.key && $0.seed == seed }) { continue }
                let keep = variant == DownstreamVariant.served && seedIndex == 0
                if !keep, seedIndex == 0, let use,
                   let chosen = candidates.first(where: { $0.variant == variant.key && $0.seed == seed && $0.features == use.rawValue }) {
                    results.append(chosen)
                } else {
                    // The keep run saves its model before its result is recorded, so a
                    // recorded run never needs training again.
                    let (result, model) = try train(variant, seed: seed, use: use, keep: keep)
                    if keep {
                        let histories = statistics.historyByUser.map { $0.map { UInt32(bitPattern: $0) } }
                        let lists = try ReasonQualityMeter.servedLists(
                            model: model, histories: histories, itemCount: environment.dataset.itemCount,
                            users: (0..<environment.dataset.userCount).map { Int32($0) }, k: config.qualityListLength)
                        try Self.save(lists.map { ServedList(user: $0.user, items: $0.items) }, to: servedPath, pretty: false)
                    }
                    results.append(result)
                }
                try Self.save(results, to: resultsPath, pretty: false)
            }
        }
        return PipelineStageOutput(metrics: ["runs": Double(results.count), "feature_candidate_runs": Double(candidates.count)])
    }

    /// The label of each source of the reason quality table, in table order.
    enum QualitySource {
        static let base = "base model, greedy"
        static let aligned = "aligned, greedy"
        static let grpo = "after GRPO, greedy"
        static let served = "served: after GRPO + sentence filter, up to \(PairReasonWriter.defaultMaxAttempts) attempts"
        static let templates = "corpus templates"
    }

    /// The reason quality stage: ``PipelineConfig/qualityPairs`` (user, item) pairs drawn with
    /// ``PipelineConfig/qualitySeed`` from what the served variant recommends (not chosen by
    /// reward); for each a pair reason from the base, aligned and GRPO models (greedy, as
    /// written), the served one (``PairReasonWriter``: the GRPO model's greedy reason through
    /// the sentence filter, regenerated when nothing survives) and the corpus template;
    /// measured by ``ReasonQualityMeter`` with the untuned base model as the fluency judge.
    private func runReasonQuality() throws -> PipelineStageOutput {
        let stage = "reason-quality"
        guard config.qualityPairs > 0 else { return PipelineStageOutput(metrics: ["pairs": 0]) }
        guard let data = FileManager.default.contents(atPath: servedPath) else {
            throw PipelineError.stage(stage, "\(servedPath) is missing: the downstream stage of this workspace did not save what the served variant recommends; use a new run name")
        }
        let served = try JSONDecoder().decode([ServedList].self, from: data)
        let pairs = ReasonQualityMeter.samplePairs(from: served.map { (user: $0.user, items: $0.items) }, count: config.qualityPairs,
                                                   seed: config.qualitySeed)
        let builder = try builder()
        let prompts = pairs.map { builder.pairPrompt(user: $0.user, item: $0.item) }
        let verifier = ReasonVerifier(dataset: environment.dataset)
        let writers: [(ReasonTableKind.Writer, String)] = [(.base, QualitySource.base), (.aligned, QualitySource.aligned),
                                                           (.tuned, QualitySource.grpo)]
        var sources: [(name: String, texts: [String])] = []
        for (index, (kind, label)) in writers.enumerated() {
            let writer = try ReasonWriter(languageModel: try languageModel(kind), maxTokens: config.answerTokens,
                                          batchSize: Self.pairReasonBatch, repetitionPenalty: config.repetitionPenalty)
            let greedy = try writer.write(prompts: prompts, progress: { done, count in
                self.progress(stage, index * count + done, writers.count * count, [:])
            }, isCancelled: isCancelled).map(\.reason)
            sources.append((label, greedy))
            if kind == .tuned {
                let servedTexts = try PairReasonWriter(writer: writer, verifier: verifier, split: environment.split)
                    .reasons(pairs: pairs, prompts: prompts, greedy: greedy, isCancelled: isCancelled)
                sources.append((QualitySource.served, servedTexts))
            }
        }
        sources.append((QualitySource.templates, pairs.map { builder.templatePairReason(user: $0.user, item: $0.item) ?? "" }))
        let judge: (any ReasonFluencyJudge)?
        switch config.languageModel {
        case .chat:
            let backbone = try chatBackbone()
            try backbone.use(nil, on: backbone.trainable)
            judge = try LanguageModelJudge.chat(model: backbone.trainable, tokenizer: backbone.tokenizer)
        case .gpt:
            // The built-in GPT's "base" is its untrained initialisation: no judge of fluency.
            judge = nil
        }
        let report = try ReasonQualityReport(meter: ReasonQualityMeter(verifier: verifier, split: environment.split, judge: judge),
                                             dataset: environment.dataset, pairs: pairs, sources: sources, examples: 10,
                                             seed: config.qualitySeed)
        try FileManager.default.createDirectory(atPath: path("quality"), withIntermediateDirectories: true)
        try Self.save(report, to: qualityPath)
        var metrics: [String: Double] = ["pairs": Double(pairs.count)]
        for (row, key) in zip(report.rows, ["base", "aligned", "grpo", "served", "templates"]) {
            metrics["\(key).pass_rate"] = row.passRate
            metrics["\(key).distinct"] = row.distinctShare
            if let perplexity = row.perplexity { metrics["\(key).perplexity"] = perplexity }
        }
        if let row = report.rows.first(where: { $0.source == QualitySource.served }) {
            log(String(format: "reason quality: served pair reasons pass %.1f%%, distinct %.1f%%, perplexity %@ on %d pairs",
                       row.passRate * 100, row.distinctShare * 100, row.perplexity.map { String(format: "%.2f", $0) } ?? "-", pairs.count))
        }
        return PipelineStageOutput(metrics: metrics)
    }

    /// The reason quality measured by the last run of that stage, if any.
    private func savedReasonQuality() -> ReasonQualityReport? {
        guard let data = FileManager.default.contents(atPath: qualityPath) else { return nil }
        return try? JSONDecoder().decode(ReasonQualityReport.self, from: data)
    }

    /// Pair reasons written at once, as the daemon writes a request's pairs.
    static let pairReasonBatch = 8

    // MARK: - Pieces

    /// Row `i` of the result is row `i` of `a` followed by row `i` of `b`.
    static func sideBySide(_ a: [Float], _ da: Int, _ b: [Float], _ db: Int, rows: Int) -> [Float] {
        var out: [Float] = []
        out.reserveCapacity(rows * (da + db))
        for row in 0..<rows {
            out += a[(row * da)..<((row + 1) * da)]
            out += b[(row * db)..<((row + 1) * db)]
        }
        return out
    }

    /// A deterministic sample of users and items for GRPO prompts, interleaved.
    func grpoSubjects() -> [ReasonSubject] {
        let dataset = environment.dataset
        var generator = Xoshiro256(seed: config.grpo.seed &+ 0xC0FFEE)
        func sample(_ count: Int, of total: Int) -> [Int32] {
            var all = (0..<total).map { Int32($0) }
            all.shuffleRandomPrefix(count, using: &generator)
            return Array(all.prefix(count))
        }
        let users = sample(config.grpoUsers, of: dataset.userCount).map { ReasonSubject.user($0) }
        let items = sample(config.grpoItems, of: dataset.itemCount).map { ReasonSubject.item($0) }
        var subjects: [ReasonSubject] = []
        for index in 0..<max(users.count, items.count) {
            if index < users.count { subjects.append(users[index]) }
            if index < items.count { subjects.append(items[index]) }
        }
        return subjects
    }

    /// Validation NDCG@10 and test metrics of a trained recommender. The test history is the
    /// training history plus the validation item.
    func evaluate(_ model: any RecommenderScoring, variant: String, seed: UInt64, seconds: Double) throws -> DownstreamResult {
        let split = environment.split
        let itemCount = environment.dataset.itemCount
        let histories = statistics.historyByUser.map { $0.map { UInt32(bitPattern: $0) } }
        let candidates = (0..<itemCount).map { UInt32($0) }
        var validationItem: [Int32: UInt32] = [:]
        for interaction in split.validation { validationItem[interaction.user] = UInt32(bitPattern: interaction.item) }
        let validation = try RankingMetrics.evaluate(split: split, itemCount: itemCount, phase: .validation, cutoffs: [10]) { user, scores in
            try checkCancelled()
            try candidates.withUnsafeBufferPointer { buffer in
                try model.score(user: UInt32(bitPattern: user), history: histories[Int(user)], candidates: buffer, scores: scores)
            }
        }
        let test = try RankingMetrics.evaluate(split: split, itemCount: itemCount, phase: .test, cutoffs: [10, 20]) { user, scores in
            try checkCancelled()
            var history = histories[Int(user)]
            if let item = validationItem[user] { history.append(item) }
            try candidates.withUnsafeBufferPointer { buffer in
                try model.score(user: UInt32(bitPattern: user), history: history, candidates: buffer, scores: scores)
            }
        }
        let means = test.averaged()
        return DownstreamResult(
            variant: variant, seed: seed, validationNDCG10: validation.averaged().ndcg[10] ?? 0,
            test: ["recall@10": means.recall[10] ?? 0, "recall@20": means.recall[20] ?? 0,
                   "ndcg@10": means.ndcg[10] ?? 0, "ndcg@20": means.ndcg[20] ?? 0, "mrr@10": means.mrr[10] ?? 0],
            seconds: seconds, testNDCG10ByUser: test.ndcgPerUser(at: 10))
    }

    struct LanguageModel {
        let model: GPTModel
        let tokenizer: BPETokenizer
    }

    func saveLanguageModel(_ model: GPTModel, _ tokenizer: BPETokenizer, to directory: String) throws {
        let staging = directory + ".partial"
        try? FileManager.default.removeItem(atPath: staging)
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        try model.save(directory: staging)
        try tokenizer.saveTokenizerJSON(path: (staging as NSString).appendingPathComponent("tokenizer.json"))
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.moveItem(atPath: staging, toPath: directory)
    }

    func loadLanguageModel(_ directory: String) throws -> LanguageModel {
        LanguageModel(model: try GPTModel.load(directory: directory),
                      tokenizer: try BPETokenizer.load(tokenizerJSONPath: (directory as NSString).appendingPathComponent("tokenizer.json")))
    }
}
