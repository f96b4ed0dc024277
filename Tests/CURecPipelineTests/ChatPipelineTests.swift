import CURecModels
import CURecTensor
import Foundation
import Testing
@testable import CURecData
@testable import CURecPipeline

/// SmolLM2's chat template, as its GGUF file holds it.
private let chatTemplate =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"

/// A tiny Llama-shaped chat model: a byte-level tokenizer with ChatML control tokens and the
/// SmolLM2 chat template, and random weights the fixture writes once to a weights file that
/// every load reads (so each load is the same "pretrained" model).
final class TinyChatModel: @unchecked Sendable {
    let tokenizer: PretrainedTokenizer
    let config: LlamaConfig
    let weightsPath: String

    init(seed: UInt64 = 11) throws {
        let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        var tokens = specials + ByteLevelAlphabet.scalarForByte.map { String(Character($0)) }
        let merges = ["Ġ t", "h e", "Ġt he", "Ġ a", "i n", "e r", "o n", "Ġ s"]
        tokens += ["Ġt", "he", "Ġthe", "Ġa", "in", "er", "on", "Ġs"]
        var types = [Int32](repeating: 1, count: tokens.count)
        for i in 0..<specials.count { types[i] = 3 }
        tokenizer = try PretrainedTokenizer(PretrainedTokenizerDescription(
            model: "gpt2", preTokenizer: "smollm", tokens: tokens, merges: merges, tokenTypes: types,
            bosTokenID: 1, eosTokenID: 2, unknownTokenID: 0, paddingTokenID: 2, chatTemplate: chatTemplate))
        config = LlamaConfig(layers: 2, width: 32, hidden: 64, heads: 2, kvHeads: 1, context: 1024,
                             vocab: tokenizer.vocabularySize)
        weightsPath = NSTemporaryDirectory() + "tiny-chat-\(UUID().uuidString).safetensors"
        try LlamaWeightsFile.save(try LlamaModel(config: config, seed: seed), path: weightsPath)
    }

    deinit { try? FileManager.default.removeItem(atPath: weightsPath) }

    func load() throws -> LlamaModel {
        let model = try LlamaModel(config: config, seed: 0)
        try LlamaWeightsFile.load(path: weightsPath, into: model)
        return model
    }

    func backbone() throws -> LlamaBackbone { LlamaBackbone(trainable: try load(), tokenizer: tokenizer) }
}

/// The test environment with the tiny chat model as its pretrained LM.
struct ChatTestEnvironment: PipelineEnvironment {
    let base: TestPipelineEnvironment
    let chat: TinyChatModel

    var dataset: RecDataset { base.dataset }
    var split: LeaveOneOutSplit { base.split }
    func makeEmbedder() throws -> any ReasonEmbedder { try base.makeEmbedder() }
    func trainRewardModel(itemFeatures: [Float], dimension: Int, config: String, progress: @escaping (Int, Int) -> Void,
                          isCancelled: @escaping () -> Bool) throws -> any CollaborativeScorer {
        try base.trainRewardModel(itemFeatures: itemFeatures, dimension: dimension, config: config, progress: progress,
                                  isCancelled: isCancelled)
    }
    func trainRecommender(_ run: RecommenderRun, progress: @escaping (Int, Int, [String: Double]) -> Void,
                          isCancelled: @escaping () -> Bool) throws -> any RecommenderScoring {
        try base.trainRecommender(run, progress: progress, isCancelled: isCancelled)
    }
    func loadChatModel(weights: LlamaWeightFormat) throws -> (model: LlamaModel, tokenizer: PretrainedTokenizer) {
        (try chat.load(), chat.tokenizer)
    }
}

func tinyChatPipelineConfig() -> PipelineConfig {
    var config = tinyPipelineConfig()
    config.languageModel = .chat
    config.decodeQuantized = false
    config.alignment.steps = 6
    config.alignment.batch = 2
    config.alignment.maxLength = 900
    config.alignment.heldOut = 4
    config.alignment.examples = 16
    config.alignment.learningRate = 5e-3
    config.alignment.warmupSteps = 1
    config.alignment.checkpointEvery = 2
    config.chatMaxTokens = 24
    config.reasonUsers = 5
    config.reasonItems = 6
    config.seeds = [1]
    return config
}

@Suite(.serialized) struct ChatPipelineTests {
    static func workspace() -> String { NSTemporaryDirectory() + "curec-chat-pipeline-\(UUID().uuidString)" }

    static func examples() throws -> [CorpusExample] {
        let dataset = Synthetic.dataset()
        return try CorpusBuilder(dataset: dataset, split: LeaveOneOutSplit(dataset)).build()
    }

    @Test func theChatFormatPutsTheFactsInTheUserTurnAndTheReasonInTheAnswer() throws {
        let example = try #require(try Self.examples().first { $0.task == .pair })
        let turns = ChatCorpus.conversation(example, maxSteps: 2)
        #expect(turns.map(\.role) == [.system, .user, .assistant])
        #expect(!turns[1].content.contains("###"))
        #expect(turns[1].content.contains(example.prompt))
        #expect(turns[2].content.hasPrefix(CorpusExample.Marker.reasoning + "\n1. "))
        #expect(!turns[2].content.contains("3. "))
        #expect(ReasonWriter.extractReason(from: turns[2].content) == example.reason)
    }

    @Test(arguments: [AlignmentFineTuningConfig.Method.lora, .full])
    func alignmentLowersTheHeldOutPerplexityOfTheAnswers(method: AlignmentFineTuningConfig.Method) throws {
        let chat = try TinyChatModel()
        let backbone = try chat.backbone()
        var config = tinyChatPipelineConfig().alignment
        config.method = method
        config.steps = 12
        config.learningRate = method == .lora ? 2e-2 : 5e-3
        let result = try AlignmentFineTuning.run(examples: try Self.examples(), backbone: backbone, config: config)
        #expect(result.heldOutExamples > 0 && result.heldOutTokens > 0)
        #expect(result.losses.count == config.steps)
        #expect(result.alignedHeldOutLoss < result.baseHeldOutLoss,
                "aligned \(result.alignedHeldOutLoss) vs base \(result.baseHeldOutLoss)")
        #expect((method == .lora) == (result.adapters != nil))
        // LoRA leaves the backbone itself as it was: without the adapters it scores like the base.
        if method == .lora {
            let heldOut = try AlignmentFineTuning.dataset(Array(try Self.examples().prefix(3)), tokenizer: chat.tokenizer,
                                                          maxLength: config.maxLength, reasoningSteps: config.reasoningSteps)
            let untouched = try AlignmentFineTuning.heldOutLoss(heldOut, model: try chat.load(), batch: 2)
            let after = try AlignmentFineTuning.heldOutLoss(heldOut, model: backbone.trainable, batch: 2)
            #expect(abs(untouched.loss - after.loss) < 1e-6)
        }
    }

    @Test func anAnswerCutBeforeTheReasonGetsItsReasonInASecondPass() throws {
        let chat = try TinyChatModel()
        let model = LlamaReasonModel(backbone: try chat.backbone(), adapters: nil)
        let prompt = "### Task: pair\n### Instruction\nExplain why this user would like this item.\nItem: \"Alien\" (1979).\n### Reasoning\n"
        var writer = try ReasonWriter(languageModel: model, maxTokens: 6, batchSize: 2)
        writer.reasonTokens = 0
        let cut = try writer.write(prompts: [prompt, prompt])
        // Six tokens of a random model never reach the marker.
        #expect(cut.allSatisfy { !$0.completion.contains(CorpusExample.Marker.reason + "\n") })
        writer.reasonTokens = 10
        let completed = try writer.write(prompts: [prompt, prompt])
        for answer in completed {
            #expect(answer.completion.contains(CorpusExample.Marker.reason + "\n"), "\(answer.completion)")
            #expect(answer.tokens.count <= 6 + writer.languageModel.encodeText("\n### Reason\n").count + 10)
        }
    }

    @Test func servedPairReasonsAreFilteredAndWrittenAgainWhenNothingSurvives() throws {
        let dataset = Synthetic.dataset()
        let split = LeaveOneOutSplit(dataset)
        let chat = try TinyChatModel()
        let writer = try ReasonWriter(languageModel: LlamaReasonModel(backbone: try chat.backbone(), adapters: nil),
                                      maxTokens: 16, batchSize: 4)
        let builder = try CorpusBuilder(dataset: dataset, split: split)
        let pairs = [ReasonPair(user: 0, item: 1), ReasonPair(user: 1, item: 2)]
        let prompts = pairs.map { builder.pairPrompt(user: $0.user, item: $0.item) }
        let template = try #require(builder.templatePairReason(user: 1, item: 2))
        // The first pair's greedy answer names a film that does not exist; the second's is true.
        let greedy = ["You loved \"No Such Film\" (1901).", template]
        var pairWriter = PairReasonWriter(writer: writer, verifier: ReasonVerifier(dataset: dataset), split: split)
        pairWriter.maxAttempts = 1
        #expect(try pairWriter.reasons(pairs: pairs, prompts: prompts, greedy: greedy) == ["", template])

        // With more attempts only the empty pair is written again, sampled with seeds 1, 2.
        pairWriter.maxAttempts = 3
        let texts = try pairWriter.reasons(pairs: pairs, prompts: prompts, greedy: greedy)
        var expected = ""
        for attempt in 1..<3 where expected.isEmpty {
            let answer = try writer.write(prompts: [prompts[0]], temperature: PairReasonWriter.retryTemperature,
                                          topK: PairReasonWriter.retryTopK, seed: UInt64(attempt))[0]
            expected = pairWriter.filtered(answer.reason, pair: pairs[0])
        }
        #expect(texts == [expected, template])
    }

    @Test func grpoTrainsACopyOfTheAlignedAdaptersAndLeavesTheReferenceAlone() throws {
        let chat = try TinyChatModel()
        let backbone = try chat.backbone()
        let lora = LoRAConfig(rank: 4, alpha: 8, dropout: 0)
        let aligned = try LlamaReasonModel(backbone: backbone, adapters: nil).trainableCopy(config: lora, seed: 3)
        // Non-zero B, so the aligned model differs from the base.
        let alignedAdapters = try #require(aligned.adapters)
        for i in 0..<alignedAdapters.parameterCount { alignedAdapters.parameters.data[i] += 0.01 * Float((i % 7) - 3) }
        let before = alignedAdapters.parameters.values
        let policy = try aligned.trainableCopy(config: lora, seed: 4)
        #expect(policy.adapters?.parameters.values == before)
        let writer = try ReasonWriter(languageModel: policy, maxTokens: 12, batchSize: 4)
        let prompts = try Self.examples().prefix(3).map { writer.promptTokens($0.promptText) }
        var config = GRPOConfig()
        config.steps = 2
        config.promptsPerStep = 2
        config.groupSize = 3
        config.maxTokens = 12
        config.learningRate = 1e-2
        // Reward: how many of the letter "e" the completion holds (any signal that differs in a group).
        let result = try GRPO.run(policy: policy, reference: aligned, prompts: prompts, stopSequences: writer.stopSequences,
                                  config: config,
                                  reward: { samples in samples.map { Float(writer.written($0.completion).completion.filter { $0 == "e" }.count) } })
        #expect(result.logs.count == 2)
        #expect(abs(result.logs[0].kl) < 1e-4, "the policy starts equal to the reference")
        #expect(result.logs.allSatisfy { $0.meanLength > 0 && $0.kl.isFinite })
        #expect(alignedAdapters.parameters.values == before, "the reference changed")
        #expect(policy.adapters?.parameters.values != before, "the policy did not train")
        // The policy and the reference now disagree on the same completion.
        let sample = [prompts[0]], continuation = [Array(prompts[1].prefix(5))]
        let p = try policy.logProbabilities(prompts: sample, continuations: continuation)
        let r = try aligned.logProbabilities(prompts: sample, continuations: continuation)
        #expect(p != r)
    }

    @Test func everyStageRunsOnTheChatModelAndEachStopPointResumes() throws {
        let dataset = Synthetic.dataset()
        let environment = ChatTestEnvironment(base: TestPipelineEnvironment(dataset: dataset, split: LeaveOneOutSplit(dataset)),
                                              chat: try TinyChatModel())
        let config = tinyChatPipelineConfig()
        let workspace = Self.workspace()
        defer { try? FileManager.default.removeItem(atPath: workspace) }
        // Stop after every stop point in turn; each run continues the one before.
        var recorded: [String] = []
        for stop in PipelineStage.allCases {
            var lines: [String] = []
            let outcome = try PipelineRunner(environment: environment, config: config, workspace: workspace,
                                             log: { lines.append($0) }).run(through: stop)
            #expect(outcome.completedThrough == stop)
            for name in recorded { #expect(lines.contains { $0.hasPrefix("stage \(name): already done") }, "\(name) ran again") }
            recorded = outcome.stages.map(\.name)
        }
        let outcome = try PipelineRunner(environment: environment, config: config, workspace: workspace).run()
        let align = try #require(outcome.stages.first { $0.name == "align" })
        #expect((align.metrics["base_held_out_perplexity"] ?? 0) > 1 && (align.metrics["held_out_perplexity"] ?? 0) > 1)
        let grpo = try #require(outcome.stages.first { $0.name == "grpo" })
        for curve in ["reward", "kl", "length"] { #expect(grpo.curves[curve]?.count == config.grpo.steps) }
        #expect(FileManager.default.fileExists(atPath: outcome.alignedModelDirectory + "/adapter_model.safetensors"))
        #expect(FileManager.default.fileExists(atPath: outcome.tunedModelDirectory + "/adapter_config.json"))
        #expect(outcome.downstream.count == DownstreamVariant.all.count * config.seeds.count)

        // Reasons for the chosen subjects only; corrected ones pass the sentence filter.
        let corrected = try ReasonTable.read(from: try #require(outcome.reasonTableDirectories[ReasonTableKind.curec.key]))
        #expect(corrected.entries.count == config.reasonUsers + config.reasonItems)
        let verifier = ReasonVerifier(dataset: dataset)
        let builder = try CorpusBuilder(dataset: dataset, split: LeaveOneOutSplit(dataset))
        let rewarder = ReasonRewarder(statistics: builder.statistics, verifier: verifier, embedder: KeywordEmbedder(),
                                      scorer: ProfileScorer(dataset: dataset, split: LeaveOneOutSplit(dataset), content: [], dimension: 0))
        for entry in corrected.entries where !entry.text.isEmpty {
            #expect(verifier.filterSentences(entry.text, context: rewarder.context(entry.subject)).removed.isEmpty)
        }
        let report = try String(contentsOfFile: outcome.reportDirectory + "/report.md", encoding: .utf8)
        #expect(report.contains("SmolLM2") && report.contains("base model"))
        for variant in DownstreamVariant.all { #expect(report.contains(variant.label)) }

        // Reason quality on pairs the served variant recommends, each source measured on the
        // same pairs, with the untuned model as the fluency judge.
        #expect(outcome.stages.contains { $0.name == "reason-quality" })
        let quality = try JSONDecoder().decode(ReasonQualityReport.self,
            from: Data(contentsOf: URL(fileURLWithPath: outcome.reportDirectory + "/reason-quality.json")))
        #expect(quality.rows.count == 5)
        #expect(quality.rows.map(\.source).last == "corpus templates")
        let pairs = try #require(quality.rows.first?.pairs)
        #expect(pairs > 0 && pairs <= config.qualityPairs)
        #expect(quality.rows.allSatisfy { $0.pairs == pairs })
        #expect(quality.examples.count == min(10, pairs))
        // Served reasons went through the sentence filter: every non-empty one passes.
        let served = try #require(quality.rows.first { $0.source.hasPrefix("served") })
        #expect(abs(served.passRate - Double(served.nonEmpty) / Double(pairs)) < 1e-9)
        #expect(quality.rows.filter { $0.nonEmpty > 0 }.allSatisfy { $0.perplexity.map { $0 > 1 } ?? false })
        #expect(report.contains("## Reason quality"))
        // The pairs are items the served model recommends to that user.
        let lists = try JSONDecoder().decode([PipelineRunner.ServedList].self, from: Data(contentsOf:
            URL(fileURLWithPath: workspace + "/downstream/served.json")))
        #expect(lists.count == dataset.userCount)
        #expect(lists.allSatisfy { $0.items.count == config.qualityListLength })
        for example in quality.examples {
            let user = try #require(dataset.users.firstIndex { $0.externalID == example.user })
            let item = try #require(dataset.items.firstIndex { $0.externalID == example.item })
            #expect(lists[user].user == Int32(user) && lists[user].items.contains(Int32(item)))
        }

        // Each variant with reasons chose its features on validation, and used them on every seed.
        let choices = try JSONDecoder().decode([DownstreamResult].self, from: Data(contentsOf:
            URL(fileURLWithPath: workspace + "/downstream/feature-candidates.json")))
        for variant in DownstreamVariant.all {
            let candidates = choices.filter { $0.variant == variant.key }
            guard case .reasons = variant.features else {
                #expect(candidates.isEmpty)
                #expect(outcome.downstream.filter { $0.variant == variant.key }.allSatisfy { $0.features == nil })
                continue
            }
            #expect(Set(candidates.compactMap(\.features)) == Set(ReasonFeatureUse.allCases.map(\.rawValue)))
            let best = try #require(candidates.max { $0.validationNDCG10 < $1.validationNDCG10 })
            for run in outcome.downstream where run.variant == variant.key {
                let chosen = try #require(run.features)
                let score = try #require(candidates.first { $0.features == chosen }?.validationNDCG10)
                #expect(score == best.validationNDCG10, "\(variant.key) kept \(chosen) over \(best.features ?? "")")
            }
        }
        #expect(report.contains("chosen on validation only"))
    }

    @Test func anAlignmentInterruptedMidwayContinuesFromItsCheckpoint() throws {
        let dataset = Synthetic.dataset()
        let environment = ChatTestEnvironment(base: TestPipelineEnvironment(dataset: dataset, split: LeaveOneOutSplit(dataset)),
                                              chat: try TinyChatModel())
        let config = tinyChatPipelineConfig()
        let workspace = Self.workspace()
        defer { try? FileManager.default.removeItem(atPath: workspace) }
        // Cancel once alignment has passed its first checkpoint (step 2 of 6).
        let steps = Counter()
        #expect(throws: PipelineError.self) {
            try PipelineRunner(environment: environment, config: config, workspace: workspace,
                               progress: { stage, step, _, _ in if stage == "align" { steps.value = max(steps.value, step) } },
                               isCancelled: { steps.value >= 3 }).run(through: .align)
        }
        let outcome = try PipelineRunner(environment: environment, config: config, workspace: workspace).run(through: .align)
        let align = try #require(outcome.stages.first { $0.name == "align" })
        #expect((align.metrics["resumed_from_step"] ?? 0) >= 2)
        #expect(align.curves["loss"]?.count == config.alignment.steps - Int(align.metrics["resumed_from_step"] ?? 0))
        #expect(!FileManager.default.fileExists(atPath: workspace + "/align-checkpoints"))
    }
}

final class Counter: @unchecked Sendable { var value = 0 }
