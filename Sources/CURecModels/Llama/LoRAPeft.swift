import CURecTensor
import Foundation

/// The `peft` adapter directory of a `LlamaForCausalLM`: `adapter_model.safetensors` holding
/// `base_model.model.model.layers.{i}.{self_attn|mlp}.{proj}.lora_A.weight` `[r, in]` and
/// `...lora_B.weight` `[out, r]` (F32), and `adapter_config.json`.
///
/// Hugging Face keeps the rows of `q_proj` and `k_proj` in their original order, the engine in
/// GGUF order (``LlamaRowOrder``): the rows of `lora_B` of those two projections are permuted on
/// the way out and back; `lora_A`, whose input is the unpermuted hidden state, is unchanged.
extension LlamaLoRA {
    /// File names inside a `peft` adapter directory.
    public static let peftWeightsFileName = "adapter_model.safetensors"
    public static let peftConfigFileName = "adapter_config.json"

    /// The `peft` name of one adapter matrix (`lora_A` or `lora_B`).
    public static func peftTensorName(layer: Int, target: LoRATarget, matrix: String) -> String {
        "base_model.model.model.layers.\(layer).\(target.moduleName).\(matrix).weight"
    }

    /// Writes the adapters as `peft` reads them for a `LlamaForCausalLM` into `directory`
    /// (created if needed; each file written to a temporary name and renamed into place).
    ///
    /// - Parameter baseModelNameOrPath: `base_model_name_or_path` of the config (e.g. the
    ///   Hugging Face repository of the base model), null when nil.
    public func savePeft(directory: String, baseModelNameOrPath: String? = nil) throws(LoRAError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw .adapterFile("cannot create the directory: \(error.localizedDescription)", file: directory)
        }
        var tensors: [(name: String, shape: [Int], data: [Float])] = []
        let r = config.rank
        for slot in layout.slots {
            let a = Array(UnsafeBufferPointer(start: parameters.data + slot.a.lowerBound, count: slot.a.count))
            var b = Array(UnsafeBufferPointer(start: parameters.data + slot.b.lowerBound, count: slot.b.count))
            if slot.target.rowsPermuted {
                do {
                    b = try LlamaRowOrder.huggingFaceOrder(b, columns: r, headSize: modelConfig.headSize)
                } catch {
                    throw .invalidConfig(error.description)
                }
            }
            tensors.append((Self.peftTensorName(layer: slot.layer, target: slot.target, matrix: "lora_A"),
                            [r, slot.inFeatures], a))
            tensors.append((Self.peftTensorName(layer: slot.layer, target: slot.target, matrix: "lora_B"),
                            [slot.outFeatures, r], b))
        }
        let weights = (directory as NSString).appendingPathComponent(Self.peftWeightsFileName)
        do {
            try SafeTensorsFile.write(path: weights, tensors: tensors, metadata: ["format": "pt"])
        } catch {
            throw .adapterFile(error.description, file: weights)
        }
        let path = (directory as NSString).appendingPathComponent(Self.peftConfigFileName)
        do {
            let data = try JSONSerialization.data(withJSONObject: peftConfigJSON(baseModelNameOrPath: baseModelNameOrPath),
                                                  options: [.prettyPrinted, .sortedKeys])
            try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw .adapterFile("cannot write: \(error.localizedDescription)", file: path)
        }
    }

    /// The `adapter_config.json` object: the fields of peft's `LoraConfig` that describe these
    /// adapters, the others at peft's defaults.
    func peftConfigJSON(baseModelNameOrPath: String?) -> [String: Any] {
        // Float → Double through the shortest decimal text, so 0.05 is written as 0.05.
        func number(_ x: Float) -> Any {
            if x == x.rounded(), abs(x) < 1e9 { return Int(x) }
            return Double("\(x)") ?? Double(x)
        }
        return [
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "r": config.rank,
            "lora_alpha": number(config.alpha),
            "lora_dropout": number(config.dropout),
            "target_modules": config.targets.map(\.rawValue),
            "bias": "none",
            "fan_in_fan_out": false,
            "use_rslora": config.rankStabilized,
            "use_dora": false,
            "lora_bias": false,
            "init_lora_weights": true,
            "inference_mode": true,
            "base_model_name_or_path": baseModelNameOrPath.map { $0 as Any } ?? NSNull(),
            "revision": NSNull(),
            "modules_to_save": NSNull(),
            "layers_to_transform": NSNull(),
            "layers_pattern": NSNull(),
            "rank_pattern": [String: Any](),
            "alpha_pattern": [String: Any](),
        ]
    }

    /// Reads a `peft` LoRA adapter directory made for a model of shape `modelConfig` (e.g. by
    /// ``savePeft(directory:baseModelNameOrPath:)`` or by `peft`'s `save_pretrained`).
    ///
    /// Refuses, naming the field, what these adapters cannot express: another `peft_type`,
    /// biases, DoRA, `fan_in_fan_out`, per-module rank or alpha patterns, a subset of layers,
    /// `modules_to_save`, trainable tokens, regular-expression `target_modules` and targets other
    /// than the seven projections; and tensors missing, of the wrong shape or unexplained.
    public static func loadPeft(directory: String, modelConfig: LlamaConfig) throws(LoRAError) -> LlamaLoRA {
        let configPath = (directory as NSString).appendingPathComponent(peftConfigFileName)
        let json: [String: Any]
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: configPath))
            guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw LoRAError.adapterFile("not a JSON object", file: configPath)
            }
            json = object
        } catch let error as LoRAError {
            throw error
        } catch {
            throw .adapterFile("cannot read: \(error.localizedDescription)", file: configPath)
        }
        let config = try peftConfig(json, file: configPath)
        let lora = try LlamaLoRA(config: config, modelConfig: modelConfig, seed: 0)
        let weightsPath = (directory as NSString).appendingPathComponent(peftWeightsFileName)
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile.read(path: weightsPath) } catch {
            throw .adapterFile(error.description, file: weightsPath)
        }
        var expected = Set<String>()
        let r = config.rank
        for slot in lora.layout.slots {
            for (matrix, range, shape) in [("lora_A", slot.a, [r, slot.inFeatures]),
                                           ("lora_B", slot.b, [slot.outFeatures, r])] {
                let name = peftTensorName(layer: slot.layer, target: slot.target, matrix: matrix)
                expected.insert(name)
                guard let entry = file.entry(name) else { throw .missingTensor(name: name, file: weightsPath) }
                guard entry.shape == shape else {
                    throw .tensorShapeMismatch(name: name, expected: shape, found: entry.shape, file: weightsPath)
                }
                var values: [Float]
                do { values = try file.floats(name) } catch { throw .adapterFile(error.description, file: weightsPath) }
                if matrix == "lora_B" && slot.target.rowsPermuted {
                    do {
                        values = try LlamaRowOrder.ggufOrder(values, columns: r, headSize: modelConfig.headSize)
                    } catch {
                        throw .adapterFile(error.description, file: weightsPath)
                    }
                }
                values.withUnsafeBufferPointer { src in
                    guard let base = src.baseAddress else { return }
                    (lora.parameters.data + range.lowerBound).update(from: base, count: range.count)
                }
            }
        }
        if let extra = file.names.first(where: { !expected.contains($0) }) {
            throw .unexpectedTensor(name: extra, file: weightsPath)
        }
        return lora
    }

    /// The ``LoRAConfig`` of an `adapter_config.json` object.
    static func peftConfig(_ json: [String: Any], file: String) throws(LoRAError) -> LoRAConfig {
        func isNull(_ key: String) -> Bool { json[key] == nil || json[key] is NSNull }
        func bool(_ key: String) -> Bool { (json[key] as? Bool) ?? false }
        func number(_ key: String) throws(LoRAError) -> Double? {
            if isNull(key) { return nil }
            guard let n = json[key] as? NSNumber else {
                throw .adapterFile("'\(key)' is not a number", file: file)
            }
            return n.doubleValue
        }
        guard (json["peft_type"] as? String) == "LORA" else {
            throw .unsupported("peft_type \(json["peft_type"].map { "\($0)" } ?? "(missing)") (only LORA)", file: file)
        }
        if let bias = json["bias"] as? String, bias != "none" { throw .unsupported("bias '\(bias)'", file: file) }
        for flag in ["use_dora", "fan_in_fan_out", "lora_bias"] where bool(flag) {
            throw .unsupported("\(flag) = true", file: file)
        }
        for key in ["rank_pattern", "alpha_pattern"] {
            if let d = json[key] as? [String: Any], !d.isEmpty { throw .unsupported("a non-empty \(key)", file: file) }
        }
        for key in ["layers_to_transform", "layer_replication", "trainable_token_indices", "target_parameters",
                    "exclude_modules"] where !isNull(key) {
            throw .unsupported("\(key)", file: file)
        }
        if let modules = json["modules_to_save"] as? [Any], !modules.isEmpty {
            throw .unsupported("modules_to_save", file: file)
        }
        guard let rank = try number("r"), rank == rank.rounded(), rank > 0, rank < 1e6 else {
            throw .adapterFile("'r' must be a positive integer", file: file)
        }
        guard let alpha = try number("lora_alpha") else { throw .adapterFile("'lora_alpha' is missing", file: file) }
        let dropout = try number("lora_dropout") ?? 0
        if json["target_modules"] is String {
            throw .unsupported("target_modules given as a pattern string", file: file)
        }
        guard let names = json["target_modules"] as? [String], !names.isEmpty else {
            throw .adapterFile("'target_modules' must be a non-empty list of module names", file: file)
        }
        var targets: [LoRATarget] = []
        for name in names {
            guard let t = LoRATarget(rawValue: name) else {
                throw .unsupported("target module '\(name)' (only \(LoRATarget.allCases.map(\.rawValue)))", file: file)
            }
            targets.append(t)
        }
        let config = LoRAConfig(rank: Int(rank), alpha: Float(alpha), dropout: Float(dropout), targets: targets,
                                rankStabilized: bool("use_rslora"))
        try config.validate()
        return config
    }
}
