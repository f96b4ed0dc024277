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
