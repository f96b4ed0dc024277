@testable import CURecModels
import CURecTensor
import Foundation
import Testing

/// The fine-tuner on the tiny random Llama of ``LlamaModelTests`` (and the chat data set on the
/// SmolLM2 tokenizer).
@Suite("Llama fine-tuner")
struct LlamaFineTunerTests {
    static let config = LlamaModelTests.config

    /// Twelve random sequences of 4 to 15 tokens whose completion is a copy of the prompt's
    /// start, so there is something to learn.
    static func dataset() throws -> LlamaChatDataset {
        var rng = Xoshiro256(seed: 77)
        var sequences: [LlamaTrainingSequence] = []
        for _ in 0..<12 {
            let prompt = 2 + Int(rng.next() % 6)
            let completion = 2 + Int(rng.next() % 6)
            var tokens = (0..<prompt).map { _ in 1 + Int(rng.next() % 36) }
            tokens += (0..<completion).map { tokens[$0 % prompt] }
            sequences.append(try LlamaTrainingSequence(tokens: tokens, completionStart: prompt))
        }
        return try LlamaChatDataset(sequences: sequences, paddingToken: 0)
    }

    static func tuner(_ method: LlamaFineTuningMethod, seed: UInt64 = 3, learningRate: Float = 1e-2) throws -> LlamaFineTuner {
        // Weights of std 0.2 (not the initialisation's 0.02), so that the frozen tied head can
        // express confident predictions and the adapters have something to steer.
        let model = try LlamaModelTests.model(seed: 11)
        let c = LlamaFineTuningConfig(method: method, batchSize: 4, learningRate: learningRate, minLearningRate: 1e-3,
                                      warmupSteps: 3, totalSteps: 20, weightDecay: 0.01, seed: seed)
        return try LlamaFineTuner(model: model, dataset: try dataset(), config: c)
    }

    static let lora = LlamaFineTuningMethod.lora(LoRAConfig(rank: 4, alpha: 8, dropout: 0.1, targets: LoRATarget.allCases))

    static func temporaryDirectory() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("finetune-\(UUID().uuidString)").path
    }

    @Test("batches: rows padded to the longest, loss only on completion tokens")
    func batches() throws {
        let t = try Self.tuner(.full)
        let (inputs, targets, lossTokens, tokens) = t.batch([0, 1, 2])
        let seqs = [0, 1, 2].map { t.dataset.sequences[$0] }
        let T = seqs.map(\.tokens.count).max()! - 1
        #expect(inputs.allSatisfy { $0.count == T } && targets.allSatisfy { $0.count == T })
        for (b, s) in seqs.enumerated() {
            let n = s.tokens.count - 1
            #expect(Array(inputs[b][..<n]) == Array(s.tokens[..<n]))
            #expect(inputs[b][n...].allSatisfy { $0 == 0 })
            for t in 0..<T {
                let expected = t + 1 >= s.completionStart && t < n ? s.tokens[t + 1] : -1
                #expect(targets[b][t] == expected, "row \(b) position \(t)")
            }
        }
        #expect(lossTokens == seqs.reduce(0) { $0 + $1.completionCount })
        #expect(tokens == seqs.reduce(0) { $0 + $1.tokens.count - 1 })
        // Every example once per epoch, then a new order.
        var seen: [Int] = []
        for _ in 0..<3 { seen += t.nextBatch() }
        #expect(Set(seen) == Set(0..<12) && seen.count == 12 && t.progress.epoch == 0)
        _ = t.nextBatch()
        #expect(t.progress.epoch == 1 && t.progress.cursor == 4)
    }

    @Test("LoRA: the loss falls, only the adapters change, the base stays frozen")
    func loraTraining() throws {
        let t = try Self.tuner(Self.lora)
        let base = t.model.parameters.copy()
        let lora = try #require(t.adapters)
        let initial = lora.parameters.copy()
        #expect(t.trainableParameterCount == lora.parameterCount)
        var losses: [Float] = []
        try t.train(until: 40, onStep: { losses.append($0.loss) })
        #expect(losses.count == 40 && t.progress.step == 40)
        let first = losses.prefix(3).reduce(0, +) / 3, last = losses.suffix(3).reduce(0, +) / 3
        #expect(last < first * 0.8, "loss \(first) -> \(last)")
        #expect(t.model.parameters.values == base.values)
        #expect(lora.parameters.values != initial.values)
        #expect(!lora.isTraining)
        #expect(t.optimizer.step == 40)
    }

    @Test("full fine-tuning: the loss falls and the model's weights change")
    func fullTraining() throws {
        let t = try Self.tuner(.full)
        let base = t.model.parameters.copy()
        #expect(t.adapters == nil && t.trainableParameterCount == t.model.layout.total)
        var losses: [Float] = []
        try t.train(until: 30, onStep: { losses.append($0.loss) })
        let first: Float = losses.prefix(3).reduce(0, +), last: Float = losses.suffix(3).reduce(0, +)
        #expect(last < first * 0.8, "\(losses)")
        #expect(t.model.parameters.values != base.values)
    }

    @Test("resuming: N steps straight equal N/2, save, load into a new run, N/2", arguments: [Self.lora, .full])
    func resume(method: LlamaFineTuningMethod) throws {
        let steps = 10
        let straight = try Self.tuner(method)
        var straightLosses: [Float] = []
        try straight.train(until: steps, onStep: { straightLosses.append($0.loss) })

        let dir = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try Self.tuner(method)
        var losses: [Float] = []
        try first.train(until: steps / 2, onStep: { losses.append($0.loss) })
        try first.saveCheckpoint(directory: dir)
        #expect(LlamaFineTuner.hasCheckpoint(directory: dir))
        // One more step after saving must not leak into the resumed run.
        try first.step()

        let second = try Self.tuner(method)
        try second.loadCheckpoint(directory: dir)
        #expect(second.progress == LlamaFineTuningProgress(step: steps / 2, epoch: 1, cursor: 8,
                                                          order: second.progress.order))
        try second.train(until: steps, onStep: { losses.append($0.loss) })
        #expect(losses == straightLosses)
        let trained = { (t: LlamaFineTuner) in (t.adapters?.parameters ?? t.model.parameters).values }
        #expect(trained(second) == trained(straight))
        #expect(second.model.parameters.values == straight.model.parameters.values)
        #expect(second.optimizer.m.values == straight.optimizer.m.values)
        #expect(second.optimizer.v.values == straight.optimizer.v.values)
        #expect(second.optimizer.step == straight.optimizer.step)
        #expect(second.progress == straight.progress)
    }

    @Test("cancellation between steps saves a checkpoint; checkpoints of another run are refused")
    func cancellation() throws {
        let dir = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let t = try Self.tuner(Self.lora)
        var calls = 0
        #expect(throws: LlamaFineTuningError.cancelled) {
            try t.train(until: 10, checkpointDirectory: dir, checkpointEvery: 2, isCancelled: {
                calls += 1
                return calls > 3
            })
        }
        #expect(t.progress.step == 3)
        let entries = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(entries == ["latest", "step-00000003"])
        // Saving the same step again writes a new folder and then names it: the one `latest`
        // names is never replaced in place.
        try t.saveCheckpoint(directory: dir)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["latest", "step-00000003.1"])
        #expect(try String(contentsOfFile: dir + "/latest", encoding: .utf8) == "step-00000003.1")
        let resumed = try Self.tuner(Self.lora)
        try resumed.loadCheckpoint(directory: dir)
        #expect(resumed.progress.step == 3)

        let otherSeed = try Self.tuner(Self.lora, seed: 4)
        #expect(throws: LlamaFineTuningError.self) { try otherSeed.loadCheckpoint(directory: dir) }
        let full = try Self.tuner(.full)
        #expect(throws: LlamaFineTuningError.self) { try full.loadCheckpoint(directory: dir) }
        #expect(full.progress.step == 0)
        #expect(throws: LlamaFineTuningError.self) { try full.loadCheckpoint(directory: dir + "/none") }
    }

    @Test("refusals: invalid configs, examples too long for the context, bad sequences")
    func refusals() throws {
        let model = try LlamaModel(config: Self.config, seed: 1)
        let data = try Self.dataset()
        #expect(throws: LlamaFineTuningError.self) {
            try LlamaFineTuner(model: model, dataset: data, config: LlamaFineTuningConfig(batchSize: 0))
        }
        #expect(throws: LlamaFineTuningError.adapters(.invalidConfig("dropout must be in [0, 1), got 1.0"))) {
            try LlamaFineTuner(model: model, dataset: data, config: LlamaFineTuningConfig(method: .lora(LoRAConfig(dropout: 1))))
        }
        let long = try LlamaChatDataset(sequences: [LlamaTrainingSequence(tokens: Array(repeating: 1, count: 18), completionStart: 3)])
        #expect(throws: LlamaFineTuningError.exampleTooLong(index: 0, tokens: 18, maxLength: 17)) {
            try LlamaFineTuner(model: model, dataset: long, config: LlamaFineTuningConfig())
        }
        #expect(throws: LlamaFineTuningError.self) { try LlamaTrainingSequence(tokens: [1, 2], completionStart: 2) }
        #expect(throws: LlamaFineTuningError.noExamples) { try LlamaChatDataset(sequences: []) }
    }

    @Test("chat examples: ChatML rendering, completion through <|im_end|>, overlong policies")
    func chatExamples() throws {
        guard SmolLM2Assets.available else { return }
        let tokenizer = try PretrainedTokenizer(gguf: GGUFFile.read(path: SmolLM2Assets.modelPath))
        let chat: [ChatMessage] = [.system("Be brief."), .user("Name a colour."), .assistant("Blue.")]
        let data = try LlamaChatDataset(conversations: [chat], tokenizer: tokenizer, maxLength: 64)
        let s = data.sequences[0]
        let full = try tokenizer.encode(conversation: chat, addingGenerationPrompt: false).map(Int.init)
        let prompt = try tokenizer.encode(conversation: Array(chat.dropLast()), addingGenerationPrompt: true).map(Int.init)
        #expect(s.tokens == Array(full.dropLast()))        // the newline after <|im_end|> is not trained
        #expect(s.completionStart == prompt.count)
        #expect(try tokenizer.decode(s.tokens[s.completionStart...].map(Int32.init)) == "Blue.<|im_end|>")
        #expect(tokenizer.endOfTurnTokenIDs.contains(Int32(s.tokens.last!)))
        #expect(data.paddingToken >= 0)

        let n = s.tokens.count
        #expect(throws: LlamaFineTuningError.exampleTooLong(index: 1, tokens: n, maxLength: n - 1)) {
            try LlamaChatDataset(conversations: [[.system("s"), .user("x"), .assistant("y")], chat], tokenizer: tokenizer, maxLength: n - 1)
        }
        let skipped = try LlamaChatDataset(conversations: [[.system("s"), .user("x"), .assistant("y")], chat], tokenizer: tokenizer,
                                           maxLength: n - 1, overlong: .skip)
        #expect(skipped.sequences.count == 1 && skipped.skipped == [1])
        let cut = try LlamaChatDataset(conversations: [chat], tokenizer: tokenizer, maxLength: n - 5, overlong: .truncatePrompt)
        #expect(cut.truncated == [0])
        #expect(cut.sequences[0].tokens == Array(s.tokens.suffix(n - 5)))
        #expect(cut.sequences[0].completionStart == s.completionStart - 5)
        #expect(throws: LlamaFineTuningError.self) {
            try LlamaChatDataset(conversations: [chat], tokenizer: tokenizer, maxLength: s.completionCount, overlong: .truncatePrompt)
        }
        #expect(throws: LlamaFineTuningError.self) {
            try LlamaChatDataset(conversations: [[.user("only a question")]], tokenizer: tokenizer, maxLength: 64)
        }
    }
}
