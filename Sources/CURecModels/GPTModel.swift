import CURecTensor
import Foundation

/// A validated batch of token ids `[B, T]` (row-major `Int32`).
public struct GPTTokenBatch: Sendable, Equatable {
    /// Rows `B`.
    public let batch: Int
    /// Tokens per row `T`.
    public let time: Int
    /// `B*T` ids.
    public let ids: [Int32]

    /// Validates `rows` against `config`: non-empty, rectangular, `T <= context`, ids in range.
    /// With `allowIgnore`, `-1` is accepted (ignored target).
    public init(rows: [[Int]], config: GPTConfig, targets: Bool = false) throws(GPTError) {
        guard let first = rows.first, !first.isEmpty else {
            throw .emptyInput(rows.isEmpty ? "the batch has no rows" : "row 0 has no tokens")
        }
        var ids: [Int32] = []
        ids.reserveCapacity(rows.count * first.count)
        for (r, row) in rows.enumerated() {
            if row.count > config.context {
                throw .sequenceTooLong(row: r, length: row.count, context: config.context)
            }
            guard row.count == first.count else {
                throw .raggedBatch(row: r, length: row.count, expected: first.count)
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

/// What one accepted training step did.
public struct TrainStepResult: Sendable, Equatable {
    /// Mean cross-entropy of the batch before the update.
    public var loss: Float
    /// Global gradient norm before clipping.
    public var gradNorm: Double
    /// Learning rate used.
    public var learningRate: Float

    public init(loss: Float, gradNorm: Double, learningRate: Float) {
        self.loss = loss
        self.gradNorm = gradNorm
        self.learningRate = learningRate
    }
}

/// Activations of one forward pass kept for the backward pass, sized for `[B, T]`.
final class GPTActivations {
    let B: Int, T: Int
    let encoded: Tensor      // [B,T,C]
    let ln1: Tensor          // [L,B,T,C]
    let ln1Mean: Tensor      // [L,B,T]
    let ln1Rstd: Tensor      // [L,B,T]
    let qkv: Tensor          // [L,B,T,3C]
    let atty: Tensor         // [L,B,T,C]
    let att: Tensor          // [L,B,NH,T,T]
    let residual2: Tensor    // [L,B,T,C]
    let ln2: Tensor          // [L,B,T,C]
    let ln2Mean: Tensor      // [L,B,T]
    let ln2Rstd: Tensor      // [L,B,T]
    let fch: Tensor          // [L,B,T,4C]
    let fchGelu: Tensor      // [L,B,T,4C]
    let residual3: Tensor    // [L,B,T,C]
    let lnf: Tensor          // [B,T,C]
    let lnfMean: Tensor      // [B,T]
    let lnfRstd: Tensor      // [B,T]
    let logits: Tensor       // [B,T,V]  (dlogits in place after the fused loss)
    let losses: Tensor       // [B,T]
    // Gradients of one layer's activations, reused layer after layer.
    let dresidual: Tensor    // [B,T,C]
    let dln: Tensor          // [B,T,C]
    let datty: Tensor        // [B,T,C]
    let dqkv: Tensor         // [B,T,3C]
    let dfch: Tensor         // [B,T,4C]

    init(config c: GPTConfig, B: Int, T: Int) {
        self.B = B
        self.T = T
        let L = c.layers, C = c.width, N = B * T
        encoded = Tensor(uncheckedZeros: [N, C])
        ln1 = Tensor(uncheckedZeros: [L, N, C])
        ln1Mean = Tensor(uncheckedZeros: [L, N])
        ln1Rstd = Tensor(uncheckedZeros: [L, N])
        qkv = Tensor(uncheckedZeros: [L, N, 3 * C])
        atty = Tensor(uncheckedZeros: [L, N, C])
        att = Tensor(uncheckedZeros: [L, B, c.heads, T, T])
        residual2 = Tensor(uncheckedZeros: [L, N, C])
        ln2 = Tensor(uncheckedZeros: [L, N, C])
        ln2Mean = Tensor(uncheckedZeros: [L, N])
        ln2Rstd = Tensor(uncheckedZeros: [L, N])
        fch = Tensor(uncheckedZeros: [L, N, 4 * C])
        fchGelu = Tensor(uncheckedZeros: [L, N, 4 * C])
        residual3 = Tensor(uncheckedZeros: [L, N, C])
        lnf = Tensor(uncheckedZeros: [N, C])
        lnfMean = Tensor(uncheckedZeros: [N])
        lnfRstd = Tensor(uncheckedZeros: [N])
        logits = Tensor(uncheckedZeros: [N, c.vocab])
        losses = Tensor(uncheckedZeros: [N])
        dresidual = Tensor(uncheckedZeros: [N, C])
        dln = Tensor(uncheckedZeros: [N, C])
        datty = Tensor(uncheckedZeros: [N, C])
        dqkv = Tensor(uncheckedZeros: [N, 3 * C])
        dfch = Tensor(uncheckedZeros: [N, 4 * C])
    }

    /// Layer `l`'s part of the stacked buffers, as the block writes and reads it.
    func block(_ l: Int) -> TransformerBlockActivations {
        let N = B * T, C = encoded.shape[1]
        return TransformerBlockActivations(
            ln1: ln1.data + l * N * C, ln1Mean: ln1Mean.data + l * N, ln1Rstd: ln1Rstd.data + l * N,
            qkv: qkv.data + l * N * 3 * C, atty: atty.data + l * N * C, mid: residual2.data + l * N * C,
            ln2: ln2.data + l * N * C, ln2Mean: ln2Mean.data + l * N, ln2Rstd: ln2Rstd.data + l * N,
            fc: fch.data + l * N * 4 * C, fcGelu: fchGelu.data + l * N * 4 * C)
    }
}

/// A GPT-2 style decoder-only language model with tied embeddings, trained with explicit
/// forward/backward kernels (no autograd).
///
/// Weights live in one flat buffer (``parameters``) laid out by ``layout``; gradients in a
/// buffer of the same layout. Matrices use the Hugging Face GPT-2 `Conv1D` layout `[in, out]`.
/// A model is a mutable reference type and is not thread-safe: use it from one task at a time.
public final class GPTModel: @unchecked Sendable {
    /// The model's shape.
    public let config: GPTConfig
    /// Offsets of the parameter tensors in ``parameters``.
    public let layout: GPTLayout
    /// All weights, flat (`layout.total` floats).
    public let parameters: Tensor
    /// Gradients of the last ``forwardBackward(inputs:targets:)``, same layout.
    public let gradients: Tensor
    var acts: GPTActivations?
    var lastBatch: GPTTokenBatch?

    /// A model with GPT-2 initialisation: weights `N(0, 0.02²)`, residual projections
    /// (`attn.c_proj`, `mlp.c_proj`) `N(0, (0.02/√(2L))²)`, biases 0, LayerNorm weights 1.
    /// The same seed always gives the same weights.
    public init(config: GPTConfig, seed: UInt64) throws(GPTError) {
        try config.validate()
        self.config = config
        self.layout = GPTLayout(config: config)
        self.parameters = Tensor(uncheckedZeros: [layout.total])
        self.gradients = Tensor(uncheckedZeros: [layout.total])
        var rng = Xoshiro256(seed: seed)
        let projStd = 0.02 / Float(2 * config.layers).squareRoot()
        for p in GPTParam.allCases {
            let n = layout.sizes[p.rawValue] * (p.perLayer ? config.layers : 1)
            let ptr = parameters.data + layout.offsets[p.rawValue]
            switch p {
            case .wte, .wpe, .qkvw, .fcw: rng.fillGaussian(ptr, count: n, std: 0.02)
            case .attprojw, .fcprojw: rng.fillGaussian(ptr, count: n, std: projStd)
            case .ln1w, .ln2w, .lnfw: ptr.update(repeating: 1, count: n)
            default: break
            }
        }
    }

    /// A model with the given flat weights (already laid out by ``GPTLayout``).
    init(config: GPTConfig, parameters: Tensor) {
        self.config = config
        self.layout = GPTLayout(config: config)
        self.parameters = parameters
        self.gradients = Tensor(uncheckedZeros: [layout.total])
    }

    /// An independent copy of the weights (no gradients, activations or optimizer state),
    /// e.g. a frozen reference policy kept beside the model being trained.
    public func frozenCopy() -> GPTModel {
        GPTModel(config: config, parameters: parameters.copy())
    }

    /// Copies the weights of `other` (same config) into this model.
    public func loadWeights(from other: GPTModel) throws(GPTError) {
        guard other.config == config else {
            throw .invalidConfig("cannot copy weights of \(other.config) into \(config)")
        }
        parameters.data.update(from: other.parameters.data, count: layout.total)
    }

    /// Fresh AdamW state for this model.
    public func makeOptimizer(beta1: Float = 0.9, beta2: Float = 0.95, eps: Float = 1e-8,
                              weightDecay: Float = 0.1) -> AdamW {
        AdamW(parameterCount: layout.total, beta1: beta1, beta2: beta2, eps: eps,
              weightDecay: weightDecay)
    }

    /// One named parameter tensor as an array (layer ignored for global tensors).
    public func parameter(_ p: GPTParam, layer: Int = 0) -> [Float] {
        let o = layout.offset(p, layer: layer)
        return Array(UnsafeBufferPointer(start: parameters.data + o, count: layout.sizes[p.rawValue]))
    }

    @inline(__always) func w(_ p: GPTParam, _ l: Int = 0) -> UnsafeMutablePointer<Float> {
        parameters.data + layout.offset(p, layer: l)
    }

    @inline(__always) func g(_ p: GPTParam, _ l: Int = 0) -> UnsafeMutablePointer<Float> {
        gradients.data + layout.offset(p, layer: l)
    }

    /// The transformer block every layer runs (``TransformerBlock``, MLP width 4C).
    var block: TransformerBlock { TransformerBlock(width: config.width, heads: config.heads, hidden: 4 * config.width) }

    /// The tensors of layer `l` in `buffer` (the weights or the gradients).
    func blockTensors(_ buffer: Tensor, _ l: Int) -> TransformerBlockWeights {
        func t(_ p: GPTParam) -> UnsafeMutablePointer<Float> { buffer.data + layout.offset(p, layer: l) }
        return TransformerBlockWeights(
            ln1Weight: t(.ln1w), ln1Bias: t(.ln1b), qkvWeight: t(.qkvw), qkvBias: t(.qkvb),
            projWeight: t(.attprojw), projBias: t(.attprojb), ln2Weight: t(.ln2w), ln2Bias: t(.ln2b),
            fcWeight: t(.fcw), fcBias: t(.fcb), fcProjWeight: t(.fcprojw), fcProjBias: t(.fcprojb))
    }

    func blockWeights(_ l: Int) -> TransformerBlockWeights { blockTensors(parameters, l) }
    func blockGradients(_ l: Int) -> TransformerBlockWeights { blockTensors(gradients, l) }

    func activations(B: Int, T: Int) -> GPTActivations {
        if let a = acts, a.B == B, a.T == T { return a }
        acts = nil
        let a = GPTActivations(config: config, B: B, T: T)
        acts = a
        return a
    }

    /// Frees the activation buffers kept between calls.
    public func releaseActivations() { acts = nil }

    // MARK: Forward

    /// Runs the network up to the logits; they are left in `acts.logits` `[B,T,V]`.
    func forwardLogits(_ batch: GPTTokenBatch) -> GPTActivations {
        let c = config
        let B = batch.batch, T = batch.time, N = B * T
        let L = c.layers, C = c.width, NH = c.heads
        let a = activations(B: B, T: T)
        batch.ids.withUnsafeBufferPointer { tok in
            guard let tokens = tok.baseAddress else { return }
            Embedding.forward(out: a.encoded.data, tokens: tokens, wte: w(.wte), wpe: w(.wpe),
                              B: B, T: T, C: C)
        }
        for l in 0..<L {
            let residual = l == 0 ? a.encoded.data : a.residual3.data + (l - 1) * N * C
            block.forward(out: a.residual3.data + l * N * C, inp: residual, weights: blockWeights(l),
                          activations: a.block(l), N: N,
                          attention: .causal(att: a.att.data + l * B * NH * T * T, B: B, T: T))
        }
        let last = a.residual3.data + (L - 1) * N * C
        LayerNorm.forward(out: a.lnf.data, mean: a.lnfMean.data, rstd: a.lnfRstd.data, inp: last,
                          weight: w(.lnfw), bias: w(.lnfb), N: N, C: C)
        TiedLMHead.forward(logits: a.logits.data, inp: a.lnf.data, wte: w(.wte), N: N, C: C,
                           V: c.vocab)
        return a
    }

    /// Logits `[B, T, V]` (flat, row-major) for the token rows `inputs` `[B][T]`.
    public func logits(inputs: [[Int]]) throws(GPTError) -> [Float] {
        let batch = try GPTTokenBatch(rows: inputs, config: config)
        return forwardLogits(batch).logits.values
    }

    /// Mean cross-entropy of `targets` given `inputs` (both `[B][T]`; target -1 is ignored).
    public func loss(inputs: [[Int]], targets: [[Int]]) throws(GPTError) -> Float {
        let (batch, tgt) = try validate(inputs: inputs, targets: targets)
        let a = forwardLogits(batch)
        let N = batch.batch * batch.time
        tgt.ids.withUnsafeBufferPointer { t in
            guard let tp = t.baseAddress else { return }
            SoftmaxCrossEntropy.forward(losses: a.losses.data, probs: a.logits.data,
                                        logits: a.logits.data, targets: tp, N: N, V: config.vocab)
        }
        return meanLoss(a.losses, tgt)
    }

    func validate(inputs: [[Int]], targets: [[Int]]) throws(GPTError) -> (GPTTokenBatch, GPTTokenBatch) {
        let batch = try GPTTokenBatch(rows: inputs, config: config)
        guard targets.count == inputs.count, targets.allSatisfy({ $0.count == batch.time }) else {
            throw .targetShapeMismatch(inputs: [inputs.count, batch.time],
                                       targets: [targets.count, targets.first?.count ?? 0])
        }
        let tgt = try GPTTokenBatch(rows: targets, config: config, targets: true)
        guard tgt.ids.contains(where: { $0 >= 0 }) else { throw .noTargets }
        return (batch, tgt)
    }

    func meanLoss(_ losses: Tensor, _ tgt: GPTTokenBatch, _ weights: [Float]? = nil) -> Float {
        var sum: Double = 0
        var n = 0
        for i in 0..<tgt.ids.count where tgt.ids[i] >= 0 {
            sum += Double(losses[i]) * Double(weights?[i] ?? 1)
            n += 1
        }
        return Float(sum / Double(max(n, 1)))
    }

    // MARK: Backward

    /// Forward and backward pass: returns the mean cross-entropy over positions whose target is
    /// not -1 and leaves its gradient in ``gradients`` (overwritten, not accumulated).
    ///
    /// - Parameters:
    ///   - inputs: token ids `[B][T]`, `T <= context`.
    ///   - targets: next-token ids `[B][T]`, -1 to ignore a position.
    ///   - weights: optional per-position weights `[B][T]` (finite); the loss becomes
    ///     `Σ w·CE / (number of counted positions)`, e.g. advantages for a policy-gradient step.
    @discardableResult
    public func forwardBackward(inputs: [[Int]], targets: [[Int]],
                                weights: [[Float]]? = nil) throws(GPTError) -> Float {
        let (batch, tgt) = try validate(inputs: inputs, targets: targets)
        return forwardBackward(batch, tgt, try flatWeights(weights, batch))
    }

    func flatWeights(_ weights: [[Float]]?, _ batch: GPTTokenBatch) throws(GPTError) -> [Float]? {
        guard let weights else { return nil }
        guard weights.count == batch.batch, weights.allSatisfy({ $0.count == batch.time }) else {
            throw .invalidArgument("weights have shape [\(weights.count), \(weights.first?.count ?? 0)] but inputs have shape [\(batch.batch), \(batch.time)]")
        }
        let flat = weights.flatMap { $0 }
        guard flat.allSatisfy({ $0.isFinite }) else { throw .invalidArgument("weights must be finite") }
        return flat
    }

    func forwardBackward(_ batch: GPTTokenBatch, _ tgt: GPTTokenBatch, _ weights: [Float]? = nil) -> Float {
        let c = config
        let B = batch.batch, T = batch.time, N = B * T
        let L = c.layers, C = c.width, NH = c.heads, V = c.vocab
        let a = forwardLogits(batch)
        let valid = tgt.ids.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) }
        tgt.ids.withUnsafeBufferPointer { t in
            guard let tp = t.baseAddress else { return }
            if let weights {
                weights.withUnsafeBufferPointer { wb in
                    SoftmaxCrossEntropy.forwardBackward(
                        losses: a.losses.data, logits: a.logits.data, targets: tp,
                        dloss: 1 / Float(valid), weights: wb.baseAddress, N: N, V: V)
                }
            } else {
                SoftmaxCrossEntropy.forwardBackward(losses: a.losses.data, logits: a.logits.data,
                                                    targets: tp, dloss: 1 / Float(valid), N: N, V: V)
            }
        }
        let loss = meanLoss(a.losses, tgt, weights)
        gradients.zero()
        a.dresidual.zero()
        let dres = a.dresidual.data, dln = a.dln.data
        TiedLMHead.backward(dinp: dln, dwte: g(.wte), dlogits: a.logits.data, inp: a.lnf.data,
                            wte: w(.wte), N: N, C: C, V: V)
        LayerNorm.backward(dinp: dres, dweight: g(.lnfw), dbias: g(.lnfb), dout: dln,
                           inp: a.residual3.data + (L - 1) * N * C, weight: w(.lnfw),
                           mean: a.lnfMean.data, rstd: a.lnfRstd.data, N: N, C: C)
        let scratch = TransformerBlockScratch(dln: dln, datty: a.datty.data, dqkv: a.dqkv.data, dfc: a.dfch.data)
        for l in stride(from: L - 1, through: 0, by: -1) {
            let residual = l == 0 ? a.encoded.data : a.residual3.data + (l - 1) * N * C
            block.backward(dres: dres, inp: residual, weights: blockWeights(l), gradients: blockGradients(l),
                           activations: a.block(l), att: a.att.data + l * B * NH * T * T, scratch: scratch, B: B, T: T)
        }
        batch.ids.withUnsafeBufferPointer { tok in
            guard let tokens = tok.baseAddress else { return }
            Embedding.backward(dwte: g(.wte), dwpe: g(.wpe), dout: dres, tokens: tokens,
                               B: B, T: T, C: C)
        }
        return loss
    }

    // MARK: Training

    /// One AdamW step: forward, backward, global-norm clipping, update.
    ///
    /// If the loss or any gradient is NaN or infinite the step is refused with
    /// ``GPTError/nonFiniteLoss(_:)`` or ``GPTError/nonFiniteGradient(norm:)`` and neither the
    /// weights nor `optimizer` change.
    ///
    /// - Parameters:
    ///   - inputs: token ids `[B][T]`.
    ///   - targets: next-token ids `[B][T]` (-1 ignores a position).
    ///   - optimizer: state from ``makeOptimizer(beta1:beta2:eps:weightDecay:)``.
    ///   - learningRate: e.g. from ``CosineSchedule``.
    ///   - maxGradNorm: clip the global gradient norm to this (0 disables clipping).
    ///   - weights: optional per-position loss weights, see ``forwardBackward(inputs:targets:weights:)``.
    @discardableResult
    public func trainStep(inputs: [[Int]], targets: [[Int]], optimizer: AdamW,
                          learningRate: Float, maxGradNorm: Float = 1.0,
                          weights: [[Float]]? = nil) throws(GPTError) -> TrainStepResult {
        guard optimizer.m.count == layout.total else {
            throw .optimizerMismatch(expected: layout.total, got: optimizer.m.count)
        }
        let (batch, tgt) = try validate(inputs: inputs, targets: targets)
        let loss = forwardBackward(batch, tgt, try flatWeights(weights, batch))
        guard loss.isFinite else { throw .nonFiniteLoss(loss) }
        let norm = GradientClipping.globalNorm(gradients.data, count: layout.total)
        guard norm.isFinite else { throw .nonFiniteGradient(norm: norm) }
        let scale = GradientClipping.scale(norm: norm, maxNorm: maxGradNorm)
        optimizer.update(params: parameters.data, grads: gradients.data, segments: layout.segments,
                         lr: learningRate, gradScale: scale)
        return TrainStepResult(loss: loss, gradNorm: norm, learningRate: learningRate)
    }
}
