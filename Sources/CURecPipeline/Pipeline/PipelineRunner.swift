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
}

/// A downstream variant of the ablation.
public struct DownstreamVariant: Sendable, Hashable {
    public var key: String
    public var label: String

    /// The five variants, in report order.
    public static let all = [
        DownstreamVariant(key: "id", label: "SASRec, item IDs only"),
        DownstreamVariant(key: "content", label: "+ raw content (MiniLM of title, year, genres)"),
        DownstreamVariant(key: "pretrain", label: "+ pretrain-only reasons"),
        DownstreamVariant(key: "rl", label: "+ RL reasons, no correction"),
        DownstreamVariant(key: "curec", label: "+ full CURec (RL + correction)"),
    ]
}

/// The stages a run can stop after (see ``PipelineRunner/run(through:)``), in order.
public enum PipelineStage: String, Sendable, CaseIterable, Comparable {
    /// Stages 1 and 2: corpus and alignment pretraining.
    case pretrain
    /// MiniLM embeddings of item content.
    case content
    /// Stage 3: the collaborative reward model.
    case reward
    /// Stage 4: GRPO.
    case grpo
    /// Stage 5: the three reason tables.
    case reasons
    /// Stages 6 and 7: the downstream ablation.
    case downstream
    /// The report.
    case report

    public static func < (a: PipelineStage, b: PipelineStage) -> Bool {
        allCases.firstIndex(of: a) ?? 0 < allCases.firstIndex(of: b) ?? 0
    }
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

    /// Runs `body` as stage `name` unless it is already recorded; records its time.
    private func stage(_ name: String, _ body: () throws -> (metrics: [String: Double], curves: [String: [Double]])) throws {
        if let done = finished(name) {
            log("stage \(name): already done (\(String(format: "%.1f", done.seconds)) s), skipped")
            return
        }
        try checkCancelled()
        log("stage \(name): started")
        let start = Date()
        let result: (metrics: [String: Double], curves: [String: [Double]])
        do {
            result = try body()
        } catch let error as PipelineError {
            throw error
        } catch {
            if isCancelled() { throw PipelineError.cancelled }
            throw PipelineError.stage(name, "\(error)")
        }
        let seconds = Date().timeIntervalSince(start)
        try record(PipelineStageRecord(name: name, seconds: seconds, metrics: result.metrics, curves: result.curves))
        log("stage \(name): done in \(String(format: "%.1f", seconds)) s")
    }

    // MARK: - Run

    /// Runs every stage not yet recorded, up to and including `last`, and returns where the
    /// outputs are. A later run on the same workspace continues from there.
    public func run(through last: PipelineStage = .report) throws -> PipelineOutcome {
        var partial = PipelineOutcome(completedThrough: last, workspace: workspace, pretrainedModelDirectory: path("lm-pretrain"),
                                      tunedModelDirectory: path("lm-rl"), reasonTableDirectories: [:],
                                      reportDirectory: "", stages: [], downstream: [])
        func stop() -> PipelineOutcome {
            partial.stages = records
            log("stopped after stage \(last.rawValue); run again on this workspace to continue")
            return partial
        }
        try config.validate()
        try FileManager.default.createDirectory(atPath: workspace, withIntermediateDirectories: true)
        try checkManifest()
        loadRecords()
        let dataset = environment.dataset
        var corpusConfiguration = CorpusConfiguration()
        corpusConfiguration.historyShown = config.historyShown
        let builder = try CorpusBuilder(dataset: dataset, split: environment.split, configuration: corpusConfiguration)

        // Stages 1 and 2: corpus and alignment pretraining.
        let pretrainedDirectory = path("lm-pretrain")
        try stage("pretrain") {
            progress("corpus", 0, 1, [:])
            let examples = builder.build { p in self.progress("corpus", p.completed, p.total, [:]) }
            log("corpus: \(examples.count) examples from the training split")
            var losses: [Double] = []
            let result = try AlignmentPretraining.run(
                texts: examples.map(\.text), config: config.pretraining, checkpointDirectory: path("pretrain-checkpoints"),
                progress: { step, total, metrics in
                    if let loss = metrics["loss"] { losses.append(loss) }
                    self.progress("pretrain", step, total, metrics)
                },
                isCancelled: isCancelled)
            try saveLanguageModel(result.model, result.tokenizer, to: pretrainedDirectory)
            log(String(format: "pretrain: held-out perplexity %.2f", result.heldOutPerplexity))
            return (["examples": Double(examples.count), "held_out_perplexity": result.heldOutPerplexity,
                     "held_out_loss": result.heldOutLoss, "train_loss": result.trainLoss], ["loss": losses])
        }
        // Only once the stage is recorded: a crash before that resumes from the checkpoints.
        try? FileManager.default.removeItem(atPath: path("pretrain-checkpoints"))
        if last == .pretrain { return stop() }

        // Content embeddings (raw-content baseline and the reward model's item features).
        let embedder = try environment.makeEmbedder()
        let contentPath = path("content/item_embeddings.f32")
        try stage("content") {
            let texts = (0..<dataset.itemCount).map { builder.contentText(item: Int32($0)) }
            var values: [Float] = []
            for start in stride(from: 0, to: texts.count, by: 256) {
                try checkCancelled()
                for row in try embedder.embed(Array(texts[start..<min(texts.count, start + 256)])) { values += row }
                progress("content", min(texts.count, start + 256), texts.count, [:])
            }
            try FileManager.default.createDirectory(atPath: path("content"), withIntermediateDirectories: true)
            try ReasonTable.bytes(values).write(to: URL(fileURLWithPath: contentPath), options: .atomic)
            return (["items": Double(texts.count), "dimension": Double(embedder.dimension)], [:])
        }
        if last == .content { return stop() }
        let content = try ReasonTable.floats(contentPath)

        // Stage 3: the collaborative reward model on content embeddings (fast; retrained on resume).
        let rewardStart = Date()
        progress("reward", 0, 1, [:])
        let scorer = try environment.trainRewardModel(
            itemFeatures: content, dimension: embedder.dimension, config: config.rewardModelConfig,
            progress: { step, total in self.progress("reward", step, total, [:]) }, isCancelled: isCancelled)
        let verifier = ReasonVerifier(dataset: dataset)
        let rewarder = try ReasonRewarder(statistics: builder.statistics, verifier: verifier, embedder: embedder,
                                          scorer: scorer, config: config.reward)
            .calibrated(itemFeatures: content, dimension: embedder.dimension)
        if finished("reward") == nil {
            try record(PipelineStageRecord(name: "reward", seconds: Date().timeIntervalSince(rewardStart),
                                           metrics: ["dimension": Double(embedder.dimension)], curves: [:]))
        }
        if last == .reward { return stop() }

        let pretrained = try loadLanguageModel(pretrainedDirectory)
        let prompt: (ReasonSubject) -> String = { subject in
            switch subject {
            case .user(let user): return builder.userPrompt(user: user)
            case .item(let item): return builder.itemPrompt(item: item)
            }
        }

        // Stage 4: GRPO against the frozen pretrained model.
        let tunedDirectory = path("lm-rl")
        try stage("grpo") {
            let policy = pretrained.model.frozenCopy()
            let writer = try ReasonWriter(model: policy, tokenizer: pretrained.tokenizer, maxTokens: config.maxTokens,
                                          batchSize: config.generationBatch)
            let subjects = grpoSubjects()
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
                    self.progress("grpo", step.step, self.config.grpo.steps,
                                  ["reward": step.meanReward, "kl": step.kl, "length": step.meanLength])
                },
                isCancelled: isCancelled)
            try saveLanguageModel(policy, pretrained.tokenizer, to: tunedDirectory)
            let first = curves["reward"]?.first ?? 0, last = curves["reward"]?.last ?? 0
            log(String(format: "grpo: mean reward %.3f -> %.3f over %d steps", first, last, result.logs.count))
            return (["first_reward": first, "last_reward": last, "steps": Double(result.logs.count),
                     "prompts": Double(prompts.count)], curves)
        }

        if last == .grpo { return stop() }

        // Stage 5: reason tables (pretrain-only greedy, RL greedy, corrected).
        let subjects = ReasonCorrection.allSubjects(userCount: dataset.userCount, itemCount: dataset.itemCount)
        var tableDirectories: [String: String] = [:]
        for key in ["pretrain", "rl", "curec"] { tableDirectories[key] = path("reasons/\(key)") }
        let tuned = try loadLanguageModel(tunedDirectory)
        for key in ["pretrain", "rl", "curec"] {
            try stage("reasons-\(key)") {
                let model = key == "pretrain" ? pretrained : tuned
                let writer = try ReasonWriter(model: model.model, tokenizer: model.tokenizer, maxTokens: config.maxTokens,
                                              batchSize: config.generationBatch, repetitionPenalty: config.repetitionPenalty)
                let table: ReasonTable
                let report: (Int, Int) -> Void = { done, total in self.progress("reasons-\(key)", done, total, [:]) }
                if key == "curec" {
                    let greedy = try ReasonTable.read(from: path("reasons/rl"))
                    table = try ReasonCorrection.correctedTable(
                        subjects: subjects, prompt: prompt, writer: writer, rewarder: rewarder, greedy: greedy,
                        userCount: dataset.userCount, itemCount: dataset.itemCount, config: config.correction,
                        progress: report, isCancelled: isCancelled)
                } else {
                    table = try ReasonCorrection.greedyTable(
                        subjects: subjects, prompt: prompt, writer: writer, rewarder: rewarder,
                        userCount: dataset.userCount, itemCount: dataset.itemCount, progress: report, isCancelled: isCancelled)
                }
                try table.write(to: path("reasons/\(key)"))
                let summary = table.summary
                log(String(format: "reasons %@: mean reward %.3f, collaborative %.3f, checks passed %.1f%%, non-empty %d/%d",
                           key, summary.meanReward, summary.meanCollaborative, summary.passRate * 100,
                           summary.nonEmpty, summary.entries))
                return (["mean_reward": summary.meanReward, "mean_collaborative": summary.meanCollaborative,
                         "pass_rate": summary.passRate, "non_empty": Double(summary.nonEmpty),
                         "entries": Double(summary.entries), "mean_words": summary.meanWords], [:])
            }
        }

        partial.reasonTableDirectories = tableDirectories
        if last == .reasons { return stop() }

        // Stages 6 and 7: downstream SASRec variants over seeds, evaluated on validation and test.
        let resultsPath = path("downstream/results.json")
        var results = (try? JSONDecoder().decode([DownstreamResult].self,
                                                 from: Data(contentsOf: URL(fileURLWithPath: resultsPath)))) ?? []
        let downstreamStart = Date()
        if finished("downstream") == nil {
            try FileManager.default.createDirectory(atPath: path("downstream"), withIntermediateDirectories: true)
            var tables: [String: ReasonTable] = [:]
            for key in ["pretrain", "rl", "curec"] { tables[key] = try ReasonTable.read(from: path("reasons/\(key)")) }
            let total = DownstreamVariant.all.count * config.seeds.count
            for variant in DownstreamVariant.all {
                for (seedIndex, seed) in config.seeds.enumerated() {
                    // The keep run saves its model before its result is recorded, so a recorded
                    // run never needs training again.
                    if results.contains(where: { $0.variant == variant.key && $0.seed == seed }) { continue }
                    try checkCancelled()
                    var run = RecommenderRun(variant: variant.key, seed: seed, itemFeatures: [], itemFeatureDimension: 0,
                                             userFeatures: [], userFeatureDimension: 0, config: config.recommenderConfig,
                                             keep: variant.key == "curec" && seedIndex == 0)
                    if variant.key == "content" {
                        run.itemFeatures = content
                        run.itemFeatureDimension = embedder.dimension
                    } else if let table = tables[variant.key] {
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
                            self.progress("downstream \(variant.key) seed \(seed)", step, steps, metrics)
                        }, isCancelled: isCancelled)
                    let result = try evaluate(model, variant: variant.key, seed: seed, seconds: Date().timeIntervalSince(runStart))
                    results.append(result)
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                    try encoder.encode(results).write(to: URL(fileURLWithPath: resultsPath), options: .atomic)
                    log(String(format: "downstream %@ seed %llu: test NDCG@10 %.4f, Recall@10 %.4f (validation NDCG@10 %.4f)",
                               variant.key, seed, result.test["ndcg@10"] ?? 0, result.test["recall@10"] ?? 0,
                               result.validationNDCG10))
                    progress("downstream", min(done + 1, total), total, [:])
                }
            }
            try record(PipelineStageRecord(name: "downstream", seconds: Date().timeIntervalSince(downstreamStart),
                                           metrics: ["runs": Double(results.count)], curves: [:]))
        }

        if last == .downstream {
            partial.downstream = results
            return stop()
        }

        // Report.
        let reportDirectory = path("report")
        try PipelineReportWriter(config: config, dataset: dataset, stages: records, downstream: results,
                                 tables: tableDirectories).write(to: reportDirectory)
        log("report written to \(reportDirectory)")
        return PipelineOutcome(completedThrough: .report, workspace: workspace, pretrainedModelDirectory: pretrainedDirectory,
                               tunedModelDirectory: tunedDirectory, reasonTableDirectories: tableDirectories,
                               reportDirectory: reportDirectory, stages: records, downstream: results)
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
