import CURecTensor

extension LlamaConfig {
    /// The shape described by a GGUF file of architecture `llama`.
    ///
    /// Reads `llama.block_count`, `llama.embedding_length`, `llama.feed_forward_length`,
    /// `llama.attention.head_count`, `llama.attention.head_count_kv` (default: the head count),
    /// `llama.rope.freq_base` (default 10000), `llama.attention.layer_norm_rms_epsilon` and
    /// `llama.context_length`; the vocabulary size is the row count of `token_embd.weight`.
    /// Refuses what this engine does not implement: other architectures, mixtures of experts,
    /// rope scaling, partial rotary dimensions and an untied output head.
    public init(gguf: GGUFFile) throws(LlamaError) {
        let file = gguf.path
        let arch = gguf.string("general.architecture") ?? "(none)"
        guard arch == "llama" else { throw .unsupportedArchitecture(arch, file: file) }
        func int(_ key: String) throws(LlamaError) -> Int {
            guard let v = gguf.int(key) else { throw .missingMetadata(key: key, file: file) }
            return v
        }
        func float(_ key: String) throws(LlamaError) -> Float {
            guard let v = gguf.float(key) else { throw .missingMetadata(key: key, file: file) }
            return v
        }
        let heads = try int("llama.attention.head_count")
        let ropeBase: Double
        if gguf.metadata["llama.rope.freq_base"] != nil {
            ropeBase = Double(try float("llama.rope.freq_base"))
        } else {
            ropeBase = 10_000
        }
        let kvHeads = gguf.metadata["llama.attention.head_count_kv"] == nil
            ? heads : try int("llama.attention.head_count_kv")
        guard let embedding = gguf.tensor(LlamaParam.tokenEmbedding.ggufName()) else {
            throw .missingTensor(name: LlamaParam.tokenEmbedding.ggufName(), file: file)
        }
        let config = LlamaConfig(
            layers: try int("llama.block_count"), width: try int("llama.embedding_length"),
            hidden: try int("llama.feed_forward_length"), heads: heads, kvHeads: kvHeads,
            ropeBase: ropeBase, rmsEps: try float("llama.attention.layer_norm_rms_epsilon"),
            context: try int("llama.context_length"), vocab: embedding.shape.first ?? 0)
        do {
            try config.validate()
        } catch {
            throw .inconsistentModel(error.description, file: file)
        }
        guard embedding.shape == [config.vocab, config.width] else {
            throw .tensorShapeMismatch(name: embedding.name, expected: [config.vocab, config.width],
                                       found: embedding.shape, file: file)
        }
        if let vocab = gguf.int("llama.vocab_size"), vocab != config.vocab {
            throw .inconsistentModel("llama.vocab_size is \(vocab) but token_embd.weight has \(config.vocab) rows", file: file)
        }
        if let experts = gguf.int("llama.expert_count"), experts > 0 {
            throw .inconsistentModel("mixture-of-experts models (llama.expert_count = \(experts)) are not supported", file: file)
        }
        if let scaling = gguf.string("llama.rope.scaling.type"), scaling != "none" {
            throw .inconsistentModel("rope scaling '\(scaling)' is not supported", file: file)
        }
        if gguf.tensor("rope_freqs.weight") != nil {
            throw .inconsistentModel("rope frequency factors (rope_freqs.weight) are not supported", file: file)
        }
        if let dims = gguf.int("llama.rope.dimension_count"), dims != config.headSize {
            throw .inconsistentModel("rotary dimension \(dims) differs from the head size \(config.headSize); partial rotary embedding is not supported", file: file)
        }
        if gguf.tensor("output.weight") != nil {
            throw .inconsistentModel("an untied output head (output.weight) is not supported", file: file)
        }
        self = config
    }
}

extension LlamaModel {
    /// A model with the weights of a GGUF file (see ``LlamaConfig/init(gguf:)`` for what is
    /// read and refused).
    ///
    /// Every tensor must be present with its expected shape (`[out, in]` for the matrices, rows
    /// of `attn_q` and `attn_k` in the file's order) and of a type the reader converts.
    ///
    /// - Parameter weights: `.float32` (default) dequantizes every tensor into the model's
    ///   parameter buffer, for training, fine-tuning and exact results; `.quantized` keeps the
    ///   matrices and the tied embedding as stored in the mapped file (Q4_0, Q4_1, Q8_0; other
    ///   types are converted to float32) for inference, about a fifth of the memory of a
    ///   4-bit file's float32 copy and faster decoding (see ``LlamaWeightFormat``).
    public static func load(gguf: GGUFFile, weights: LlamaWeightFormat = .float32) throws(LlamaError) -> LlamaModel {
        switch weights {
        case .float32: return try loadFloat32(gguf: gguf)
        case .quantized: return try loadQuantized(gguf: gguf)
        }
    }

    /// ``load(gguf:weights:)`` with every tensor dequantized to float32.
    static func loadFloat32(gguf: GGUFFile) throws(LlamaError) -> LlamaModel {
        let config = try LlamaConfig(gguf: gguf)
        let layout = LlamaLayout(config: config)
        let file = gguf.path
        var jobs: [(name: String, offset: Int)] = []
        for p in LlamaParam.allCases {
            for l in 0..<(p.perLayer ? config.layers : 1) {
                let name = p.ggufName(layer: l)
                guard let info = gguf.tensor(name) else { throw .missingTensor(name: name, file: file) }
                guard info.shape == p.shape(config) else {
                    throw .tensorShapeMismatch(name: name, expected: p.shape(config), found: info.shape, file: file)
                }
                guard info.type.isDequantizable else {
                    throw .modelFile("tensor '\(name)' has type \(info.type), which cannot be converted to float32", file: file)
                }
                jobs.append((name, layout.offset(p, layer: l)))
            }
        }
        let values = Tensor(uncheckedZeros: [layout.total])
        // Each tensor converts into its own slice; failures (none expected after the checks
        // above) are collected per job.
        var failures = [GGUFError?](repeating: nil, count: jobs.count)
        failures.withUnsafeMutableBufferPointer { buf in
            guard let base = buf.baseAddress else { return }
            let out = SendablePointer(base), dst = SendablePointer(values.data)
            Parallel.forEach(jobs.count) { j in
                do throws(GGUFError) {
                    try gguf.dequantize(jobs[j].name, into: dst.p + jobs[j].offset)
                } catch {
                    out.p[j] = error
                }
            }
        }
        if let failure = failures.compactMap({ $0 }).first {
            throw .modelFile(failure.description, file: file)
        }
        return LlamaModel(validConfig: config, parameters: values)
    }

    /// ``load(gguf:weights:)`` from the file at `path`.
    public static func load(path: String, weights: LlamaWeightFormat = .float32) throws(LlamaError) -> LlamaModel {
        let gguf: GGUFFile
        do {
            gguf = try GGUFFile.read(path: path)
        } catch {
            throw .modelFile(error.description, file: path)
        }
        return try load(gguf: gguf, weights: weights)
    }
}
