import CURecData
import Foundation

/// Writes the pipeline report: `report.md` (stage times, LM and RL numbers, reason table
/// quality, the ablation table with a plain verdict, example reasons), SVG charts
/// (`pretrain-loss.svg`, `grpo.svg`, `ablation.svg`), `results.json` (every downstream
/// run, with its per-user test NDCG@10) and `significance.json` (the paired tests).
/// Everything it states is computed from the records it is given.
public struct PipelineReportWriter: Sendable {
    public let config: PipelineConfig
    public let dataset: RecDataset
    public let stages: [PipelineStageRecord]
    public let downstream: [DownstreamResult]
    /// Reason table directories per variant key.
    public let tables: [String: String]
    /// The quality of served pair reasons per source (section and `reason-quality.json`), when
    /// measured.
    public var reasonQuality: ReasonQualityReport? = nil
    /// How each variant with reasons chose its reason features (on validation), when known.
    public var featureChoices: [FeatureChoice] = []

    public init(config: PipelineConfig, dataset: RecDataset, stages: [PipelineStageRecord],
                downstream: [DownstreamResult], tables: [String: String]) {
        self.config = config
        self.dataset = dataset
        self.stages = stages
        self.downstream = downstream
        self.tables = tables
    }

    static let metrics = ["recall@10", "recall@20", "ndcg@10", "ndcg@20", "mrr@10"]
    static let headers = ["recall@10": "Recall@10", "recall@20": "Recall@20", "ndcg@10": "NDCG@10",
                          "ndcg@20": "NDCG@20", "mrr@10": "MRR@10"]

    /// The ablation table of the downstream runs, variants in report order.
    public var ablation: AblationTable {
        var table = AblationTable()
        for variant in DownstreamVariant.all {
            for run in downstream where run.variant == variant.key {
                table.add(variant: variant.label, seed: Int(truncatingIfNeeded: run.seed), metrics: run.test)
            }
        }
        return table
    }

    /// Full CURec against raw content and ID-only on per-user test NDCG@10 (significance.json).
    public var significance: DownstreamSignificance {
        DownstreamSignificance(downstream: downstream, testUsers: DownstreamSignificance.testUsers(of: dataset))
    }

    private func stage(_ name: String) -> PipelineStageRecord? { stages.first { $0.name == name } }

    private static func fixed(_ value: Double?, _ decimals: Int = 3) -> String {
        value.map { ReportFormat.fixed($0, decimals: decimals) } ?? "—"
    }

    /// Renders the Markdown text (without writing anything).
    public func markdown() -> String {
        var report = MarkdownReport()
        report.heading("CURec pipeline report")
        report.paragraph("Dataset \(dataset.name): \(dataset.userCount) users, \(dataset.itemCount) items, "
            + "\(dataset.interactions.count) interactions, leave-one-out split (the last interaction of each user is "
            + "the test item, the one before it the validation item). Profile `\(config.profile)`; seeds "
            + config.seeds.map(String.init).joined(separator: ", ") + ". Validation and test interactions are read only "
            + "to evaluate; model selection (early stopping) uses validation NDCG@10 only.")

        report.heading("Stages", level: 2)
        let total = stages.reduce(0) { $0 + $1.seconds }
        var rows = stages.map { [$0.name, ReportFormat.fixed($0.seconds, decimals: 1)] }
        rows.append(["total", ReportFormat.fixed(total, decimals: 1)])
        report.table(header: ["Stage", "Seconds"], rows: rows, alignments: [.left, .right])

        report.heading("Language model", level: 2)
        if let align = stage(PipelineStage.align.rawValue) {
            switch config.languageModel {
            case .chat:
                let a = config.alignment
                let method = a.method == .lora ? "LoRA (rank \(a.lora.rank), alpha \(ReportFormat.compact(Double(a.lora.alpha), maxDecimals: 2)))" : "full fine-tuning"
                report.paragraph("Alignment fine-tuning of SmolLM2-135M-Instruct, \(method), on "
                    + "\(Int(align.metrics["train_examples"] ?? 0)) of \(Int(align.metrics["examples"] ?? 0)) corpus examples in its "
                    + "chat format (loss on the assistant turn: up to \(a.reasoningSteps) reasoning steps and the reason), "
                    + "\(a.steps) steps of \(a.batch). Perplexity of the answers of \(Int(align.metrics["held_out_examples"] ?? 0)) "
                    + "held-out examples (\(Int(align.metrics["held_out_tokens"] ?? 0)) tokens, never trained on): base model "
                    + Self.fixed(align.metrics["base_held_out_perplexity"], 2) + ", aligned "
                    + Self.fixed(align.metrics["held_out_perplexity"], 2) + ".")
            case .gpt:
                report.paragraph("Alignment pretraining of the built-in GPT: \(Int(align.metrics["examples"] ?? 0)) corpus examples, "
                    + "\(config.pretraining.steps) steps, \(config.pretraining.layers) layers × width \(config.pretraining.width), "
                    + "BPE vocabulary \(config.pretraining.vocabularySize). Held-out perplexity "
                    + Self.fixed(align.metrics["held_out_perplexity"], 2) + ".")
            }
            report.image(alt: "alignment loss", file: "pretrain-loss.svg")
        }
        if let grpo = stage(PipelineStage.grpo.rawValue) {
            report.paragraph("GRPO: \(Int(grpo.metrics["steps"] ?? 0)) steps over \(Int(grpo.metrics["prompts"] ?? 0)) "
                + "user and item prompts, \(config.grpo.promptsPerStep) prompts × \(config.grpo.groupSize) samples per step, "
                + "KL coefficient \(ReportFormat.compact(Double(config.grpo.klCoefficient), maxDecimals: 4)). Mean reward "
                + Self.fixed(grpo.metrics["first_reward"]) + " at the first step, " + Self.fixed(grpo.metrics["last_reward"])
                + " at the last (single steps are noisy; see the curve); mean KL to the aligned model "
                + Self.fixed(grpo.metrics["mean_kl"], 4) + ", mean completion length "
                + Self.fixed(grpo.metrics["mean_length"], 1) + " tokens.")
            report.image(alt: "GRPO reward, KL and length", file: "grpo.svg")
        }

        report.heading("Reasons", level: 2)
        let subjects = (config.reasonUsers == 0 ? "every user" : "the first \(config.reasonUsers) users")
            + " and " + (config.reasonItems == 0 ? "every item" : "the \(config.reasonItems) most watched items")
        report.paragraph("One reason for \(subjects) (the others get zero feature rows). Reward = fraction of (true, sampled) users the collaborative "
            + "reward model orders correctly with the reason's MiniLM embedding as content, minus the verifier's penalties "
            + "(false titles, genres or years, claims from after the user's cut-off, format).")
        var tableRows: [[String]] = []
        for kind in ReasonTableKind.all {
            guard let record = stage(kind.stageName) else { continue }
            tableRows.append([kind.description(candidates: config.correction.candidates), Self.fixed(record.metrics["mean_reward"]), Self.fixed(record.metrics["mean_collaborative"]),
                              ReportFormat.fixed((record.metrics["pass_rate"] ?? 0) * 100, decimals: 1) + "%",
                              "\(Int(record.metrics["non_empty"] ?? 0))/\(Int(record.metrics["entries"] ?? 0))",
                              ReportFormat.fixed(record.metrics["mean_words"] ?? 0, decimals: 1)])
        }
        report.table(header: ["Reasons", "Mean reward", "Collaborative", "All checks pass", "Non-empty", "Words"],
                     rows: tableRows, alignments: [.left, .right, .right, .right, .right, .right])
        if let directory = tables[ReasonTableKind.served.key], let table = try? ReasonTable.read(from: directory) {
            let examples = table.entries.filter { !$0.text.isEmpty }.sorted { $0.reward > $1.reward }
            var lines: [String] = []
            let shown = examples.count <= 5 ? examples : Array(examples.prefix(3) + examples.suffix(2))
            for entry in shown {
                let name: String
                switch entry.subject {
                case .user(let user):
                    name = Int(user) < dataset.userCount ? "user \(dataset.users[Int(user)].externalID)" : "user #\(user)"
                case .item(let item):
                    name = Int(item) < dataset.itemCount ? "item \(dataset.items[Int(item)].title)" : "item #\(item)"
                }
                lines.append("\(name) (reward \(Self.fixed(entry.reward))): \(entry.text)")
            }
            if !lines.isEmpty {
                report.paragraph("Examples from the corrected table (highest and lowest reward):")
                report.bullets(lines)
            }
        }

        report.heading("Downstream: SASRec with reason features", level: 2)
        let table = ablation
        report.paragraph("Test metrics, mean ± sample standard deviation over \(config.seeds.count) seed(s); full ranking "
            + "over all items, excluding the user's training items.")
        report.markdown(table.markdown(metrics: Self.metrics, headers: Self.headers))
        report.image(alt: "ablation", file: "ablation.svg")
        report.paragraph(verdict(table))
        if !featureChoices.isEmpty { featureSection(&report) }
        if let reasonQuality {
            report.markdown(reasonQuality.markdown())
            report.paragraph(Self.qualityGoals(reasonQuality))
        }
        report.markdown(significance.markdown(labels: Dictionary(uniqueKeysWithValues: DownstreamVariant.all.map { ($0.key, $0.label) })))
        return report.render()
    }

    /// The validation NDCG@10 of every reason feature use per variant, and the one kept.
    func featureSection(_ report: inout MarkdownReport) {
        report.paragraph("Reason features per variant, chosen on validation only: each variant with reasons was trained on seed "
            + "\(featureChoices.first.map { String($0.seed) } ?? "")"
            + " with the item reasons and the user reasons (`items+users`), the item reasons only (`items`) and the user reasons "
            + "only (`users`), beside the raw content where the variant has it; the use with the best validation NDCG@10 "
            + "was kept for every seed. Validation NDCG@10:")
        let labels = Dictionary(uniqueKeysWithValues: DownstreamVariant.all.map { ($0.key, $0.label) })
        let rows = featureChoices.map { choice -> [String] in
            [labels[choice.variant] ?? choice.variant]
                + ReasonFeatureUse.allCases.map { use in
                    Self.fixed(choice.validationNDCG10[use.rawValue], 4) + (use.rawValue == choice.chosen ? " (kept)" : "")
                }
        }
        report.table(header: ["Variant"] + ReasonFeatureUse.allCases.map(\.rawValue), rows: rows,
                     alignments: [MarkdownReport.Alignment.left]
                        + ReasonFeatureUse.allCases.map { _ in MarkdownReport.Alignment.right })
    }

    /// Whether the served pair reasons meet the quality goals (at least 95% pass every check,
    /// at least 90% distinct, perplexity under the base model no higher than the templates').
    static func qualityGoals(_ quality: ReasonQualityReport) -> String {
        guard let served = quality.rows.first(where: { $0.source.hasPrefix("served") }) else { return "" }
        var sentences: [String] = []
        func percent(_ value: Double) -> String { ReportFormat.fixed(value * 100, decimals: 1) + "%" }
        sentences.append(served.passRate >= 0.95
            ? "Goal met: \(percent(served.passRate)) of the served pair reasons pass every check (goal 95%)."
            : "Goal missed: \(percent(served.passRate)) of the served pair reasons pass every check, "
                + "\(ReportFormat.fixed((0.95 - served.passRate) * 100, decimals: 1)) points short of 95%.")
        sentences.append(served.distinctShare >= 0.9
            ? "Goal met: \(percent(served.distinctShare)) are distinct (goal 90%)."
            : "Goal missed: \(percent(served.distinctShare)) are distinct, "
                + "\(ReportFormat.fixed((0.9 - served.distinctShare) * 100, decimals: 1)) points short of 90%.")
        if let mine = served.perplexity, let templates = quality.rows.first(where: { $0.source.hasPrefix("corpus") })?.perplexity {
            sentences.append(mine <= templates
                ? "Goal met: their perplexity under the base model, \(ReportFormat.fixed(mine, decimals: 2)), is no higher than the templates' (\(ReportFormat.fixed(templates, decimals: 2)))."
                : "Goal missed: their perplexity under the base model is \(ReportFormat.fixed(mine, decimals: 2)), "
                    + "\(ReportFormat.fixed(mine - templates, decimals: 2)) above the templates' \(ReportFormat.fixed(templates, decimals: 2)).")
        }
        return sentences.joined(separator: " ")
    }

    /// A plain statement of whether full CURec beats the ID-only and raw-content variants.
    func verdict(_ table: AblationTable) -> String {
        let curec = DownstreamVariant.served.label
        guard let mine = table.summary(variant: curec, metric: "ndcg@10") else {
            return "The ablation is incomplete, so no verdict is given."
        }
        var sentences: [String] = []
        for (variant, name) in DownstreamVariant.baselines {
            let key = variant.label
            guard let other = table.summary(variant: key, metric: "ndcg@10") else { continue }
            let change = table.compare(variant: curec, against: key, metric: "ndcg@10")
            let margin = mine.std + other.std
            let word: String
            let within = "the difference is within the two variants' combined standard deviation"
            if mine.mean > other.mean + margin { word = "beat" }
            else if mine.mean > other.mean { word = "edged past (\(within))" }
            else if mine.mean + margin < other.mean { word = "did not beat" }
            else { word = "did not beat (\(within))" }
            sentences.append("Full CURec reasons \(word) the \(name) variant on test NDCG@10 ("
                + ReportFormat.fixed(mine.mean, decimals: 4) + " vs " + ReportFormat.fixed(other.mean, decimals: 4)
                + ", " + ReportFormat.signedPercent(change) + ").")
        }
        if config.seeds.count < 2 {
            sentences.append("With a single seed these differences carry no error bars; the standard profile runs five.")
        }
        return sentences.joined(separator: " ")
    }

    /// Writes report.md, the charts and results.json into `directory` (created if needed).
    public func write(to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        func save(_ text: String, _ name: String) throws {
            try Data(text.utf8).write(to: URL(fileURLWithPath: (directory as NSString).appendingPathComponent(name)), options: .atomic)
        }
        let loss = stage(PipelineStage.align.rawValue)?.curves["loss"] ?? []
        try save(SVGLineChart(title: "Alignment loss", xLabel: "step", yLabel: "cross-entropy",
                              series: [.init(name: "train loss", points: loss.enumerated().map { (Double($0 + 1), $1) })]).render(),
                 "pretrain-loss.svg")
        let curves = stage(PipelineStage.grpo.rawValue)?.curves ?? [:]
        let series = ["reward", "kl", "length"].map { key -> SVGLineChart.Series in
            var values = curves[key] ?? []
            var name = key
            if key == "length" { values = values.map { $0 / 100 }; name = "length / 100 tokens" }
            if key == "kl" { name = "KL to reference" }
            if key == "reward" { name = "mean reward" }
            return .init(name: name, points: values.enumerated().map { (Double($0 + 1), $1) })
        }
        try save(SVGLineChart(title: "GRPO", xLabel: "step", yLabel: "value", series: series).render(), "grpo.svg")
        try save(ablation.barChart(title: "Test metrics by variant (mean ± std)", metrics: Self.metrics,
                                   headers: Self.headers).render(), "ablation.svg")
        try save(markdown(), "report.md")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        // One line: the per-user vectors would take a line per value when pretty-printed.
        let compact = JSONEncoder()
        compact.outputFormatting = [.sortedKeys]
        try compact.encode(downstream).write(to: URL(fileURLWithPath: (directory as NSString).appendingPathComponent("results.json")),
                                             options: .atomic)
        try encoder.encode(significance).write(to: URL(fileURLWithPath: (directory as NSString).appendingPathComponent("significance.json")),
                                               options: .atomic)
        if let reasonQuality {
            try encoder.encode(reasonQuality).write(
                to: URL(fileURLWithPath: (directory as NSString).appendingPathComponent("reason-quality.json")), options: .atomic)
        }
        try encoder.encode(stages).write(to: URL(fileURLWithPath: (directory as NSString).appendingPathComponent("stages.json")),
                                         options: .atomic)
    }
}
