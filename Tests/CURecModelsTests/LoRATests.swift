@testable import CURecModels
import CURecTensor
import Foundation
import Testing

/// Low-rank adapters on the tiny random Llama of ``LlamaModelTests``.
///
/// The gradient check uses the same central differences, tolerance and reasoning as the whole-
/// model check there (mean cross-entropy in float32, ε = 1e-2, tolerance 5e-3 relative to the
/// largest numeric gradient of the tensor): with dropout, every loss evaluation replays the
/// same masks by restoring the dropout generator first.
@Suite("LoRA adapters")
struct LoRATests {
    static let config = LlamaModelTests.config

    /// Adapters on every projection with random `A` and `B` (std 0.2), so that both get
    /// gradients of a size well above float32 noise.
    static func lora(dropout: Float, targets: [LoRATarget] = LoRATarget.allCases, seed: UInt64 = 5) throws -> LlamaLoRA {
        let lora = try LlamaLoRA(config: LoRAConfig(rank: 3, alpha: 6, dropout: dropout, targets: targets),
                                 modelConfig: config, seed: seed)
        var rng = Xoshiro256(seed: seed &+ 1)
        rng.fillGaussian(lora.parameters.data, count: lora.parameterCount, std: 0.2)
        return lora
    }

    @Test("peft initialisation: A uniform in ±1/√in, B zero, so the adapted model equals the base")
    func initialisation() throws {
        let m = try LlamaModelTests.model()
        let before = try m.loss(inputs: LlamaModelTests.inputs, targets: LlamaModelTests.targets)
        let lora = try LlamaLoRA(config: LoRAConfig(rank: 4, alpha: 8, targets: [.query, .down]),
                                 modelConfig: Self.config, seed: 9)
        #expect(lora.layout.slots.count == 2 * Self.config.layers)
        #expect(lora.parameterCount == Self.config.layers * (4 * 32 + 32 * 4 + 4 * 48 + 32 * 4))
        for slot in lora.layout.slots {
            let a = try #require(lora.a(layer: slot.layer, target: slot.target))
            let bound = 1 / Float(slot.inFeatures).squareRoot()
            #expect(a.allSatisfy { abs($0) <= bound } && a.contains { abs($0) > bound / 2 })
            #expect(try #require(lora.b(layer: slot.layer, target: slot.target)).allSatisfy { $0 == 0 })
        }
        #expect(lora.a(layer: 0, target: .key) == nil)
        try lora.attach(to: m)
        lora.isTraining = true
        #expect(try m.loss(inputs: LlamaModelTests.inputs, targets: LlamaModelTests.targets) == before)
        // Same seed, same adapters.
        let again = try LlamaLoRA(config: lora.config, modelConfig: Self.config, seed: 9)
        #expect(again.parameters.values == lora.parameters.values)
    }

    @Test("gradients of A and B against central differences, without and with dropout", arguments: [Float(0), 0.3])
    func gradients(dropout: Float) throws {
        let m = try LlamaModelTests.model()
        m.setTrainable(false)
        let lora = try Self.lora(dropout: dropout)
        try lora.attach(to: m)
        lora.isTraining = true
        let replay = lora.dropoutGenerator
        lora.zeroGradients()
        try m.forwardBackward(inputs: LlamaModelTests.inputs, targets: LlamaModelTests.targets)
        let grads = lora.gradients.copy()
        func loss() -> Double {
            lora.dropoutGenerator = replay
            return Double((try? m.loss(inputs: LlamaModelTests.inputs, targets: LlamaModelTests.targets)) ?? .nan)
        }
        // The masks matter: another draw gives another loss.
        if dropout > 0 {
            let replayed = loss()
            #expect(Double(try m.loss(inputs: LlamaModelTests.inputs, targets: LlamaModelTests.targets)) != replayed)
        }
        for slot in lora.layout.slots {
            for (name, range) in [("A", slot.a), ("B", slot.b)] {
                let o = range.lowerBound
                let e = LlamaModelTests.check(lora.parameters.data + o, indices: stride(from: slot.layer % 2, to: range.count, by: 2),
                                              analytic: { grads[o + $0] }, loss: loss)
                #expect(e < LlamaModelTests.tolerance, "\(slot.target) layer \(slot.layer) \(name): \(e)")
            }
        }
        // The frozen base received no gradient.
        #expect(m.gradients?.values.allSatisfy { $0 == 0 } ?? true)
    }

    @Test("dropout: masks drop the requested fraction, are reproducible and only act in training")
    func dropout() throws {
        let N = 64, C = 1000, p: Float = 0.1
        var mask = [UInt8](repeating: 7, count: N * C), again = mask
        let t = LoRADropout.threshold(p)
        mask.withUnsafeMutableBufferPointer { LoRADropout.draw(mask: $0.baseAddress!, N: N, C: C, seed: 42, threshold: t) }
        again.withUnsafeMutableBufferPointer { LoRADropout.draw(mask: $0.baseAddress!, N: N, C: C, seed: 42, threshold: t) }
        #expect(mask == again)
        #expect(mask.allSatisfy { $0 <= 1 })
        let dropped = Double(mask.filter { $0 == 0 }.count) / Double(N * C)
        // Binomial standard deviation √(p(1−p)/n) = 1.2e-3: 5σ.
        #expect(abs(dropped - 0.1) < 6e-3, "dropped \(dropped)")
        #expect(abs(LoRADropout.keepScale(threshold: t) * (1 - Float(t) / 65536) - 1) < 1e-6)

        let m = try LlamaModelTests.model()
        let lora = try Self.lora(dropout: 0.5)
        try lora.attach(to: m)
        let eval1 = try m.loss(inputs: LlamaModelTests.inputs, targets: LlamaModelTests.targets)
        let eval2 = try m.loss(inputs: LlamaModelTests.inputs, targets: LlamaModelTests.targets)
        #expect(eval1 == eval2)
        lora.isTraining = true
        let train1 = try m.loss(inputs: LlamaModelTests.inputs, targets: LlamaModelTests.targets)
        #expect(train1 != eval1)
    }

    @Test("merge: folding s·B·A into the weights gives the adapted model's outputs")
    func merge() throws {
        let m = try LlamaModelTests.model()
        let lora = try Self.lora(dropout: 0.2)
        try lora.attach(to: m)
        let cache = try LlamaKVCache(config: Self.config, rows: 1, capacity: 8)
        let adapted = try m.step(cache: cache, rows: [0, 0, 0], tokens: [4, 5, 6], want: [2])
        lora.detach(from: m)
        #expect(m.blocks.allSatisfy { $0.query.adapter == nil && $0.down.adapter == nil })
        try lora.merge(into: m)
        let merged = try m.step(cache: try LlamaKVCache(config: Self.config, rows: 1, capacity: 8),
                                rows: [0, 0, 0], tokens: [4, 5, 6], want: [2])
        let worst = zip(adapted, merged).map { abs($0 - $1) }.max() ?? .infinity
        #expect(worst < 1e-4, "largest logit difference \(worst)")
        #expect(throws: LoRAError.self) {
            try lora.attach(to: LlamaModel(config: LlamaConfig(layers: 1, width: 32, hidden: 48, heads: 4, kvHeads: 2,
                                                                context: 16, vocab: 37), seed: 1))
        }
    }

    @Test("peft layout: names, shapes, Hugging Face rows of q/k lora_B, config; round trip")
    func peftRoundTrip() throws {
        let lora = try Self.lora(dropout: 0.05, targets: [.query, .key, .value, .down])
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lora-peft-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try lora.savePeft(directory: dir, baseModelNameOrPath: "HuggingFaceTB/SmolLM2-135M-Instruct")
        let file = try SafeTensorsFile.read(path: dir + "/adapter_model.safetensors")
        #expect(file.names.count == 2 * 4 * Self.config.layers)
        let qa = "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"
        let qb = "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"
        let kb = "base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight"
        let vb = "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"
        let db = "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"
        #expect(file.entry(qa)?.shape == [3, 32])
        #expect(file.entry(qb)?.shape == [32, 3])
        #expect(file.entry(kb)?.shape == [16, 3])
        #expect(file.entry(db)?.shape == [32, 3])
        #expect(file.entry("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight")?.shape == [3, 48])
        let hs = Self.config.headSize
        #expect(try file.floats(qa) == lora.a(layer: 1, target: .query))
        #expect(try file.floats(qb) == LlamaRowOrder.huggingFaceOrder(try #require(lora.b(layer: 1, target: .query)), columns: 3, headSize: hs))
        #expect(try file.floats(kb) == LlamaRowOrder.huggingFaceOrder(try #require(lora.b(layer: 0, target: .key)), columns: 3, headSize: hs))
        #expect(try file.floats(kb) != lora.b(layer: 0, target: .key))
        #expect(try file.floats(vb) == lora.b(layer: 0, target: .value))
        #expect(try file.floats(db) == lora.b(layer: 1, target: .down))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/adapter_config.json"))) as? [String: Any])
        #expect(json["peft_type"] as? String == "LORA")
        #expect(json["task_type"] as? String == "CAUSAL_LM")
        #expect(json["r"] as? Int == 3)
        #expect((json["lora_alpha"] as? NSNumber)?.doubleValue == 6)
        #expect((json["lora_dropout"] as? NSNumber)?.doubleValue == 0.05)
        #expect(json["target_modules"] as? [String] == ["q_proj", "k_proj", "v_proj", "down_proj"])
        #expect(json["bias"] as? String == "none")
        #expect(json["fan_in_fan_out"] as? Bool == false)
        #expect(json["base_model_name_or_path"] as? String == "HuggingFaceTB/SmolLM2-135M-Instruct")

        let back = try LlamaLoRA.loadPeft(directory: dir, modelConfig: Self.config)
        #expect(back.config == lora.config)
        #expect(back.parameters.values == lora.parameters.values)

        // Refusals name what is not supported and leave nothing half-loaded.
        var edited = json
        edited["use_dora"] = true
        try JSONSerialization.data(withJSONObject: edited).write(to: URL(fileURLWithPath: dir + "/adapter_config.json"))
        #expect(throws: LoRAError.unsupported("use_dora = true", file: dir + "/adapter_config.json")) {
            try LlamaLoRA.loadPeft(directory: dir, modelConfig: Self.config)
        }
        edited = json
        edited["target_modules"] = ["q_proj", "k_proj", "v_proj"]
        try JSONSerialization.data(withJSONObject: edited).write(to: URL(fileURLWithPath: dir + "/adapter_config.json"))
        #expect(throws: LoRAError.unexpectedTensor(name: "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight",
                                                   file: dir + "/adapter_model.safetensors")) {
            try LlamaLoRA.loadPeft(directory: dir, modelConfig: Self.config)
        }
        edited["target_modules"] = ".*proj"
        try JSONSerialization.data(withJSONObject: edited).write(to: URL(fileURLWithPath: dir + "/adapter_config.json"))
        #expect(throws: LoRAError.self) { try LlamaLoRA.loadPeft(directory: dir, modelConfig: Self.config) }
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: dir + "/adapter_config.json"))
        let wider = LlamaConfig(layers: 2, width: 64, hidden: 48, heads: 4, kvHeads: 2, context: 16, vocab: 37)
        #expect(throws: LoRAError.tensorShapeMismatch(name: "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                                                      expected: [3, 64], found: [3, 32], file: dir + "/adapter_model.safetensors")) {
            try LlamaLoRA.loadPeft(directory: dir, modelConfig: wider)
        }
    }
}
