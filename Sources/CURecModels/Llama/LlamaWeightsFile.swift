import CURecTensor
import Foundation

/// Every weight of a Llama model as one safetensors file, tensors named as in GGUF files
/// (`token_embd.weight`, `blk.N.attn_q.weight`, ...), matrices `[out, in]` in GGUF row order.
/// A fully fine-tuned model is published this way and loaded over a base model of the same shape.
public enum LlamaWeightsFile {
    /// The file name used in a model version directory.
    public static let fileName = "model.safetensors"

    /// Writes `model`'s weights to `path` (atomically), with `metadata` in the header.
    public static func save(_ model: LlamaModel, path: String, metadata: [String: String] = [:]) throws(LlamaError) {
        var tensors: [(name: String, shape: [Int], data: [Float])] = []
        for p in LlamaParam.allCases {
            for layer in 0..<(p.perLayer ? model.config.layers : 1) {
                tensors.append((p.ggufName(layer: layer), p.shape(model.config), model.parameter(p, layer: layer)))
            }
        }
        do {
            try SafeTensorsFile.write(path: path, tensors: tensors, metadata: metadata)
        } catch {
            throw .modelFile(error.description, file: path)
        }
    }

    /// Replaces `model`'s weights with those in `path`; every tensor must be present with the
    /// model's shape. Nothing changes when the file is refused, or when the model keeps its
    /// matrices quantized (``LlamaError/quantizedWeights(operation:)``).
    public static func load(path: String, into model: LlamaModel) throws(LlamaError) {
        try model.requireFloat32("loading full weights")
        let file: SafeTensorsFile
        do {
            file = try SafeTensorsFile.read(path: path)
        } catch {
            throw .modelFile(error.description, file: path)
        }
        var values: [(offset: Int, data: [Float])] = []
        for p in LlamaParam.allCases {
            for layer in 0..<(p.perLayer ? model.config.layers : 1) {
                let name = p.ggufName(layer: layer)
                guard let entry = file.entry(name) else { throw .missingTensor(name: name, file: path) }
                guard entry.shape == p.shape(model.config) else {
                    throw .tensorShapeMismatch(name: name, expected: p.shape(model.config), found: entry.shape, file: path)
                }
                do {
                    values.append((model.layout.offset(p, layer: layer), try file.floats(name)))
                } catch {
                    throw .modelFile(error.description, file: path)
                }
            }
        }
        for (offset, data) in values {
            data.withUnsafeBufferPointer { source in
                if let base = source.baseAddress { (model.parameters.data + offset).update(from: base, count: data.count) }
            }
        }
    }
}
