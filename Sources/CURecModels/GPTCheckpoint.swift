import CURecTensor
import Foundation

/// Hugging Face GPT-2 `config.json` fields used by ``GPTModel``.
struct GPT2ConfigJSON: Codable {
    var n_layer: Int
    var n_head: Int
    var n_embd: Int
    var n_positions: Int
    var vocab_size: Int
    var n_ctx: Int?
    var model_type: String?
    var layer_norm_epsilon: Double?
    var activation_function: String?
    var tie_word_embeddings: Bool?
}

extension GPTModel {
    /// File names inside a checkpoint directory.
    public static let weightsFileName = "model.safetensors"
    public static let configFileName = "config.json"

    /// Writes `model.safetensors` (Hugging Face GPT-2 names and `Conv1D` layout, F32) and
    /// `config.json` into `directory`, creating it if needed.
    public func save(directory: String) throws(GPTError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw .checkpoint("cannot create \(directory): \(error)")
        }
        var tensors: [(name: String, shape: [Int], data: [Float])] = []
        for p in GPTParam.allCases {
            for l in 0..<(p.perLayer ? config.layers : 1) {
                tensors.append((p.hfName(layer: l), p.shape(config), parameter(p, layer: l)))
            }
        }
        let weights = (directory as NSString).appendingPathComponent(Self.weightsFileName)
        do {
            try SafeTensorsFile.write(path: weights, tensors: tensors, metadata: ["format": "pt"])
        } catch {
            throw .checkpoint(error.description)
        }
        let json = GPT2ConfigJSON(
            n_layer: config.layers, n_head: config.heads, n_embd: config.width,
            n_positions: config.context, vocab_size: config.vocab, n_ctx: config.context,
            model_type: "gpt2", layer_norm_epsilon: Double(LayerNorm.eps),
            activation_function: "gelu_new", tie_word_embeddings: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let path = (directory as NSString).appendingPathComponent(Self.configFileName)
        do {
            try encoder.encode(json).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw .checkpoint("cannot write \(path): \(error)")
        }
    }

    /// Reads the model config from a checkpoint directory's `config.json`.
    public static func loadConfig(directory: String) throws(GPTError) -> GPTConfig {
        let path = (directory as NSString).appendingPathComponent(configFileName)
        let json: GPT2ConfigJSON
        do {
            json = try JSONDecoder().decode(GPT2ConfigJSON.self,
                                            from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw .checkpoint("cannot read \(path): \(error)")
        }
        let c = GPTConfig(layers: json.n_layer, heads: json.n_head, width: json.n_embd,
                          context: json.n_positions, vocab: json.vocab_size)
        try c.validate()
        return c
    }

    /// Loads a checkpoint directory (`config.json` + `model.safetensors`).
    public static func load(directory: String) throws(GPTError) -> GPTModel {
        let config = try loadConfig(directory: directory)
        return try load(safetensors: (directory as NSString).appendingPathComponent(weightsFileName),
                        config: config)
    }

    /// Loads GPT-2 weights from a safetensors file.
    ///
    /// Names may carry a `transformer.` prefix; `attn.bias`, `attn.masked_bias` buffers and a
    /// tied `lm_head.weight` are ignored. F16 and BF16 tensors are converted. A missing tensor
    /// or a tensor of the wrong shape is an error naming the tensor and both shapes.
    public static func load(safetensors path: String, config: GPTConfig) throws(GPTError) -> GPTModel {
        try config.validate()
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile.read(path: path) } catch { throw .checkpoint(error.description) }
        let layout = GPTLayout(config: config)
        let params = Tensor(uncheckedZeros: [layout.total])
        for p in GPTParam.allCases {
            for l in 0..<(p.perLayer ? config.layers : 1) {
                let name = p.hfName(layer: l)
                let stored: String
                if file.entry(name) != nil {
                    stored = name
                } else if file.entry("transformer." + name) != nil {
                    stored = "transformer." + name
                } else {
                    throw .missingTensor(name: name, file: path)
                }
                let expected = p.shape(config)
                let found = file.entry(stored)?.shape ?? []
                guard found == expected else {
                    throw .tensorShapeMismatch(name: stored, expected: expected, found: found)
                }
                let values: [Float]
                do { values = try file.floats(stored) } catch { throw .checkpoint(error.description) }
                guard values.count == layout.sizes[p.rawValue] else {
                    throw .tensorShapeMismatch(name: stored, expected: expected, found: [values.count])
                }
                values.withUnsafeBufferPointer { src in
                    if let base = src.baseAddress {
                        (params.data + layout.offset(p, layer: l)).update(from: base, count: values.count)
                    }
                }
            }
        }
        return GPTModel(config: config, parameters: params)
    }
}
