import CURecTensor

/// An immutable float buffer with a stable address, so kernels can read it without closures.
/// Written once in `init`, only read afterwards: safe to share across threads.
final class FrozenFloats: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int

    init(_ values: [Float]) {
        count = values.count
        pointer = .allocate(capacity: max(count, 1))
        values.withUnsafeBufferPointer { source in
            if let base = source.baseAddress { pointer.initialize(from: base, count: count) }
        }
    }

    deinit { pointer.deallocate() }

    /// The start of the buffer, read-only.
    var base: UnsafePointer<Float> { UnsafePointer(pointer) }
}

/// Parameters of one transformer layer, linear weights in PyTorch layout `[out, in]`.
struct MiniLMLayerWeights: Sendable {
    /// Query, key and value projections stacked: `[3 * hidden, hidden]` and `[3 * hidden]`.
    let qkvWeight: FrozenFloats, qkvBias: FrozenFloats
    /// Attention output projection `[hidden, hidden]`.
    let attentionOutWeight: FrozenFloats, attentionOutBias: FrozenFloats
    /// LayerNorm after attention.
    let attentionNormScale: FrozenFloats, attentionNormShift: FrozenFloats
    /// Feed-forward in `[intermediate, hidden]` and out `[hidden, intermediate]`.
    let ffnInWeight: FrozenFloats, ffnInBias: FrozenFloats
    let ffnOutWeight: FrozenFloats, ffnOutBias: FrozenFloats
    /// LayerNorm after the feed-forward block.
    let outputNormScale: FrozenFloats, outputNormShift: FrozenFloats
}

/// All parameters of the encoder, checked against a configuration.
struct MiniLMWeights: Sendable {
    let wordEmbeddings: FrozenFloats
    let positionEmbeddings: FrozenFloats
    let tokenTypeEmbeddings: FrozenFloats
    let embeddingNormScale: FrozenFloats, embeddingNormShift: FrozenFloats
    let layers: [MiniLMLayerWeights]

    /// Reads Hugging Face `BertModel` tensors from a safetensors file, with or without the
    /// `bert.` prefix, and checks every name and shape against `configuration`.
    static func load(path: String, configuration c: MiniLMConfiguration) throws(MiniLMError) -> MiniLMWeights {
        let file: SafeTensorsFile
        do {
            file = try SafeTensorsFile.read(path: path)
        } catch {
            throw .weights(error)
        }
        let reader = TensorReader(file: file)
        let h = c.hiddenSize, f = c.intermediateSize
        var layers: [MiniLMLayerWeights] = []
        for index in 0..<c.layers {
            let p = "encoder.layer.\(index)."
            let qkvWeight = try reader.values(p + "attention.self.query.weight", [h, h])
                + reader.values(p + "attention.self.key.weight", [h, h])
                + reader.values(p + "attention.self.value.weight", [h, h])
            let qkvBias = try reader.values(p + "attention.self.query.bias", [h])
                + reader.values(p + "attention.self.key.bias", [h])
                + reader.values(p + "attention.self.value.bias", [h])
            layers.append(
                MiniLMLayerWeights(
                    qkvWeight: FrozenFloats(qkvWeight), qkvBias: FrozenFloats(qkvBias),
                    attentionOutWeight: try reader.tensor(p + "attention.output.dense.weight", [h, h]),
                    attentionOutBias: try reader.tensor(p + "attention.output.dense.bias", [h]),
                    attentionNormScale: try reader.tensor(p + "attention.output.LayerNorm.weight", [h]),
                    attentionNormShift: try reader.tensor(p + "attention.output.LayerNorm.bias", [h]),
                    ffnInWeight: try reader.tensor(p + "intermediate.dense.weight", [f, h]),
                    ffnInBias: try reader.tensor(p + "intermediate.dense.bias", [f]),
                    ffnOutWeight: try reader.tensor(p + "output.dense.weight", [h, f]),
                    ffnOutBias: try reader.tensor(p + "output.dense.bias", [h]),
                    outputNormScale: try reader.tensor(p + "output.LayerNorm.weight", [h]),
                    outputNormShift: try reader.tensor(p + "output.LayerNorm.bias", [h])))
        }
        return MiniLMWeights(
            wordEmbeddings: try reader.tensor("embeddings.word_embeddings.weight", [c.vocabularySize, h]),
            positionEmbeddings: try reader.tensor("embeddings.position_embeddings.weight", [c.maxPositions, h]),
            tokenTypeEmbeddings: try reader.tensor("embeddings.token_type_embeddings.weight", [c.tokenTypes, h]),
            embeddingNormScale: try reader.tensor("embeddings.LayerNorm.weight", [h]),
            embeddingNormShift: try reader.tensor("embeddings.LayerNorm.bias", [h]),
            layers: layers)
    }
}

/// Finds `BertModel` tensors by their unprefixed name and checks their shapes.
private struct TensorReader {
    let file: SafeTensorsFile
    let prefix: String

    init(file: SafeTensorsFile) {
        self.file = file
        // Checkpoints of `BertForX` models carry a `bert.` prefix; bare `BertModel` ones do not.
        prefix = file.entry("embeddings.word_embeddings.weight") == nil
            && file.entry("bert.embeddings.word_embeddings.weight") != nil ? "bert." : ""
    }

    func tensor(_ name: String, _ shape: [Int]) throws(MiniLMError) -> FrozenFloats {
        FrozenFloats(try values(name, shape))
    }

    func values(_ name: String, _ shape: [Int]) throws(MiniLMError) -> [Float] {
        let fullName = prefix + name
        guard let entry = file.entry(fullName) else {
            throw .missingTensor(path: file.path, name: name)
        }
        guard entry.shape == shape else {
            throw .shapeMismatch(path: file.path, name: fullName, expected: shape, actual: entry.shape)
        }
        do {
            return try file.floats(fullName)
        } catch {
            throw .weights(error)
        }
    }
}
