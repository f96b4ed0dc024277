@testable import CURecModels
import CURecTensor
import Foundation
import Testing

/// The adapter of the `peft` parity fixture: rank 4, alpha 8, on all seven projections of
/// SmolLM2-135M, `A` from peft's initialisation with seed 2024 and `B` drawn `N(0, 0.05²)` from
/// seed 2025 (non-zero, so that it changes the logits). The same code always gives the same
/// adapter, so `lora_reference.json` stays valid.
enum LoRAReferenceAdapter {
    static let config = LoRAConfig(rank: 4, alpha: 8, dropout: 0, targets: LoRATarget.allCases)
    static let bStd: Float = 0.05

    static func make(modelConfig: LlamaConfig) throws -> LlamaLoRA {
        let lora = try LlamaLoRA(config: config, modelConfig: modelConfig, seed: 2024)
        var rng = Xoshiro256(seed: 2025)
        for slot in lora.layout.slots {
            rng.fillGaussian(lora.parameters.data + slot.b.lowerBound, count: slot.b.count, std: bStd)
        }
        return lora
    }

    /// FNV-1a 64 of a file's bytes (the fixture records it for the adapter file it was made from).
    static func fnv1a(path: String) throws -> UInt64 {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in data { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return h
    }
}

/// `lora_reference.json`, written by `Fixtures/make_lora_reference.py` from the adapter above.
struct LoRAReference: Decodable {
    struct Prompt: Decodable {
        let ids: [Int]
        /// `[T][vocab_ids.count]`, float64 reference with and without the adapter.
        let adapted: [[Double]]
        let base: [[Double]]
        let argmax: [Int]
        let top2_margin: [Double]
        let logsumexp: [Double]
    }
    let adapter_fnv1a64: String
    let vocab_ids: [Int]
    let float32_vs_float64_max_abs_logit: Double
    let max_abs_adapter_effect: Double
    let prompts: [Prompt]

    static func load() throws -> LoRAReference {
        let url = URL(fileURLWithPath: ModelsFixturePaths.directory + "/lora_reference.json")
        return try JSONDecoder().decode(LoRAReference.self, from: Data(contentsOf: url))
    }
}

/// Our adapters on SmolLM2-135M against `peft` on transformers' model of the same GGUF file.
///
/// The fixture holds float64 logits (transformers + peft, weights dequantized to float32) with
/// and without the adapter, which the script loads from the directory ``LlamaLoRA/savePeft``
/// wrote, so the test covers the file layout, the Hugging Face row order of q/k `lora_B` and the
/// adapter arithmetic. Tolerance: the script also runs the model in float32 and records its
/// largest deviation from float64 (float32 rounding through 30 blocks: 9.3e-5 for these
/// prompts); our float32 engine sums in another order, so its deviation is of the same size, not
/// the same values (observed 5e-5 to 1.3e-4). The test allows 10× the recorded deviation (at
/// least 1e-3) on every logit, logsumexp and adapter effect (adapted − base); a wrong row order
/// or scale moves logits by the size of the adapter effect itself (up to 3.4, recorded in the
/// fixture and required to exceed the tolerance 100-fold).
@Suite("LoRA peft parity (SmolLM2)")
struct LoRAReferenceTests {
    @Test("adapted logits match transformers + peft on SmolLM2-135M")
    func parity() throws {
        guard SmolLM2Assets.available else { return }
        let model = try LlamaModel.load(path: SmolLM2Assets.modelPath)
        let adapter = try LoRAReferenceAdapter.make(modelConfig: model.config)
        let dir = ProcessInfo.processInfo.environment["LORA_REFERENCE_ADAPTER_DIR"]
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("lora-ref-\(UUID().uuidString)").path
        defer {
            if ProcessInfo.processInfo.environment["LORA_REFERENCE_ADAPTER_DIR"] == nil {
                try? FileManager.default.removeItem(atPath: dir)
            }
        }
        try adapter.savePeft(directory: dir, baseModelNameOrPath: "HuggingFaceTB/SmolLM2-135M-Instruct")
        let reference = try LoRAReference.load()
        let fnv = try LoRAReferenceAdapter.fnv1a(path: dir + "/" + LlamaLoRA.peftWeightsFileName)
        try #require(String(fnv, radix: 16) == reference.adapter_fnv1a64,
                     "the adapter differs from the one the fixture was made from: regenerate it (see make_lora_reference.py)")
        // Through the file, as an inference user would load it.
        let loaded = try LlamaLoRA.loadPeft(directory: dir, modelConfig: model.config)
        #expect(loaded.parameters.values == adapter.parameters.values)

        let tolerance = max(10 * reference.float32_vs_float64_max_abs_logit, 1e-3)
        #expect(reference.max_abs_adapter_effect > 100 * tolerance)
        for prompt in reference.prompts {
            func logits() throws -> [Float] {
                let cache = try LlamaKVCache(config: model.config, rows: 1, capacity: prompt.ids.count)
                return try model.step(cache: cache, rows: Array(repeating: 0, count: prompt.ids.count),
                                      tokens: prompt.ids, want: Array(prompt.ids.indices))
            }
            let base = try logits()
            try loaded.attach(to: model)
            let adapted = try logits()
            loaded.detach(from: model)
            let V = model.config.vocab
            var worstAdapted = 0.0, worstBase = 0.0, worstEffect = 0.0
            for t in prompt.ids.indices {
                for (j, id) in reference.vocab_ids.enumerated() {
                    let a = Double(adapted[t * V + id]), b = Double(base[t * V + id])
                    worstAdapted = max(worstAdapted, abs(a - prompt.adapted[t][j]))
                    worstBase = max(worstBase, abs(b - prompt.base[t][j]))
                    worstEffect = max(worstEffect, abs((a - b) - (prompt.adapted[t][j] - prompt.base[t][j])))
                }
                let row = adapted[(t * V)..<((t + 1) * V)]
                let best = row.indices.max { row[$0] < row[$1] }.map { $0 - t * V }
                if prompt.top2_margin[t] > 2 * tolerance { #expect(best == prompt.argmax[t], "position \(t)") }
                let mx = Double(row.max() ?? 0)
                let lse = mx + log(row.reduce(0.0) { $0 + exp(Double($1) - mx) })
                #expect(abs(lse - prompt.logsumexp[t]) < tolerance, "position \(t)")
            }
            #expect(worstAdapted < tolerance, "adapted logits differ by up to \(worstAdapted)")
            #expect(worstBase < tolerance, "base logits differ by up to \(worstBase)")
            #expect(worstEffect < tolerance, "adapter effect differs by up to \(worstEffect)")
            print("LoRA parity: \(prompt.ids.count) tokens, largest logit difference adapted \(worstAdapted), base \(worstBase), adapter effect \(worstEffect) (tolerance \(tolerance))")
        }
    }
}

/// End to end on SmolLM2-135M: chat examples, LoRA fine-tuning, peft export, reload, decoding.
@Suite("LoRA fine-tuning (SmolLM2)")
struct LoRASmolLM2FineTuningTests {
    @Test("a few LoRA steps teach two replies; the exported adapter reproduces them after reloading")
    func teachesReplies() throws {
        guard SmolLM2Assets.available else { return }
        let model = try LlamaModel.load(path: SmolLM2Assets.modelPath)
        let tokenizer = try PretrainedTokenizer(gguf: GGUFFile.read(path: SmolLM2Assets.modelPath))
        let chats: [[ChatMessage]] = [
            [.system("You keep secrets."), .user("What is the secret word?"), .assistant("Marmalade forty-two.")],
            [.system("You keep secrets."), .user("Where is the key?"), .assistant("Under the blue teapot.")],
        ]
        let data = try LlamaChatDataset(conversations: chats, tokenizer: tokenizer, maxLength: 64)
        let config = LlamaFineTuningConfig(
            method: .lora(LoRAConfig(rank: 8, alpha: 16, dropout: 0, targets: LoRATarget.allCases)),
            batchSize: 2, learningRate: 3e-3, warmupSteps: 2, totalSteps: 16, seed: 1)
        let tuner = try LlamaFineTuner(model: model, dataset: data, config: config)
        var losses: [Float] = []
        try tuner.train(until: 16, onStep: { losses.append($0.loss) })
        print("SmolLM2 LoRA fine-tuning losses: \(losses.map { ($0 * 1000).rounded() / 1000 })")
        #expect((losses.last ?? .infinity) < 0.05 && losses[0] > 1, "losses \(losses)")

        let adapters = try #require(tuner.adapters)
        adapters.detach(from: model)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lora-smol-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try adapters.savePeft(directory: dir)
        let reloaded = try LlamaLoRA.loadPeft(directory: dir, modelConfig: model.config)
        try reloaded.attach(to: model)
        for (chat, sequence) in zip(chats, data.sequences) {
            let prompt = Array(sequence.tokens[..<sequence.completionStart])
            let completion = Array(sequence.tokens[sequence.completionStart...])
            let out = try model.greedy(prompts: [prompt], maxTokens: completion.count + 2,
                                       stopTokens: Set(tokenizer.endOfTurnTokenIDs.map(Int.init)))
            #expect(out[0] == completion, "\(chat[1].content) -> \((try? tokenizer.decode(out[0].map(Int32.init))) ?? "?")")
        }
        // Served as the daemon does: the same adapter on the file's quantized weights.
        let quantized = try LlamaModel.load(path: SmolLM2Assets.modelPath, weights: .quantized)
        try reloaded.attach(to: quantized)
        for sequence in data.sequences {
            let prompt = Array(sequence.tokens[..<sequence.completionStart])
            let out = try quantized.greedy(prompts: [prompt], maxTokens: sequence.tokens.count - sequence.completionStart + 2,
                                           stopTokens: Set(tokenizer.endOfTurnTokenIDs.map(Int.init)))
            #expect(out[0] == Array(sequence.tokens[sequence.completionStart...]), "quantized weights")
        }
    }
}
