import CURecTensor
import Foundation

/// A validated batch of token ids `[B, T]` (row-major `Int32`).
struct LlamaTokenBatch {
    let batch: Int
    let time: Int
    let ids: [Int32]

    /// Validates `rows`: non-empty, rectangular, `T <= context`, ids in `0..<vocab` (or -1 for
    /// an ignored target when `targets`).
    init(rows: [[Int]], config: LlamaConfig, targets: Bool = false) throws(LlamaError) {
        guard let first = rows.first, !first.isEmpty else {
            throw .emptyInput(rows.isEmpty ? "the batch has no rows" : "row 0 has no tokens")
        }
        var ids: [Int32] = []
        ids.reserveCapacity(rows.count * first.count)
        for (r, row) in rows.enumerated() {
            guard row.count == first.count else {
                throw .raggedBatch(row: r, length: row.count, expected: first.count)
            }
            if row.count > config.context {
                throw .sequenceTooLong(row: r, length: row.count, context: config.context)
            }
            for (t, id) in row.enumerated() {
                if id >= 0 && id < config.vocab || (targets && id == -1) {
                    ids.append(Int32(id))
                } else if targets {
                    throw .targetOutOfRange(token: id, row: r, position: t, vocab: config.vocab)
                } else {
                    throw .tokenOutOfRange(token: id, row: r, position: t, vocab: config.vocab)
                }
            }
        }
        self.batch = rows.count
        self.time = first.count
        self.ids = ids
    }
}

/// Activations of one training forward pass `[B, T]`, kept for the backward pass.
final class LlamaTrainingActivations {
    let B: Int, T: Int
    let residual: Tensor                // [L+1, N, C]: block l reads slice l, writes l+1
    let blocks: [LlamaBlockBuffers]     // one per block, probabilities [B, NH, T, T]
    let layout: LlamaTokenLayout
    private(set) var gradients: LlamaBlockGradients?
    private(set) var dresidual: Tensor?  // [N, C]

    init(config c: LlamaConfig, B: Int, T: Int) {
        self.B = B
        self.T = T
        let N = B * T
        residual = Tensor(uncheckedZeros: [c.layers + 1, N, c.width])
        blocks = (0..<c.layers).map { _ in
            LlamaBlockBuffers(config: c, N: N, probabilities: B * c.heads * T * T)
        }
        layout = LlamaTokenLayout.training(B: B, T: T)
    }

    /// Gradient scratch, allocated by the first backward pass.
    func backwardBuffers(config c: LlamaConfig) -> (LlamaBlockGradients, Tensor) {
        if let gradients, let dresidual { return (gradients, dresidual) }
        let g = LlamaBlockGradients(config: c, N: B * T), d = Tensor(uncheckedZeros: [B * T, c.width])
        gradients = g
        dresidual = d
        return (g, d)
    }
}

/// The output head evaluated only at the `M` positions that carry a loss.
final class LlamaHeadBuffers {
    let M: Int
    let gathered: Tensor    // [M,C] final residual rows at the loss positions
    let normed: Tensor      // [M,C]
    let rstd: Tensor        // [M]
    let logits: Tensor      // [M,V]  (their gradient in place after the fused loss)
    let losses: Tensor      // [M]
    let dnormed: Tensor     // [M,C]
    let dgathered: Tensor   // [M,C]

    init(config c: LlamaConfig, M: Int) {
        self.M = M
        gathered = Tensor(uncheckedZeros: [M, c.width])
        normed = Tensor(uncheckedZeros: [M, c.width])
        rstd = Tensor(uncheckedZeros: [M])
        logits = Tensor(uncheckedZeros: [M, c.vocab])
        losses = Tensor(uncheckedZeros: [M])
        dnormed = Tensor(uncheckedZeros: [M, c.width])
        dgathered = Tensor(uncheckedZeros: [M, c.width])
    }
}

/// A Llama-architecture language model (e.g. SmolLM2) with explicit forward/backward kernels.
///
/// Weights live in one flat float32 buffer (``parameters``) laid out by ``layout``, matrices
/// `[out, in]` in GGUF row order (query and key rows arranged for adjacent-pair rotary
/// embedding, see ``LlamaRowOrder``). The output head is tied to the token embedding. Each
/// ``LlamaBlock`` serves both the training pass (``forwardBackward(inputs:targets:weights:)``)
/// and cached decoding (``step(cache:rows:tokens:want:)``).
///
/// A model loaded with ``LlamaWeightFormat/quantized`` (``load(gguf:weights:)``) keeps its
/// matrices in the file's block form instead, inside its ``LlamaLinear`` layers; its flat
/// buffer holds only the norm weights. It runs every forward pass (decoding, loss) with
/// attached adapters, but refuses to train (``LlamaError/quantizedWeights(operation:)``).
///
/// Every tensor is trainable until frozen with ``setTrainable(_:_:layers:)``; frozen tensors
/// get no gradient and are left unchanged by ``trainStep(inputs:targets:optimizer:learningRate:maxGradNorm:weights:)``.
/// A model is a mutable reference type and is not thread-safe: use it from one task at a time.
public final class LlamaModel: @unchecked Sendable {
    /// The model's shape.
    public let config: LlamaConfig
    /// Offsets of the parameter tensors in ``parameters``.
    public let layout: LlamaLayout
    /// The transformer blocks, in order.
    public let blocks: [LlamaBlock]
    /// The token embedding `[V, C]`, which is also the output head (tied): rows are looked up
    /// for the input, and the final hidden states are multiplied by it for the logits.
    public let embedding: LlamaLinear
    /// How the matrices are kept.
    public let weightFormat: LlamaWeightFormat
    let store: LlamaParameterStore
    let rope: RotaryEmbedding
    var acts: LlamaTrainingActivations?
    var head: LlamaHeadBuffers?

    /// All weights, flat (`layout.total` floats).
    public var parameters: Tensor { store.values }

    /// Gradients of the last backward pass, same layout as ``parameters`` (nil before the
    /// first one with a trainable tensor: a fully frozen model allocates none). Entries of
    /// frozen tensors stay zero.
    public var gradients: Tensor? { store.gradients }

    /// A randomly initialised model: matrices and embedding `N(0, 0.02²)`, the projections
    /// into the residual stream (attention output, down) `N(0, (0.02/√(2L))²)`, norm weights 1.
    /// The same seed always gives the same weights.
    public convenience init(config: LlamaConfig, seed: UInt64) throws(LlamaError) {
        try config.validate()
        let layout = LlamaLayout(config: config)
        let values = Tensor(uncheckedZeros: [layout.total])
        var rng = Xoshiro256(seed: seed)
        let projStd = 0.02 / Float(2 * config.layers).squareRoot()
        for p in LlamaParam.allCases {
            let n = layout.sizes[p.rawValue] * (p.perLayer ? config.layers : 1)
            let ptr = values.data + layout.offsets[p.rawValue]
            switch p {
            case .attentionNorm, .ffnNorm, .outputNorm: ptr.update(repeating: 1, count: n)
            case .attentionOutput, .down: rng.fillGaussian(ptr, count: n, std: projStd)
            default: rng.fillGaussian(ptr, count: n, std: 0.02)
            }
        }
        self.init(validConfig: config, parameters: values)
    }

    /// A model over `parameters` (laid out by ``LlamaLayout``) for an already validated config.
    convenience init(validConfig config: LlamaConfig, parameters: Tensor) {
        let layout = LlamaLayout(config: config)
        let store = LlamaParameterStore(layout: layout, values: parameters)
        self.init(validConfig: config, store: store, format: .float32) { p, layer in
            .dense(store.value(p, layer))
        }
    }

    /// A model whose norm weights are in `store` and whose matrix `p` of block `layer` (layer
    /// ignored for the embedding) is `matrix(p, layer)`.
    init(validConfig config: LlamaConfig, store: LlamaParameterStore, format: LlamaWeightFormat,
         matrix: (LlamaParam, Int) -> LlamaLinearWeight) {
        self.config = config
        self.layout = store.layout
        self.store = store
        self.weightFormat = format
        let rope = RotaryEmbedding(headSize: config.headSize, base: config.ropeBase,
                                   maxPositions: config.context)
        self.rope = rope
        self.blocks = (0..<config.layers).map { l in
            LlamaBlock(layer: l, config: config, store: store, rope: rope) { matrix($0, l) }
        }
        self.embedding = LlamaLinear(weight: matrix(.tokenEmbedding, 0), inFeatures: config.width,
                                     outFeatures: config.vocab)
    }

    /// The layer holding matrix `p` of block `layer` (layer ignored for the embedding), nil
    /// for the norm weights.
    func linear(_ p: LlamaParam, layer: Int) -> LlamaLinear? {
        if p == .tokenEmbedding { return embedding }
        return blocks[min(max(layer, 0), config.layers - 1)].linears.first { $0.0 == p }?.1
    }

    /// One parameter tensor as an array (layer ignored for global tensors); a quantized matrix
    /// is dequantized.
    public func parameter(_ p: LlamaParam, layer: Int = 0) -> [Float] {
        if layout.sizes[p.rawValue] == 0, let linear = linear(p, layer: layer) {
            return linear.dequantizedWeight()
        }
        return Array(UnsafeBufferPointer(start: store.value(p, layer), count: layout.sizes[p.rawValue]))
    }

    /// Frees the activation buffers kept between training calls.
    public func releaseActivations() {
        acts = nil
        head = nil
    }

    // MARK: Trainable parameters

    /// Marks tensors as trained or frozen.
    ///
    /// - Parameters:
    ///   - trainable: false freezes: no gradient is computed for the tensor and
    ///     ``trainStep(inputs:targets:optimizer:learningRate:maxGradNorm:weights:)`` leaves it
    ///     unchanged.
    ///   - params: which tensors (all by default).
    ///   - layers: which blocks for per-block tensors (all by default); global tensors
    ///     (embedding, output norm) are affected whenever listed in `params`.
    public func setTrainable(_ trainable: Bool, _ params: [LlamaParam] = LlamaParam.allCases,
                             layers: Range<Int>? = nil) {
        let chosen = (layers ?? 0..<config.layers).clamped(to: 0..<config.layers)
        for p in params {
            if p.perLayer {
                for l in chosen { store.trainable[p.rawValue][l] = trainable }
            } else {
                store.trainable[p.rawValue][0] = trainable
            }
        }
        // Frozen tensors keep a zero gradient, so the global norm ignores them.
        if let g = store.gradients {
            for p in params {
                for l in (p.perLayer ? Array(chosen) : [0]) where !trainable {
                    (g.data + layout.offset(p, layer: l)).update(repeating: 0, count: layout.sizes[p.rawValue])
                }
            }
        }
    }

    /// Whether block `layer`'s instance of `p` is trained (layer ignored for global tensors).
    public func isTrainable(_ p: LlamaParam, layer: Int = 0) -> Bool {
        store.trainable[p.rawValue][p.perLayer ? min(max(layer, 0), config.layers - 1) : 0]
    }

    /// The trained parameter ranges with their weight-decay flag, adjacent ranges merged.
    public var trainableSegments: [ParameterSegment] {
        var segments: [ParameterSegment] = []
        for p in LlamaParam.allCases {
            for l in 0..<(p.perLayer ? config.layers : 1) where store.trainable[p.rawValue][l] {
                let r = layout.range(p, layer: l)
                if let last = segments.last, last.range.upperBound == r.lowerBound, last.decay == p.decays {
                    segments[segments.count - 1].range = last.range.lowerBound..<r.upperBound
                } else {
                    segments.append(ParameterSegment(range: r, decay: p.decays))
                }
            }
        }
        return segments
    }

    /// Number of trained parameters.
    public var trainableParameterCount: Int { trainableSegments.reduce(0) { $0 + $1.range.count } }

    /// Fresh AdamW state for this model (moments for every parameter, trained or not).
    public func makeOptimizer(beta1: Float = 0.9, beta2: Float = 0.95, eps: Float = 1e-8,
                              weightDecay: Float = 0.1) -> AdamW {
        AdamW(parameterCount: layout.total, beta1: beta1, beta2: beta2, eps: eps,
              weightDecay: weightDecay)
    }

    // MARK: Training forward and backward

    func activations(B: Int, T: Int) -> LlamaTrainingActivations {
        if let a = acts, a.B == B, a.T == T { return a }
        acts = nil
        let a = LlamaTrainingActivations(config: config, B: B, T: T)
        acts = a
        return a
    }

    func headBuffers(M: Int) -> LlamaHeadBuffers {
        if let h = head, h.M == M { return h }
        head = nil
        let h = LlamaHeadBuffers(config: config, M: M)
        head = h
        return h
    }

    /// Runs the blocks over `batch`; the final residual stream is slice `L` of `residual`.
    func forwardBlocks(_ batch: LlamaTokenBatch, saveProbabilities: Bool) -> LlamaTrainingActivations {
        let c = config, N = batch.batch * batch.time, C = c.width
        let a = activations(B: batch.batch, T: batch.time)
        batch.ids.withUnsafeBufferPointer { tok in
            guard let tokens = tok.baseAddress else { return }
            embedding.gatherRows(out: a.residual.data, tokens: tokens, N: N)
        }
        for (l, block) in blocks.enumerated() {
            let buffers = a.blocks[l]
            block.forward(out: a.residual.data + (l + 1) * N * C,
                          inp: a.residual.data + l * N * C, buffers: buffers, layout: a.layout,
                          kv: buffers.ownKeyValues(T: batch.time, config: c),
                          saveProbabilities: saveProbabilities)
        }
        return a
    }

    func validate(inputs: [[Int]], targets: [[Int]], weights: [[Float]]?) throws(LlamaError)
        -> (LlamaTokenBatch, LlamaTokenBatch, [Float]?)
    {
        let batch = try LlamaTokenBatch(rows: inputs, config: config)
        guard targets.count == inputs.count, targets.allSatisfy({ $0.count == batch.time }) else {
            throw .targetShapeMismatch(inputs: [inputs.count, batch.time],
                                       targets: [targets.count, targets.first?.count ?? 0])
        }
        let tgt = try LlamaTokenBatch(rows: targets, config: config, targets: true)
        guard tgt.ids.contains(where: { $0 >= 0 }) else { throw .noTargets }
        guard let weights else { return (batch, tgt, nil) }
        guard weights.count == batch.batch, weights.allSatisfy({ $0.count == batch.time }) else {
            throw .targetShapeMismatch(inputs: [batch.batch, batch.time],
                                       targets: [weights.count, weights.first?.count ?? 0])
        }
        let flat = weights.flatMap { $0 }
        guard flat.allSatisfy({ $0.isFinite }) else { throw .invalidArgument("weights must be finite") }
        return (batch, tgt, flat)
    }

    /// Final norm, tied head and cross-entropy at the positions whose target is not -1.
    ///
    /// Only those `M` rows are normalised and multiplied by the `[V, C]` embedding. With
    /// `backward`, the logits are replaced by their gradient (mean over the `M` positions).
    /// Returns the head buffers, the gathered positions and the loss `Σ w·CE / M`.
    func headLoss(_ a: LlamaTrainingActivations, _ tgt: LlamaTokenBatch, _ weights: [Float]?,
                  backward: Bool) -> (LlamaHeadBuffers, [Int], Float) {
        let c = config, C = c.width, V = c.vocab, N = a.B * a.T
        var rows: [Int] = [], targets: [Int32] = [], rowWeights: [Float] = []
        for i in 0..<tgt.ids.count where tgt.ids[i] >= 0 {
            rows.append(i)
            targets.append(tgt.ids[i])
            rowWeights.append(weights?[i] ?? 1)
        }
        let M = rows.count
        let h = headBuffers(M: M)
        let last = a.residual.data + c.layers * N * C
        for (j, i) in rows.enumerated() { (h.gathered.data + j * C).update(from: last + i * C, count: C) }
        RMSNorm.forward(out: h.normed.data, rstd: h.rstd.data, inp: h.gathered.data,
                        weight: store.value(.outputNorm), eps: c.rmsEps, N: M, C: C)
        embedding.forward(out: h.logits.data, inp: h.normed.data, N: M)
        targets.withUnsafeBufferPointer { t in
            guard let tp = t.baseAddress else { return }
            if backward {
                rowWeights.withUnsafeBufferPointer { w in
                    SoftmaxCrossEntropy.forwardBackward(
                        losses: h.losses.data, logits: h.logits.data, targets: tp,
                        dloss: 1 / Float(M), weights: weights == nil ? nil : w.baseAddress, N: M, V: V)
                }
            } else {
                SoftmaxCrossEntropy.forward(losses: h.losses.data, probs: h.logits.data,
                                            logits: h.logits.data, targets: tp, N: M, V: V)
            }
        }
        var sum = 0.0
        for j in 0..<M { sum += Double(h.losses[j]) * Double(rowWeights[j]) }
        return (h, rows, Float(sum / Double(max(M, 1))))
    }

    /// Mean cross-entropy of `targets` given `inputs` (both `[B][T]`; target -1 is ignored),
    /// without a backward pass.
    public func loss(inputs: [[Int]], targets: [[Int]]) throws(LlamaError) -> Float {
        let (batch, tgt, _) = try validate(inputs: inputs, targets: targets, weights: nil)
        let a = forwardBlocks(batch, saveProbabilities: false)
        return headLoss(a, tgt, nil, backward: false).2
    }

    /// Forward and backward pass: returns the mean cross-entropy over the positions whose
    /// target is not -1 and leaves its gradient in ``gradients`` (overwritten, not
    /// accumulated; frozen tensors get zeros). Adapters attached to the blocks' linear layers
    /// accumulate their own gradients.
    ///
    /// - Parameters:
    ///   - inputs: token ids `[B][T]`, `T <= context`.
    ///   - targets: next-token ids `[B][T]`, -1 where no loss is taken (e.g. prompt tokens, so
    ///     only completion tokens are trained). The output head runs only at the other
    ///     positions.
    ///   - weights: optional per-position weights `[B][T]` (finite); the loss becomes
    ///     `Σ w·CE / (number of counted positions)`.
    @discardableResult
    public func forwardBackward(inputs: [[Int]], targets: [[Int]],
                                weights: [[Float]]? = nil) throws(LlamaError) -> Float {
        try requireFloat32("a backward pass")
        let (batch, tgt, w) = try validate(inputs: inputs, targets: targets, weights: weights)
        return forwardBackward(batch, tgt, w)
    }

    /// Refuses `operation` unless the matrices are float32.
    func requireFloat32(_ operation: String) throws(LlamaError) {
        guard weightFormat == .float32 else { throw .quantizedWeights(operation: operation) }
    }

    func forwardBackward(_ batch: LlamaTokenBatch, _ tgt: LlamaTokenBatch, _ weights: [Float]?) -> Float {
        let c = config, C = c.width, V = c.vocab, T = batch.time, N = batch.batch * T
        let a = forwardBlocks(batch, saveProbabilities: true)
        let (h, rows, loss) = headLoss(a, tgt, weights, backward: true)
        let M = h.M
        // A fully frozen model (only adapters train) needs no gradient buffer: its
        // `layout.total` floats are neither allocated nor zeroed.
        if store.trainable.contains(where: { $0.contains(true) }) {
            store.ensureGradients().zero()
        } else {
            store.gradients?.zero()
        }
        let (g, dres) = a.backwardBuffers(config: c)
        Linear.backward(dinp: h.dnormed.data, dweight: store.gradient(.tokenEmbedding),
                        dout: h.logits.data, inp: h.normed.data,
                        weight: store.value(.tokenEmbedding), N: M, C: C, OC: V)
        h.dgathered.zero()
        RMSNorm.backward(dinp: h.dgathered.data, dweight: store.gradient(.outputNorm),
                         dout: h.dnormed.data, inp: h.gathered.data, weight: store.value(.outputNorm),
                         rstd: h.rstd.data, N: M, C: C)
        dres.zero()
        for (j, i) in rows.enumerated() {
            (dres.data + i * C).update(from: h.dgathered.data + j * C, count: C)
        }
        for l in stride(from: c.layers - 1, through: 0, by: -1) {
            blocks[l].backward(dres: dres.data, inp: a.residual.data + l * N * C,
                               buffers: a.blocks[l], layout: a.layout, T: T, gradients: g)
        }
        if let dwte = store.gradient(.tokenEmbedding) {
            batch.ids.withUnsafeBufferPointer { tok in
                guard let tokens = tok.baseAddress else { return }
                TokenEmbedding.backward(dwte: dwte, dout: dres.data, tokens: tokens, N: N, C: C)
            }
        }
        return loss
    }

    /// One AdamW step over the trained tensors: forward, backward, global-norm clipping,
    /// update. Frozen tensors and their optimizer moments are left unchanged.
    ///
    /// If the loss or any gradient is NaN or infinite the step is refused with
    /// ``LlamaError/nonFiniteLoss(_:)`` or ``LlamaError/nonFiniteGradient(norm:)`` and neither
    /// the weights nor `optimizer` change.
    @discardableResult
    public func trainStep(inputs: [[Int]], targets: [[Int]], optimizer: AdamW,
                          learningRate: Float, maxGradNorm: Float = 1.0,
                          weights: [[Float]]? = nil) throws(LlamaError) -> TrainStepResult {
        try requireFloat32("training")
        guard optimizer.m.count == layout.total else {
            throw .optimizerMismatch(expected: layout.total, got: optimizer.m.count)
        }
        let (batch, tgt, w) = try validate(inputs: inputs, targets: targets, weights: weights)
        let loss = forwardBackward(batch, tgt, w)
        guard loss.isFinite else { throw .nonFiniteLoss(loss) }
        let grads = store.ensureGradients()
        let norm = GradientClipping.globalNorm(grads.data, count: layout.total)
        guard norm.isFinite else { throw .nonFiniteGradient(norm: norm) }
        let scale = GradientClipping.scale(norm: norm, maxNorm: maxGradNorm)
        optimizer.update(params: parameters.data, grads: grads.data, segments: trainableSegments,
                         lr: learningRate, gradScale: scale, onlySegments: true)
        return TrainStepResult(loss: loss, gradNorm: norm, learningRate: learningRate)
    }
}
