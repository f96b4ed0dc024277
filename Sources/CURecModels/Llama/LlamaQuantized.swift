import CURecTensor

/// How a ``LlamaModel`` keeps its weight matrices (the seven projections of every block and
/// the tied token embedding / output head).
public enum LlamaWeightFormat: Sendable, Equatable, CustomStringConvertible {
    /// Float32 in the model's flat parameter buffer: trainable, and the exact arithmetic the
    /// parity tests check.
    case float32
    /// As stored in the GGUF file (e.g. Q4_1 projections and a Q8_0 embedding for
    /// SmolLM2-135M, 92 MiB instead of 513 MiB), multiplied in place by 8-bit-quantized
    /// activations through ``QuantizedMatrix``. Inference only: decoding reads a fifth of the
    /// bytes, which is what bounds its speed; the logits differ from float32 by the rounding of
    /// the activations to 8 bits per block of 32.
    case quantized

    public var description: String {
        switch self {
        case .float32: return "float32"
        case .quantized: return "quantized"
        }
    }
}

extension LlamaModel {
    /// ``load(gguf:weights:)`` with the matrices kept as stored: the norm weights are
    /// dequantized into the (small) parameter buffer, every matrix becomes a
    /// ``QuantizedMatrix`` over the mapped file.
    static func loadQuantized(gguf: GGUFFile) throws(LlamaError) -> LlamaModel {
        let config = try LlamaConfig(gguf: gguf)
        let layout = LlamaLayout(config: config, format: .quantized)
        let file = gguf.path
        let values = Tensor(uncheckedZeros: [layout.total])
        // matrices[p][l]: the file's tensor (none for the norms).
        var matrices = [[QuantizedMatrix]](repeating: [], count: LlamaParam.allCases.count)
        for p in LlamaParam.allCases {
            for l in 0..<(p.perLayer ? config.layers : 1) {
                let name = p.ggufName(layer: l)
                guard let info = gguf.tensor(name) else { throw .missingTensor(name: name, file: file) }
                guard info.shape == p.shape(config) else {
                    throw .tensorShapeMismatch(name: name, expected: p.shape(config), found: info.shape, file: file)
                }
                do throws(GGUFError) {
                    if p.isMatrix {
                        matrices[p.rawValue].append(try QuantizedMatrix(gguf, name))
                    } else {
                        try gguf.dequantize(name, into: values.data + layout.offset(p, layer: l))
                    }
                } catch {
                    throw .modelFile(error.description, file: file)
                }
            }
        }
        let store = LlamaParameterStore(layout: layout, values: values)
        return LlamaModel(validConfig: config, store: store, format: .quantized) { p, layer in
            .quantized(matrices[p.rawValue][p.perLayer ? layer : 0])
        }
    }
}
