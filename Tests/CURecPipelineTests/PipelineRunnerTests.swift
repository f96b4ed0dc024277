import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import CURecData
@testable import CURecPipeline

/// Runs every stage on the synthetic dataset with a tiny LM, then checks the outputs, the
/// report, the correction guarantees and resuming.
@Suite(.serialized) struct PipelineRunnerTests {
    static func workspace() -> String {
        let path = NSTemporaryDirectory() + "curec-pipeline-\(UUID().uuidString)"
        return path
    }

    @Test func everyStageRunsAndTheReportHoldsTheAblation() throws {
        let dataset = Synthetic.dataset()
        let split = LeaveOneOutSplit(dataset)
        let environment = TestPipelineEnvironment(dataset: dataset, split: split)
        let config = tinyPipelineConfig()
        let workspace = Self.workspace()
        defer { try? FileManager.default.removeItem(atPath: workspace) }
        var stagesSeen = Set<String>()
        let outcome = try PipelineRunner(environment: environment, config: config, workspace: workspace,
                                         progress: { stage, _, _, _ in stagesSeen.insert(stage) }).run()

        // Stage records with times.
        let names = outcome.stages.map(\.name)
        for stage in ["align", "content", "reward", "grpo", "reasons-base", "reasons-aligned", "reasons-rl", "reasons-curec", "downstream", "reason-quality"] {
            #expect(names.contains(stage), "missing stage \(stage)")
        }
        #expect(outcome.stages.allSatisfy { $0.seconds >= 0 })
        #expect(stagesSeen.contains("grpo") && stagesSeen.contains("align"))
        #expect(outcome.stages.first { $0.name == "grpo" }?.curves["reward"]?.count == config.grpo.steps)
        #expect((outcome.stages.first { $0.name == "align" }?.metrics["held_out_perplexity"] ?? 0) > 1)

        // Five variants over two seeds, with finite metrics.
        #expect(outcome.downstream.count == DownstreamVariant.all.count * config.seeds.count)
        for result in outcome.downstream {
            for metric in ["recall@10", "recall@20", "ndcg@10", "ndcg@20", "mrr@10"] {
                let value = try #require(result.test[metric])
                #expect(value >= 0 && value <= 1)
            }
        }

        // Reason tables: one entry per user and item; corrected reasons pass the sentence filter.
        let verifier = ReasonVerifier(dataset: dataset)
        let builder = try CorpusBuilder(dataset: dataset, split: split)
        let rewarder = ReasonRewarder(statistics: builder.statistics, verifier: verifier, embedder: KeywordEmbedder(),
                                      scorer: ProfileScorer(dataset: dataset, split: split, content: [], dimension: 0))
        let corrected = try ReasonTable.read(from: try #require(outcome.reasonTableDirectories["curec"]))
        let greedy = try ReasonTable.read(from: try #require(outcome.reasonTableDirectories["rl"]))
        #expect(corrected.entries.count == dataset.userCount + dataset.itemCount)
        #expect(corrected.itemEmbeddings.count == dataset.itemCount * corrected.dimension)
        let greedyBySubject = greedy.entriesBySubject()
        for entry in corrected.entries where !entry.text.isEmpty {
            let filtered = verifier.filterSentences(entry.text, context: rewarder.context(entry.subject))
            #expect(filtered.removed.isEmpty, "corrected reason of \(entry.subject) still fails: \(entry.text)")
            // The greedy reason was a candidate: when it survived the filters whole, the kept one
            // is at least as good (passing every check first, then reward).
            if let rl = greedyBySubject[entry.subject], !rl.text.isEmpty {
                let filtered = verifier.filterSentences(rl.text, context: rewarder.context(entry.subject))
                if filtered.removed.isEmpty, filtered.kept.allSatisfy(ReasonCorrection.isWellFormed) {
                    #expect(entry.checksPassed || !rl.checksPassed)
                    if entry.checksPassed == rl.checksPassed { #expect(entry.reward >= rl.reward - 1e-9) }
                }
            }
        }
        #expect(corrected.entries.allSatisfy { entry in
            entry.text.isEmpty || verifier.sentences(of: entry.text).allSatisfy(ReasonCorrection.isWellFormed)
        })

        // The report: Markdown with every variant, charts that parse as XML, results.json.
        let report = try String(contentsOfFile: outcome.reportDirectory + "/report.md", encoding: .utf8)
        #expect(report.contains("CURec pipeline report"))
        for variant in DownstreamVariant.all { #expect(report.contains(variant.label)) }
        #expect(report.contains(" ± "))
        #expect(report.contains("ID-only") && report.contains("raw-content"))
        for chart in ["pretrain-loss.svg", "grpo.svg", "ablation.svg"] {
            let data = try Data(contentsOf: URL(fileURLWithPath: outcome.reportDirectory + "/" + chart))
            #expect(XMLParser(data: data).parse(), "\(chart) is not well-formed")
        }
        let results = try JSONDecoder().decode([DownstreamResult].self,
                                               from: Data(contentsOf: URL(fileURLWithPath: outcome.reportDirectory + "/results.json")))
        #expect(results == outcome.downstream)
        // Every run keeps its per-user test NDCG@10, one value per test user, averaging to its mean.
        let testUsers = DownstreamSignificance.testUsers(of: environment.dataset)
        for run in results {
            let perUser = try #require(run.testNDCG10ByUser)
            #expect(perUser.count == testUsers.count)
            #expect(abs(perUser.reduce(0, +) / Double(perUser.count) - (run.test["ndcg@10"] ?? -1)) < 1e-9)
        }
        let significance = try JSONDecoder().decode(DownstreamSignificance.self,
            from: Data(contentsOf: URL(fileURLWithPath: outcome.reportDirectory + "/significance.json")))
        #expect(significance.users == testUsers)
        #expect(significance.comparisons.map(\.baseline) == ["content", "id"])
        #expect(report.contains("## Significance") && report.contains("Wilcoxon"))

        // A second run on the same workspace resumes: every stage is skipped, results are the same.
        var lines: [String] = []
        let again = try PipelineRunner(environment: environment, config: config, workspace: workspace,
                                       log: { lines.append($0) }).run()
        #expect(lines.contains { $0.contains("stage align: already done") })
        #expect(lines.contains { $0.contains("stage reasons-curec: already done") })
        #expect(again.downstream == outcome.downstream)
    }

    @Test func aRunStoppedAfterAStageContinuesFromThere() throws {
        let dataset = Synthetic.dataset()
        let environment = TestPipelineEnvironment(dataset: dataset, split: LeaveOneOutSplit(dataset))
        var config = tinyPipelineConfig()
        config.seeds = [3]
        let workspace = Self.workspace()
        defer { try? FileManager.default.removeItem(atPath: workspace) }
        let first = try PipelineRunner(environment: environment, config: config, workspace: workspace).run(through: .grpo)
        #expect(first.completedThrough == .grpo)
        #expect(first.stages.map(\.name).contains("grpo"))
        #expect(!first.stages.map(\.name).contains("reasons-base"))
        #expect(first.downstream.isEmpty)
        #expect(FileManager.default.fileExists(atPath: first.tunedModelDirectory + "/tokenizer.json"))
        var lines: [String] = []
        let rest = try PipelineRunner(environment: environment, config: config, workspace: workspace,
                                      log: { lines.append($0) }).run()
        #expect(rest.completedThrough == .report)
        #expect(lines.contains("stage grpo: already done (\(String(format: "%.1f", first.stages.first { $0.name == "grpo" }?.seconds ?? 0)) s), skipped"))
        #expect(lines.contains("stage reasons-curec: started"))
        #expect(rest.downstream.count == DownstreamVariant.all.count)

        // The same workspace with other settings is refused instead of mixing them.
        var other = config
        other.seeds = [4]
        #expect(throws: PipelineError.self) {
            try PipelineRunner(environment: environment, config: other, workspace: workspace).run()
        }
    }

    @Test func aCancelledRunStopsWithCancelled() throws {
        let dataset = Synthetic.dataset()
        let environment = TestPipelineEnvironment(dataset: dataset, split: LeaveOneOutSplit(dataset))
        let workspace = Self.workspace()
        defer { try? FileManager.default.removeItem(atPath: workspace) }
        #expect(throws: PipelineError.self) {
            try PipelineRunner(environment: environment, config: tinyPipelineConfig(), workspace: workspace,
                               isCancelled: { true }).run()
        }
    }

    @Test func theStageTableIsWellFormed() throws {
        let dataset = Synthetic.dataset()
        let environment = TestPipelineEnvironment(dataset: dataset, split: LeaveOneOutSplit(dataset))
        let runner = PipelineRunner(environment: environment, config: tinyPipelineConfig(), workspace: Self.workspace())
        let table = runner.stages
        #expect(PipelineStageDefinition.problem(in: table) == nil)
        // Every stop point has a stage, every reason table is written by one, and only the report is never recorded.
        for group in PipelineStage.allCases { #expect(table.contains { $0.group == group }, "no stage in \(group)") }
        for kind in ReasonTableKind.all { #expect(table.contains { $0.name == kind.stageName }) }
        #expect(table.filter { if case .everyRun = $0.recording { true } else { false } }.map(\.name) == ["report"])
        // Every reason-based variant reads a table that exists; keys are unique.
        #expect(Set(DownstreamVariant.all.map(\.key)).count == DownstreamVariant.all.count)
        for variant in DownstreamVariant.all {
            if case .reasons(let kind, _) = variant.features { #expect(ReasonTableKind.all.contains(kind)) }
        }
        // The check itself finds a stage that reads a later one.
        let misplaced = [PipelineStageDefinition("a", group: .align, inputs: ["b"]) { PipelineStageOutput() },
                         PipelineStageDefinition("b", group: .content) { PipelineStageOutput() }]
        #expect(PipelineStageDefinition.problem(in: misplaced) != nil)
    }

    @Test func badConfigsAreRefusedWithTheField() {
        var config = tinyPipelineConfig()
        config.seeds = []
        #expect(throws: PipelineError.self) { try config.validate() }
        config = tinyPipelineConfig()
        config.maxTokens = config.pretraining.context
        #expect(throws: PipelineError.self) { try config.validate() }
        config = tinyPipelineConfig()
        config.recommenderConfig = "[1]"
        #expect(throws: PipelineError.self) { try config.validate() }
    }
}
