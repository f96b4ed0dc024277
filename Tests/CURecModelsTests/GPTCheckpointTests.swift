import CURecModels
import CURecTensor
import Foundation
import Testing

@Suite("GPT checkpoints")
struct GPTCheckpointTests {
    struct Expected: Decodable { let tokens: [Int]; let logits: [Double] }

    @Test("a GPT-2 checkpoint written by numpy+safetensors gives the numpy logits to 1e-4")
    func loadsHuggingFaceCheckpoint() throws {
        let dir = GPTReferenceFixture.directory.appendingPathComponent("gpt2_tiny").path
        let model = try GPTModel.load(directory: dir)
        #expect(model.config == GPTConfig(layers: 2, heads: 4, width: 32, context: 16, vocab: 50))
        let url = GPTReferenceFixture.directory.appendingPathComponent("gpt2_tiny_expected.json")
        let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: url))
        let logits = try model.logits(inputs: [expected.tokens])
        #expect(logits.count == expected.logits.count)
        let worst = zip(logits, expected.logits).reduce(0.0) { max($0, abs(Double($1.0) - $1.1)) }
        #expect(worst < 1e-4)
    }

    @Test("save then load round-trips every weight exactly")
    func roundTrip() throws {
        let config = GPTConfig(layers: 2, heads: 2, width: 16, context: 8, vocab: 32)
        let model = try GPTModel(config: config, seed: 3)
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("gpt-ckpt-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try model.save(directory: dir)
        let loaded = try GPTModel.load(directory: dir)
        #expect(loaded.config == config)
        #expect(loaded.parameters.values == model.parameters.values)
        let file = try SafeTensorsFile.read(path: dir + "/model.safetensors")
        #expect(file.entry("h.1.attn.c_attn.weight")?.shape == [16, 48])
        #expect(file.entry("h.0.mlp.c_fc.weight")?.shape == [16, 64])
        #expect(file.entry("h.0.mlp.c_proj.weight")?.shape == [64, 16])
    }

    @Test("a missing or mis-shaped tensor is an error naming it and both shapes")
    func badCheckpoints() throws {
        let config = GPTConfig(layers: 1, heads: 2, width: 8, context: 4, vocab: 10)
        let model = try GPTModel(config: config, seed: 1)
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("gpt-bad-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try model.save(directory: dir)
        let path = dir + "/model.safetensors"
        let file = try SafeTensorsFile.read(path: path)
        var tensors: [(name: String, shape: [Int], data: [Float])] = []
        for n in file.names where n != "ln_f.bias" {
            let shape = file.entry(n)?.shape ?? []
            tensors.append((n, shape, try file.floats(n)))
        }
        let missing = dir + "/missing.safetensors"
        try SafeTensorsFile.write(path: missing, tensors: tensors, metadata: [:])
        #expect(throws: GPTError.missingTensor(name: "ln_f.bias", file: missing)) {
            try GPTModel.load(safetensors: missing, config: config)
        }
        tensors = tensors.map { t in
            t.name == "h.0.attn.c_attn.weight" ? (t.name, [24, 8], t.data) : t
        }
        tensors.append(("ln_f.bias", [8], [Float](repeating: 0, count: 8)))
        let wrong = dir + "/wrong.safetensors"
        try SafeTensorsFile.write(path: wrong, tensors: tensors, metadata: [:])
        do {
            _ = try GPTModel.load(safetensors: wrong, config: config)
            Issue.record("loading a mis-shaped tensor succeeded")
        } catch {
            #expect(error == .tensorShapeMismatch(name: "h.0.attn.c_attn.weight", expected: [8, 24], found: [24, 8]))
            #expect(error.description.contains("h.0.attn.c_attn.weight"))
            #expect(error.description.contains("[24, 8]") && error.description.contains("[8, 24]"))
        }
    }
}
