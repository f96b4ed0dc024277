@testable import CURecData
import CURecModels
import CURecPipeline
import CURecRPC
import Foundation
import Testing
@testable import CURecServer

/// SmolLM2's chat template, as its GGUF file holds it.
private let chatTemplate =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"

/// A tiny Llama-shaped chat model (byte-level tokenizer with ChatML control tokens, the
/// SmolLM2 chat template, random weights) and a small catalogue to prompt it about.
private struct PairReasonFixture {
    let tokenizer: PretrainedTokenizer
    let config: LlamaConfig
    let dataset: RecDataset
    let corpus: CorpusBuilder

    init() throws {
        let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        let tokens = specials + ByteLevelAlphabet.scalarForByte.map { String(Character($0)) }
        var types = [Int32](repeating: 1, count: tokens.count)
        for i in 0..<specials.count { types[i] = 3 }
        tokenizer = try PretrainedTokenizer(PretrainedTokenizerDescription(
            model: "gpt2", preTokenizer: "smollm", tokens: tokens, merges: [], tokenTypes: types,
            bosTokenID: 1, eosTokenID: 2, unknownTokenID: 0, paddingTokenID: 2, chatTemplate: chatTemplate))
        config = LlamaConfig(layers: 2, width: 32, hidden: 64, heads: 2, kvHeads: 1, context: 1024,
                             vocab: tokenizer.vocabularySize)
        let titles = ["Orbit Station", "Pizza Night", "Quiet Harbor", "Machine Dawn", "Office Party", "Glass Garden"]
        let items = titles.enumerated().map { index, title in
            ItemInfo(externalID: "i\(index)", title: title, year: 1980 + 3 * index,
                     genres: [index % 2 == 0 ? "Sci-Fi" : "Comedy"])
        }
        var users: [UserInfo] = []
        var interactions: [Interaction] = []
        for user in 0..<4 {
            users.append(UserInfo(externalID: "u\(user)", age: 20 + 10 * user, gender: user % 2 == 0 ? "F" : "M",
                                  occupation: "writer"))
            for (step, item) in [user % 6, (user + 1) % 6, (user + 2) % 6, (user + 3) % 6].enumerated() {
                interactions.append(Interaction(user: Int32(user), item: Int32(item), rating: 4,
                                                timestamp: Int64(1_000 + 100 * user + step)))
            }
        }
        dataset = RecDataset(name: "pair-reasons", users: users, items: items, interactions: interactions)
        corpus = try CorpusBuilder(dataset: dataset, split: LeaveOneOutSplit(dataset))
    }

    /// A fresh copy of the same random model (seeded), as a served chat model.
    func loaded() throws -> ChatModelStore.Loaded {
        ChatModelStore.Loaded(model: try LlamaModel(config: config, seed: 5), tokenizer: tokenizer, version: "test")
    }

    func prompt(_ user: UInt32, _ item: UInt32) -> String {
        corpus.pairPrompt(user: Int32(bitPattern: user), item: Int32(bitPattern: item))
    }

    func generator(check: (@Sendable (UInt32, UInt32, String) -> String)?) -> ReasonGenerator {
        let artifacts = ArtifactStore(root: NSTemporaryDirectory() + "curec-pair-\(UUID().uuidString)")
        let corpus = self.corpus
        return ReasonGenerator(
            models: LanguageModelStore(artifacts: artifacts),
            prompt: { user, item in corpus.pairPrompt(user: Int32(bitPattern: user), item: Int32(bitPattern: item)) },
            check: check,
            chatModels: ChatModelStore(basePath: "/nonexistent.gguf", artifacts: artifacts))
    }

    /// What the pipeline writes for these prompts: its reason writer over a separate copy of
    /// the model, with the serving budget and penalty.
    func pipelineReasons(_ prompts: [String], temperature: Float = 0, topK: Int = 0, seed: UInt64 = 0) throws -> [String] {
        let model = LlamaReasonModel(backbone: LlamaBackbone(trainable: try LlamaModel(config: config, seed: 5),
                                                             tokenizer: tokenizer), adapters: nil)
        let writer = try ReasonWriter(languageModel: model, maxTokens: ReasonGenerator.chatReasonMaxTokens,
                                      batchSize: ReasonGenerator.chatReasonBatch,
                                      repetitionPenalty: ReasonGenerator.chatRepetitionPenalty)
        return try writer.write(prompts: prompts, temperature: temperature, topK: topK, seed: seed).map(\.reason)
    }
}

@Suite(.serialized) struct PairReasonWriterTests {
    @Test func servingWritesWhatThePipelineWritesForTheSameModelPromptAndSeed() throws {
        let fixture = try PairReasonFixture()
        let generator = fixture.generator(check: nil)
        let loaded = try fixture.loaded()
        let user: UInt32 = 1
        let items: [UInt32] = [0, 3, 5]
        let prompts = items.map { fixture.prompt(user, $0) }
        // The prompt is the corpus pair prompt in the chat format, as the pipeline renders it.
        let served = try generator.chatPromptTokens(loaded, user: user, item: 3, maxTokens: ReasonGenerator.chatReasonMaxTokens)
        let rendered = LlamaReasonModel(backbone: LlamaBackbone(trainable: try fixture.loaded().model, tokenizer: fixture.tokenizer),
                                        adapters: nil)
            .promptTokens(prompts[1], limit: fixture.config.context - ReasonGenerator.chatReasonMaxTokens)
        #expect(served.map(Int.init) == rendered)

        let greedy = try generator.chatReasons(loaded, user: user, items: items, shouldStop: { false })
        #expect(greedy == (try fixture.pipelineReasons(prompts)))
        let sampled = try generator.chatReasons(loaded, user: user, items: items, temperature: 0.9, topK: 40, seed: 2,
                                                shouldStop: { false })
        #expect(sampled == (try fixture.pipelineReasons(prompts, temperature: 0.9, topK: 40, seed: 2)))
        #expect(sampled.contains { !$0.isEmpty }, "the second pass writes a reason after the marker")
        #expect(sampled != greedy)
    }

    @Test func pairReasonsRegenerateWhatTheFilterEmptiesWithThePipelinesSampling() throws {
        let fixture = try PairReasonFixture()
        let user: UInt32 = 2
        let items: [UInt32] = [1, 4, 5]
        let prompts = items.map { fixture.prompt(user, $0) }
        // The filter keeps a reason only when it holds a "k" (what survives is marked): empty
        // results are written again, sampled like correction candidates with seeds 1, 2.
        let filter: @Sendable (UInt32, UInt32, String) -> String = { _, _, text in text.contains("k") ? "kept: " + text : "" }
        let generator = fixture.generator(check: filter)
        let pairs = PairReasons(generator: generator, chatModels: try #require(generator.chatModels),
                                cache: PairReasonCache(capacity: 8))
        let texts = try pairs.write(try fixture.loaded(), user: user, items: items)

        // The same attempts with the pipeline's writer.
        var expected = [String](repeating: "", count: items.count)
        var attemptsWithOpenItems = 0
        for attempt in 0..<PairReasons.defaultMaxAttempts {
            let open = expected.indices.filter { expected[$0].isEmpty }
            guard !open.isEmpty else { break }
            attemptsWithOpenItems += 1
            let written = attempt == 0
                ? try fixture.pipelineReasons(open.map { prompts[$0] })
                : try fixture.pipelineReasons(open.map { prompts[$0] }, temperature: PairReasons.retryTemperature,
                                              topK: PairReasons.retryTopK, seed: UInt64(attempt))
            for (slot, text) in zip(open, written) { expected[slot] = text.isEmpty ? "" : filter(user, items[slot], text) }
        }
        #expect(texts == expected)
        #expect(attemptsWithOpenItems >= 2, "the greedy attempt left an item to regenerate")
        #expect(texts.contains { $0.hasPrefix("kept: ") })
    }

    @Test func aStopRequestEndsWritingAsADeadline() throws {
        let fixture = try PairReasonFixture()
        let generator = fixture.generator(check: nil)
        let loaded = try fixture.loaded()
        let error = #expect(throws: ServingError.self) {
            try generator.chatReasons(loaded, user: 0, items: [2], shouldStop: { true })
        }
        guard case .deadlineExceeded = error else {
            Issue.record("expected deadlineExceeded, got \(String(describing: error))")
            return
        }
    }
}
