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
}

/// Where a pipeline left its outputs (all inside the workspace).
public struct PipelineOutcome: Sendable {
    /// The last stage run; the outputs of later stages are empty.
    public var completedThrough: PipelineStage
    public var workspace: String
    /// Pretrained LM (model files and tokenizer.json).
    public var pretrainedModelDirectory: String
    /// RL-tuned LM.
    public var tunedModelDirectory: String
    /// Reason tables per variant key (`pretrain`, `rl`, `curec`).
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
    private var cachedModels: [ReasonTableKind.Writer: LanguageModel] = [:]

    private var contentPath: String { path("content/item_embeddings.f32") }
    private func modelDirectory(_ writer: ReasonTableKind.Writer) -> String {
        switch writer {
        case .pretrained: return path("lm-pretrain")
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

    private func languageModel(_ writer: ReasonTableKind.Writer) throws -> LanguageModel {
        if let cached = cachedModels[writer] { return cached }
        let loaded = try loadLanguageModel(modelDirectory(writer))
        cachedModels[writer] = loaded
        return loaded
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
        let pretrain = PipelineStage.pretrain.rawValue, content = PipelineStage.content.rawValue
        let reward = PipelineStage.reward.rawValue, grpo = PipelineStage.grpo.rawValue
        var table: [PipelineStageDefinition] = [
            PipelineStageDefinition(.pretrain, scratch: ["pretrain-checkpoints"], run: runPretraining),
            PipelineStageDefinition(.content, run: runContent),
            PipelineStageDefinition(.reward, inputs: [content]) {
                _ = try self.rewarder()
                return PipelineStageOutput(metrics: ["dimension": Double(try self.embedder().dimension)])
            },
            PipelineStageDefinition(.grpo, inputs: [pretrain, content, reward], run: runGRPO),
        ]
        for kind in ReasonTableKind.all {
            var inputs = [content, reward, kind.writer == .pretrained ? pretrain : grpo]
            if kind.corrected, let greedy = ReasonTableKind.all.first(where: { $0.writer == kind.writer && !$0.corrected }) {
                inputs.append(greedy.stageName)
            }
            table.append(PipelineStageDefinition(kind.stageName, group: .reasons, inputs: inputs) { try self.runReasons(kind)
            })
        }
        table.append(PipelineStageDefinition(.downstream, inputs: [content] + ReasonTableKind.all.map(\.stageName),
                                             scratch: [], run: runDownstream))
        table.append(PipelineStageDefinition(.report, inputs: [PipelineStage.downstream.rawValue], recording: .everyRun) {
            try PipelineReportWriter(config: self.config, dataset: self.environment.dataset, stages: self.records,
                                     downstream: self.downstreamResults(), tables: self.tableDirectories)
                .write(to: self.path("report"))
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
            completedThrough: last, workspace: workspace, pretrainedModelDirectory: modelDirectory(.pretrained),
            tunedModelDirectory: modelDirectory(.tuned), reasonTableDirectories: reachedReasons ? tableDirectories : [:],
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

    /// Stages 1 and 2: corpus and alignment pretraining.
    private func runPretraining() throws -> PipelineStageOutput {
        let stage = PipelineStage.pretrain.rawValue
        progress("corpus", 0, 1, [:])
        let examples = try builder().build { p in self.progress("corpus", p.completed, p.total, [:]) }
        log("corpus: \(examples.count) examples from the training split")
        var losses: [Double] = []
        let result = try AlignmentPretraining.run(
            texts: examples.map(\.text), config: config.pretraining, checkpointDirectory: path("pretrain-checkpoints"),
            progress: { step, total, metrics in
                if let loss = metrics["loss"] { losses.append(loss) }
                self.progress(stage, step, total, metrics)
            },
            isCancelled: isCancelled)
        try saveLanguageModel(result.model, result.tokenizer, to: modelDirectory(.pretrained))
        log(String(format: "pretrain: held-out perplexity %.2f", result.heldOutPerplexity))
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

    /// Stage 4: GRPO against the frozen pretrained model.
    private func runGRPO() throws -> PipelineStageOutput {
        let stage = PipelineStage.grpo.rawValue
        let pretrained = try languageModel(.pretrained)
        let rewarder = try rewarder()
        let policy = pretrained.model.frozenCopy()
        let writer = try ReasonWriter(model: policy, tokenizer: pretrained.tokenizer, maxTokens: config.maxTokens,
                                      batchSize: config.generationBatch)
        let subjects = grpoSubjects()
        let prompt = try prompter()
        let prompts = subjects.map { writer.promptTokens(prompt($0)) }
        var curves: [String: [Double]] = ["reward": [], "kl": [], "length": [], "loss": []]
        var grpoConfig = config.grpo
        grpoConfig.maxTokens = config.maxTokens
        let result = try GRPO.run(
            policy: policy, reference: pretrained.model, prompts: prompts, stopSequences: writer.stopSequences,
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
                self.progress(stage, step.step, self.config.grpo.steps,
                              ["reward": step.meanReward, "kl": step.kl, "length": step.meanLength])
            },
            isCancelled: isCancelled)
        try saveLanguageModel(policy, pretrained.tokenizer, to: modelDirectory(.tuned))
        cachedModels[.tuned] = nil
        let first = curves["reward"]?.first ?? 0, last = curves["reward"]?.last ?? 0
        log(String(format: "grpo: mean reward %.3f -> %.3f over %d steps", first, last, result.logs.count))
        return PipelineStageOutput(metrics: ["first_reward": first, "last_reward": last, "steps": Double(result.logs.count),
                                             "prompts": Double(prompts.count)], curves: curves)
    }

    /// Stage 5: one reason table (greedy, or corrected from the same writer's greedy table).
    private func runReasons(_ kind: ReasonTableKind) throws -> PipelineStageOutput {
        let dataset = environment.dataset
        let subjects = ReasonCorrection.allSubjects(userCount: dataset.userCount, itemCount: dataset.itemCount)
        let model = try languageModel(kind.writer)
        let rewarder = try rewarder()
        let writer = try ReasonWriter(model: model.model, tokenizer: model.tokenizer, maxTokens: config.maxTokens,
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

    /// The downstream runs finished so far (the stage resumes from them).
    private func downstreamResults() throws -> [DownstreamResult] {
        guard let data = FileManager.default.contents(atPath: resultsPath) else { return [] }
        return try JSONDecoder().decode([DownstreamResult].self, from: data)
    }

    /// Stages 6 and 7: downstream SASRec variants over seeds, evaluated on validation and test.
    private func runDownstream() throws -> PipelineStageOutput {
        let stage = PipelineStage.downstream.rawValue
        try FileManager.default.createDirectory(atPath: path("downstream"), withIntermediateDirectories: true)
        var results = (try? downstreamResults()) ?? []
        var tables: [ReasonTableKind: ReasonTable] = [:]
        for kind in ReasonTableKind.all { tables[kind] = try ReasonTable.read(from: path(kind.directory)) }
        let content = try content(), dimension = try embedder().dimension
        let total = DownstreamVariant.all.count * config.seeds.count
        for variant in DownstreamVariant.all {
            for (seedIndex, seed) in config.seeds.enumerated() {
                // The keep run saves its model before its result is recorded, so a recorded
                // run never needs training again.
                if results.contains(where: { $0.variant == variant.key && $0.seed == seed }) { continue }
                try checkCancelled()
                var run = RecommenderRun(variant: variant.key, seed: seed, itemFeatures: [], itemFeatureDimension: 0,
                                         userFeatures: [], userFeatureDimension: 0, config: config.recommenderConfig,
                                         keep: variant == DownstreamVariant.served && seedIndex == 0)
                switch variant.features {
                case .none:
                    break
                case .content:
                    run.itemFeatures = content
                    run.itemFeatureDimension = dimension
                case .reasons(let kind):
                    guard let table = tables[kind] else { break }
                    run.itemFeatures = table.itemEmbeddings
                    run.itemFeatureDimension = table.dimension
                    run.userFeatures = table.userEmbeddings
                    run.userFeatureDimension = table.dimension
                }
                let runStart = Date()
                let done = results.count
                log("downstream: training \(variant.key) seed \(seed)")
                let model = try environment.trainRecommender(
                    run, progress: { step, steps, metrics in
                        self.progress("\(stage) \(variant.key) seed \(seed)", step, steps, metrics)
                    }, isCancelled: isCancelled)
                let result = try evaluate(model, variant: variant.key, seed: seed, seconds: Date().timeIntervalSince(runStart))
                results.append(result)
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                try encoder.encode(results).write(to: URL(fileURLWithPath: resultsPath), options: .atomic)
                log(String(format: "downstream %@ seed %llu: test NDCG@10 %.4f, Recall@10 %.4f (validation NDCG@10 %.4f)",
                           variant.key, seed, result.test["ndcg@10"] ?? 0, result.test["recall@10"] ?? 0,
                           result.validationNDCG10))
                progress(stage, min(done + 1, total), total, [:])
            }
        }
        return PipelineStageOutput(metrics: ["runs": Double(results.count)])
    }

    // MARK: - Pieces

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
            seconds: seconds)
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
