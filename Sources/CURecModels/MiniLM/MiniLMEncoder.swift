import CURecTensor

/// The all-MiniLM-L6-v2 sentence encoder: WordPiece, a 6-layer BERT, mean pooling over the
/// real tokens and L2 normalisation, giving one unit-length 384-d vector per text.
///
/// Texts in one forward pass are packed back to back (no padding), so a batch costs what its
/// real tokens cost. Matrix products run through `cblas_sgemm`, the other loops over all cores.
/// The encoder is immutable and may be shared across tasks; concurrent calls each use the
/// cores, so throughput is best with one caller at a time.
public struct MiniLMEncoder: Sendable {
    /// Shapes of the model.
    public let configuration: MiniLMConfiguration
    /// The WordPiece tokenizer built from the model's `vocab.txt`.
    public let tokenizer: WordPieceTokenizer
    let weights: MiniLMWeights

    /// Loads weights (`model.safetensors` of a Hugging Face `BertModel`, with or without the
    /// `bert.` prefix) and the vocabulary (`vocab.txt`), checking every tensor's shape.
    public init(
        modelPath: String, vocabPath: String, configuration: MiniLMConfiguration = .allMiniLML6v2
    ) throws(MiniLMError) {
        try configuration.validate()
        let tokenizer: WordPieceTokenizer
        do {
            tokenizer = try WordPieceTokenizer.load(
                vocabPath: vocabPath, maxLength: configuration.maxSequenceLength)
        } catch {
            throw .tokenizer(error)
        }
        guard tokenizer.vocabulary.count <= configuration.vocabularySize else {
            throw .invalidConfiguration(
                "vocabulary \(vocabPath) has \(tokenizer.vocabulary.count) tokens, the embeddings only \(configuration.vocabularySize)")
        }
        self.configuration = configuration
        self.tokenizer = tokenizer
        self.weights = try MiniLMWeights.load(path: modelPath, configuration: configuration)
    }

    /// Loads `model.safetensors` and `vocab.txt` from `directory` (as `scripts/fetch-minilm`
    /// lays them out).
    public init(directory: String, configuration: MiniLMConfiguration = .allMiniLML6v2) throws(MiniLMError) {
        try self.init(
            modelPath: directory + "/model.safetensors", vocabPath: directory + "/vocab.txt",
            configuration: configuration)
    }

    /// Length of every embedding.
    public var dimension: Int { configuration.hiddenSize }

    /// Unit-length embeddings of `texts`, in order. Texts are tokenized, sorted by length and
    /// run `batchSize` at a time (longer texts than `maxSequenceLength` tokens are truncated).
    public func encode(_ texts: [String], batchSize: Int = 32) -> [[Float]] {
        let rows = tokenize(texts)
        let order = rows.indices.sorted { rows[$0].count > rows[$1].count }
        var result = [[Float]](repeating: [], count: texts.count)
        let step = max(1, batchSize)
        for batchStart in stride(from: 0, to: order.count, by: step) {
            let members = order[batchStart..<min(batchStart + step, order.count)]
            let vectors = forward(members.map { rows[$0] })
            for (index, vector) in zip(members, vectors) { result[index] = vector }
        }
        return result
    }

    /// Embeddings of already tokenized texts (each row `[CLS] … [SEP]`), in one forward pass.
    public func encode(tokenIDs rows: [[Int32]]) throws(MiniLMError) -> [[Float]] {
        let vocabulary = Int32(configuration.vocabularySize)
        for (index, row) in rows.enumerated() {
            guard !row.isEmpty, row.count <= configuration.maxPositions else {
                throw .invalidInput("row \(index) has \(row.count) tokens, expected 1...\(configuration.maxPositions)")
            }
            if let bad = row.first(where: { $0 < 0 || $0 >= vocabulary }) {
                throw .invalidInput("row \(index) holds token id \(bad), outside 0..<\(vocabulary)")
            }
        }
        return forward(rows)
    }

    /// Embeddings of a padded batch: each row's first `lengths[row]` ids are used.
    public func encode(batch: TokenBatch) throws(MiniLMError) -> [[Float]] {
        try encode(tokenIDs: (0..<batch.count).map { Array(batch.ids(ofRow: $0)) })
    }

    /// Tokenizes on all cores.
    private func tokenize(_ texts: [String]) -> [[Int32]] {
        let tokenizer = self.tokenizer
        return [[Int32]](unsafeUninitializedCapacity: texts.count) { buffer, initialized in
            initialized = 0
            guard let base = buffer.baseAddress else { return }
            let output = SendablePointer(base)
            Parallel.forEach(texts.count, grain: 16) { index in
                (output.p + index).initialize(to: tokenizer.encode(texts[index]).ids)
            }
            initialized = texts.count
        }
    }

    /// The forward pass over valid rows (ids in range, lengths within the position table).
    func forward(_ rows: [[Int32]]) -> [[Float]] {
        guard !rows.isEmpty else { return [] }
        let c = configuration
        let h = c.hiddenSize, f = c.intermediateSize
        let sequences = PackedSequences(lengths: rows.map(\.count))
        let tokens = sequences.totalTokens
        let workspace = EncoderWorkspace(tokens: tokens, width: h, intermediate: f)
        var t = 0
        for row in rows {
            for (position, id) in row.enumerated() {
                workspace.ids[t] = id
                workspace.positions[t] = Int32(position)
                t += 1
            }
        }
        let x = workspace.hidden, eps = c.layerNormEpsilon
        EncoderKernels.embed(
            out: x, ids: workspace.ids, positions: workspace.positions, tokens: tokens, weights: weights,
            width: h, epsilon: eps)
        for layer in weights.layers {
            EncoderKernels.linear(
                x, rows: tokens, inputs: h, weight: layer.qkvWeight, bias: layer.qkvBias, outputs: 3 * h,
                out: workspace.qkv)
            EncoderKernels.attention(
                qkv: workspace.qkv, out: workspace.context, sequences: sequences, width: h, heads: c.heads)
            EncoderKernels.linear(
                workspace.context, rows: tokens, inputs: h, weight: layer.attentionOutWeight,
                bias: layer.attentionOutBias, outputs: h, out: workspace.projected)
            EncoderKernels.addAndNormalize(
                x, residual: workspace.projected, rows: tokens, width: h, scale: layer.attentionNormScale,
                shift: layer.attentionNormShift, epsilon: eps)
            EncoderKernels.linear(
                x, rows: tokens, inputs: h, weight: layer.ffnInWeight, bias: layer.ffnInBias, outputs: f,
                out: workspace.intermediate)
            EncoderKernels.gelu(workspace.intermediate, count: tokens * f)
            EncoderKernels.linear(
                workspace.intermediate, rows: tokens, inputs: f, weight: layer.ffnOutWeight,
                bias: layer.ffnOutBias, outputs: h, out: workspace.projected)
            EncoderKernels.addAndNormalize(
                x, residual: workspace.projected, rows: tokens, width: h, scale: layer.outputNormScale,
                shift: layer.outputNormShift, epsilon: eps)
        }
        return EncoderKernels.meanPoolAndNormalize(x, sequences: sequences, width: h)
    }
}

/// Activation buffers of one forward pass, sized for its packed tokens.
private final class EncoderWorkspace {
    let ids: UnsafeMutablePointer<Int32>
    let positions: UnsafeMutablePointer<Int32>
    /// The residual stream `[tokens, width]`.
    let hidden: UnsafeMutablePointer<Float>
    /// Queries, keys and values `[tokens, 3 * width]`.
    let qkv: UnsafeMutablePointer<Float>
    /// Attention output before projection `[tokens, width]`.
    let context: UnsafeMutablePointer<Float>
    /// Output of a projection before the residual add `[tokens, width]`.
    let projected: UnsafeMutablePointer<Float>
    /// Feed-forward activations `[tokens, intermediate]`.
    let intermediate: UnsafeMutablePointer<Float>

    init(tokens: Int, width: Int, intermediate: Int) {
        ids = .allocate(capacity: tokens)
        positions = .allocate(capacity: tokens)
        hidden = .allocate(capacity: tokens * width)
        qkv = .allocate(capacity: tokens * width * 3)
        context = .allocate(capacity: tokens * width)
        projected = .allocate(capacity: tokens * width)
        self.intermediate = .allocate(capacity: tokens * intermediate)
    }

    deinit {
        ids.deallocate()
        positions.deallocate()
        hidden.deallocate()
        qkv.deallocate()
        context.deallocate()
        projected.deallocate()
        intermediate.deallocate()
    }
}
