import CURecTensor
import Foundation

/// Which next-item objective a training step optimises.
public enum SASRecObjective: String, Sendable, Codable, Equatable {
    /// Binary cross-entropy against one sampled negative per position (the paper's loss).
    case bce
    /// Full softmax cross-entropy over every item.
    case softmax
}

/// Activations of one forward pass over `[B, T]` item sequences, kept for the backward pass.
/// `N = B·T`, `C` width, `H` feed-forward width, `NH` heads, `n` items, `Lb` blocks.
final class SASRecActivations {
    let B: Int, T: Int
    let encoded: Tensor     // [N,C]      item table rows + position rows
    let ln1: Tensor         // [Lb,N,C]
    let ln1Mean: Tensor     // [Lb,N]
    let ln1Rstd: Tensor     // [Lb,N]
    let qkv: Tensor         // [Lb,N,3C]
    let atty: Tensor        // [Lb,N,C]
    let att: Tensor         // [Lb,B,NH,T,T]
    let residual2: Tensor   // [Lb,N,C]
    let ln2: Tensor         // [Lb,N,C]
    let ln2Mean: Tensor     // [Lb,N]
    let ln2Rstd: Tensor     // [Lb,N]
    let fc1: Tensor         // [Lb,N,H]
    let fc1Gelu: Tensor     // [Lb,N,H]
    let residual3: Tensor   // [Lb,N,C]
    let lnf: Tensor         // [N,C]      the hidden states h
    let lnfMean: Tensor     // [N]
    let lnfRstd: Tensor     // [N]
    let losses: Tensor      // [N]
    // Gradient scratch, reused block after block (only allocated for training).
    let dresidual: Tensor   // [N,C]
    let dln: Tensor         // [N,C]
    let datty: Tensor       // [N,C]
    let dqkv: Tensor        // [N,3C]
    let dfc: Tensor         // [N,H]
    var logits: Tensor?     // [N,n]      softmax objective only

    init(config c: SASRecConfig, B: Int, T: Int, training: Bool) {
        self.B = B
        self.T = T
        let L = c.blocks, C = c.width, H = c.hidden, N = B * T
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
        fc1 = Tensor(uncheckedZeros: [L, N, H])
        fc1Gelu = Tensor(uncheckedZeros: [L, N, H])
        residual3 = Tensor(uncheckedZeros: [L, N, C])
        lnf = Tensor(uncheckedZeros: [N, C])
        lnfMean = Tensor(uncheckedZeros: [N])
        lnfRstd = Tensor(uncheckedZeros: [N])
        losses = Tensor(uncheckedZeros: [N])
        let g = training ? N : 0
        dresidual = Tensor(uncheckedZeros: [g, C])
        dln = Tensor(uncheckedZeros: [g, C])
        datty = Tensor(uncheckedZeros: [g, C])
        dqkv = Tensor(uncheckedZeros: [g, 3 * C])
        dfc = Tensor(uncheckedZeros: [g, H])
    }

    /// Block `l`'s part of the stacked buffers, as the block writes and reads it.
    func block(_ l: Int) -> TransformerBlockActivations {
        let N = B * T, C = encoded.shape[1], H = fc1.shape[2]
        return TransformerBlockActivations(
            ln1: ln1.data + l * N * C, ln1Mean: ln1Mean.data + l * N, ln1Rstd: ln1Rstd.data + l * N,
            qkv: qkv.data + l * N * 3 * C, atty: atty.data + l * N * C, mid: residual2.data + l * N * C,
            ln2: ln2.data + l * N * C, ln2Mean: ln2Mean.data + l * N, ln2Rstd: ln2Rstd.data + l * N,
            fc: fc1.data + l * N * H, fcGelu: fc1Gelu.data + l * N * H)
    }
}

/// A batch of right-padded item sequences `[B, T]` with next-item targets.
///
/// Padding sits at the END of a row (input any valid item, target -1). With causal attention
/// a real position never attends to a later one, so padding changes neither the outputs nor
/// the gradients of real positions; position `t` is the `t`-th item of the window.
public struct SASRecBatch: Sendable, Equatable {
    public let B: Int
    public let T: Int
    /// `[B*T]` input items.
    public var inputs: [Int32]
    /// `[B*T]` next items, -1 for padding.
    public var targets: [Int32]
    /// `[B*T]` sampled negative items (BCE objective), ignored where the target is -1.
    public var negatives: [Int32]
    /// `[B]` the user of each row; required by a model with user features
    /// (`config.userFeatureDimension > 0`), ignored by one without.
    public var users: [Int32]?

    /// Validates shapes, item ranges and (for a model with user features) the users against `config`.
    public init(B: Int, T: Int, inputs: [Int32], targets: [Int32], negatives: [Int32], users: [Int32]? = nil,
                config: SASRecConfig) throws(SASRecError) {
        guard B > 0, T > 0, T <= config.maxLength else {
            throw .invalidInput("batch shape [\(B), \(T)] must be positive with T <= maxLength \(config.maxLength)")
        }
        guard inputs.count == B * T, targets.count == B * T, negatives.count == B * T else {
            throw .invalidInput("inputs, targets and negatives must each hold B*T = \(B * T) items, got \(inputs.count), \(targets.count), \(negatives.count)")
        }
        let n = config.itemCount
        for x in inputs where x < 0 || Int(x) >= n { throw .itemOutOfRange(item: Int(x), itemCount: n) }
        for t in targets where t < -1 || Int(t) >= n { throw .itemOutOfRange(item: Int(t), itemCount: n) }
        for (t, q) in zip(targets, negatives) where t >= 0 && (q < 0 || Int(q) >= n) {
            throw .itemOutOfRange(item: Int(q), itemCount: n)
        }
        guard targets.contains(where: { $0 >= 0 }) else { throw .invalidInput("every target is padding (-1)") }
        if config.userFeatureDimension > 0 { try SASRecModel.checkUsers(users, rows: B, config: config) }
        self.B = B
        self.T = T
        self.inputs = inputs
        self.targets = targets
        self.negatives = negatives
        self.users = users
    }
}

/// SASRec: self-attentive sequential recommendation (Kang & McAuley, 2018), written out with
/// explicit forward and backward passes on the CURecTensor layers.
///
/// For a window of the user's items `s_0 … s_{T−1}` (oldest first):
///
///     E        = itemEmb + F @ Wf                       [n,C]   (F: fixed item features [n,D])
///     V        = Fu @ Wu                                [U,C]   (Fu: fixed user features [U,Du];
///                                                               only when Du > 0, no bias)
///     x_t      = E[s_t] + P[t] (+ V[u])                 [T,C]   u: the sequence's user
///     block ×Lb: x = x + Proj(CausalAttn(LN1(x)))        pre-LN: GPT's block (``TransformerBlock``),
///                x = x + FC2(GELU(FC1(LN2(x))))          point-wise FFN, C → H → C
///     h_t      = LNf(x_t)                               [T,C]
///     score_t(i) = h_t · E[i]                           the relevance of item i as s_{t+1}
///
/// Parameters live in one flat buffer laid out by ``SASRecLayout``; gradients in a buffer of
/// the same layout. Training calls are not thread-safe (one task at a time); scoring
/// (``hiddenStates(sequences:)``, ``scores(hidden:candidates:into:)``) only reads the
/// parameters and the item table and may run concurrently once training is over.
public final class SASRecModel: @unchecked Sendable {
    public let config: SASRecConfig
    public let layout: SASRecLayout
    /// All weights, flat (`layout.total` floats).
    public let parameters: Tensor
    /// Gradients of the last ``forwardBackward(_:objective:)``, same layout.
    public let gradients: Tensor
    /// Fixed item features `[n, D]`, nil for an ID-only model or a model loaded for scoring.
    public let features: Tensor?
    /// Effective item embeddings `E = itemEmb + F @ Wf` `[n, C]`, refreshed by
    /// ``refreshItemTable()`` (after every training step and on load).
    public let itemTable: Tensor
    /// Fixed user features `[U, Du]`, nil for a model without user features or one loaded
    /// for scoring.
    public let userFeatures: Tensor?
    /// Projected user features `V = Fu @ Wu` `[U, C]` (`[0, C]` without user features),
    /// refreshed with the item table.
    public let userTable: Tensor
    var acts: SASRecActivations?
    /// Scratch of the inference forwards (``hiddenStates(sequences:users:)``), reused.
    let inferencePool = SASRecInferencePool()

    /// A new model: embeddings and matrices `N(0, 0.02²)`, the output projections of each
    /// block `N(0, (0.02/√(2·blocks))²)`, biases 0, LayerNorm weights 1. Deterministic per seed.
    ///
    /// - Parameters:
    ///   - features: row-major `[itemCount x featureDimension]`; required (and only allowed)
    ///     when `config.featureDimension > 0`.
    ///   - userFeatures: row-major `[userCount x userFeatureDimension]`; required (and only
    ///     allowed) when `config.userFeatureDimension > 0`.
    public init(config: SASRecConfig, features: [Float]? = nil, userFeatures: [Float]? = nil,
                seed: UInt64) throws(SASRecError) {
        try config.validate()
        let n = config.itemCount, D = config.featureDimension
        if D > 0 {
            guard let features else { throw .featureShapeMismatch(expected: n * D, got: 0) }
            guard features.count == n * D else { throw .featureShapeMismatch(expected: n * D, got: features.count) }
            guard features.allSatisfy({ $0.isFinite }) else { throw .invalidInput("item features must be finite") }
            let f = Tensor(uncheckedZeros: [n, D])
            features.withUnsafeBufferPointer { f.data.update(from: $0.baseAddress!, count: n * D) }
            self.features = f
        } else {
            guard features == nil || features!.isEmpty else {
                throw .featureShapeMismatch(expected: 0, got: features!.count)
            }
            self.features = nil
        }
        let U = config.userCount, Du = config.userFeatureDimension
        if Du > 0 {
            guard let userFeatures else { throw .userFeatureShapeMismatch(expected: U * Du, got: 0) }
            guard userFeatures.count == U * Du else {
                throw .userFeatureShapeMismatch(expected: U * Du, got: userFeatures.count)
            }
            guard userFeatures.allSatisfy({ $0.isFinite }) else { throw .invalidInput("user features must be finite") }
            let f = Tensor(uncheckedZeros: [U, Du])
            userFeatures.withUnsafeBufferPointer { f.data.update(from: $0.baseAddress!, count: U * Du) }
            self.userFeatures = f
        } else {
            if let userFeatures, !userFeatures.isEmpty {
                throw .userFeatureShapeMismatch(expected: 0, got: userFeatures.count)
            }
            self.userFeatures = nil
        }
        self.config = config
        self.layout = SASRecLayout(config: config)
        self.parameters = Tensor(uncheckedZeros: [layout.total])
        self.gradients = Tensor(uncheckedZeros: [layout.total])
        self.itemTable = Tensor(uncheckedZeros: [n, config.width])
        self.userTable = Tensor(uncheckedZeros: [Du > 0 ? U : 0, config.width])
        var rng = Xoshiro256(seed: seed)
        let p = parameters.data, C = config.width
        rng.fillGaussian(p, count: layout.blockStart, std: 0.02)
        let projStd = 0.02 / Float(2 * config.blocks).squareRoot()
        for b in 0..<config.blocks {
            for q in SASRecLayout.BlockParam.allCases {
                let ptr = p + layout.offset(q, block: b), count = layout.blockSizes[q.rawValue]
                switch q {
                case .qkvw, .fc1w: rng.fillGaussian(ptr, count: count, std: 0.02)
                case .projw, .fc2w: rng.fillGaussian(ptr, count: count, std: projStd)
                case .ln1w, .ln2w: ptr.update(repeating: 1, count: count)
                default: break
                }
            }
        }
        (p + layout.finalNormWeight).update(repeating: 1, count: C)
        refreshItemTable()
    }

    /// A model for scoring from saved weights, item table and (with user features) user
    /// table `[userCount x width]` (no features, no training).
    public init(config: SASRecConfig, parameters: [Float], itemTable: [Float],
                userTable: [Float] = []) throws(SASRecError) {
        try config.validate()
        let layout = SASRecLayout(config: config)
        guard parameters.count == layout.total else {
            throw .storage("the weights hold \(parameters.count) floats, \(config) needs \(layout.total)")
        }
        guard itemTable.count == config.itemCount * config.width else {
            throw .storage("the item table holds \(itemTable.count) floats, expected \(config.itemCount * config.width)")
        }
        let userRows = config.userFeatureDimension > 0 ? config.userCount : 0
        guard userTable.count == userRows * config.width else {
            throw .storage("the user table holds \(userTable.count) floats, expected \(userRows * config.width)")
        }
        self.config = config
        self.layout = layout
        self.parameters = Tensor(uncheckedZeros: [layout.total])
        self.gradients = Tensor(uncheckedZeros: [0])
        self.features = nil
        self.itemTable = Tensor(uncheckedZeros: [config.itemCount, config.width])
        self.userFeatures = nil
        self.userTable = Tensor(uncheckedZeros: [userRows, config.width])
        parameters.withUnsafeBufferPointer { self.parameters.data.update(from: $0.baseAddress!, count: layout.total) }
        itemTable.withUnsafeBufferPointer { self.itemTable.data.update(from: $0.baseAddress!, count: $0.count) }
        if userRows > 0 {
            userTable.withUnsafeBufferPointer { self.userTable.data.update(from: $0.baseAddress!, count: $0.count) }
        }
    }

    @inline(__always) func w(_ q: SASRecLayout.BlockParam, _ b: Int) -> UnsafeMutablePointer<Float> {
        parameters.data + layout.offset(q, block: b)
    }

    @inline(__always) func g(_ q: SASRecLayout.BlockParam, _ b: Int) -> UnsafeMutablePointer<Float> {
        gradients.data + layout.offset(q, block: b)
    }

    /// The transformer block every layer runs: GPT's (``TransformerBlock``), MLP width `hidden`.
    var block: TransformerBlock { TransformerBlock(width: config.width, heads: config.heads, hidden: config.hidden) }

    /// The tensors of block `b` in `buffer` (the weights or the gradients).
    func blockTensors(_ buffer: Tensor, _ b: Int) -> TransformerBlockWeights {
        func t(_ q: SASRecLayout.BlockParam) -> UnsafeMutablePointer<Float> { buffer.data + layout.offset(q, block: b) }
        return TransformerBlockWeights(
            ln1Weight: t(.ln1w), ln1Bias: t(.ln1b), qkvWeight: t(.qkvw), qkvBias: t(.qkvb),
            projWeight: t(.projw), projBias: t(.projb), ln2Weight: t(.ln2w), ln2Bias: t(.ln2b),
            fcWeight: t(.fc1w), fcBias: t(.fc1b), fcProjWeight: t(.fc2w), fcProjBias: t(.fc2b))
    }

    func blockWeights(_ b: Int) -> TransformerBlockWeights { blockTensors(parameters, b) }
    func blockGradients(_ b: Int) -> TransformerBlockWeights { blockTensors(gradients, b) }

    /// Recomputes ``itemTable`` from the ID embeddings and the feature projection, and
    /// ``userTable`` from the user features and their projection. A model loaded for scoring
    /// (features not kept) keeps its saved tables.
    public func refreshItemTable() {
        if !(config.featureDimension > 0 && features == nil) {
            FeatureProjection.forward(table: itemTable.data, emb: parameters.data + layout.itemEmbedding,
                                      features: features.map { UnsafePointer($0.data) },
                                      weight: parameters.data + layout.featureProjection,
                                      n: config.itemCount, D: config.featureDimension, C: config.width)
        }
        if let userFeatures {
            // V[U,C] = Fu[U,Du] @ Wu[Du,C]
            UserProjection.table(table: userTable.data, features: userFeatures.data,
                                 weight: parameters.data + layout.userProjection,
                                 U: config.userCount, Du: config.userFeatureDimension, C: config.width)
        }
    }

    /// Checks the per-row users of a model with user features: present, `rows` of them, each
    /// in `0..<userCount`.
    static func checkUsers(_ users: [Int32]?, rows: Int, config: SASRecConfig) throws(SASRecError) {
        guard let users else {
            throw .invalidInput("this model has user features (\(config.userFeatureDimension) dimensions): give the user of every row")
        }
        guard users.count == rows else {
            throw .invalidInput("\(users.count) users given for \(rows) rows; give one user per row")
        }
        for u in users where u < 0 || Int(u) >= config.userCount {
            throw .userOutOfRange(user: Int(u), userCount: config.userCount)
        }
    }

    func trainingActivations(B: Int, T: Int) -> SASRecActivations {
        if let a = acts, a.B == B, a.T == T { return a }
        acts = nil
        let a = SASRecActivations(config: config, B: B, T: T, training: true)
        acts = a
        return a
    }

    /// Frees the activation buffers kept between training steps.
    public func releaseActivations() { acts = nil }

    // MARK: Forward

    /// Runs the network on `inputs` `[B*T]` (valid items) and, with user features, `users`
    /// `[B]` (checked) up to the hidden states `a.lnf` `[B*T, C]`, reading ``itemTable`` and
    /// ``userTable`` (which must be current).
    func forward(inputs: UnsafePointer<Int32>, users: UnsafePointer<Int32>?, a: SASRecActivations) {
        let c = config, B = a.B, T = a.T, N = B * T
        let L = c.blocks, C = c.width, NH = c.heads
        // encoded[B,T,C] = E[s_t] + P[t]
        Embedding.forward(out: a.encoded.data, tokens: inputs, wte: itemTable.data,
                          wpe: parameters.data + layout.positionEmbedding, B: B, T: T, C: C)
        // encoded[b,t,:] += V[users[b],:]
        if c.userFeatureDimension > 0, let users {
            UserProjection.forward(encoded: a.encoded.data, table: userTable.data, users: users, B: B, T: T, C: C)
        }
        for l in 0..<L {
            let residual = l == 0 ? a.encoded.data : a.residual3.data + (l - 1) * N * C
            block.forward(out: a.residual3.data + l * N * C, inp: residual, weights: blockWeights(l),
                          activations: a.block(l), N: N,
                          attention: .causal(att: a.att.data + l * B * NH * T * T, B: B, T: T))
        }
        LayerNorm.forward(out: a.lnf.data, mean: a.lnfMean.data, rstd: a.lnfRstd.data,
                          inp: a.residual3.data + (L - 1) * N * C,
                          weight: parameters.data + layout.finalNormWeight,
                          bias: parameters.data + layout.finalNormBias, N: N, C: C)
    }

    /// Mean next-item loss of `batch` without touching the gradients (refreshes the item and
    /// user tables). Throws when the batch does not fit the model (shape, missing users).
    public func loss(_ batch: SASRecBatch, objective: SASRecObjective) throws(SASRecError) -> Float {
        try checkBatch(batch)
        refreshItemTable()
        let a = SASRecActivations(config: config, B: batch.B, T: batch.T, training: false)
        let N = batch.B * batch.T, C = config.width, n = config.itemCount
        let valid = batch.targets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) }
        var total: Double = 0
        batch.inputs.withUnsafeBufferPointer { inp in
        batch.targets.withUnsafeBufferPointer { tgt in
        batch.negatives.withUnsafeBufferPointer { neg in
        (batch.users ?? []).withUnsafeBufferPointer { usr in
            forward(inputs: inp.baseAddress!, users: usr.baseAddress, a: a)
            switch objective {
            case .bce:
                total = SampledBCE.forward(losses: a.losses.data, h: a.lnf.data, table: itemTable.data,
                                           positives: tgt.baseAddress!, negatives: neg.baseAddress!, N: N, C: C)
            case .softmax:
                let logits = Tensor(uncheckedZeros: [N, n])
                TiedLMHead.forward(logits: logits.data, inp: a.lnf.data, wte: itemTable.data, N: N, C: C, V: n)
                SoftmaxCrossEntropy.forward(losses: a.losses.data, probs: logits.data, logits: logits.data,
                                            targets: tgt.baseAddress!, N: N, V: n)
                for r in 0..<N { total += Double(a.losses[r]) }
            }
        }}}}
        return Float(total / Double(max(valid, 1)))
    }

    /// Shape and user checks shared by ``loss(_:objective:)`` and ``forwardBackward(_:objective:)``.
    func checkBatch(_ batch: SASRecBatch) throws(SASRecError) {
        guard batch.inputs.count == batch.B * batch.T, batch.targets.count == batch.B * batch.T,
              batch.negatives.count == batch.B * batch.T, batch.T <= config.maxLength else {
            throw .invalidInput("batch shape [\(batch.B), \(batch.T)] does not fit maxLength \(config.maxLength)")
        }
        if config.userFeatureDimension > 0 { try Self.checkUsers(batch.users, rows: batch.B, config: config) }
    }

    // MARK: Backward

    /// Forward and backward pass: returns the mean loss over non-padding positions and leaves
    /// its gradient in ``gradients`` (overwritten). Refreshes the item table first; requires a
    /// model built with its features (see ``trainStep(_:objective:optimizer:learningRate:clip:)``).
    @discardableResult
    public func forwardBackward(_ batch: SASRecBatch, objective: SASRecObjective) throws(SASRecError) -> Float {
        guard features != nil || config.featureDimension == 0, userFeatures != nil || config.userFeatureDimension == 0,
              gradients.count == layout.total else {
            throw .invalidInput("this model was loaded for scoring only; build it with its features to train")
        }
        try checkBatch(batch)
        let c = config, B = batch.B, T = batch.T, N = B * T
        let L = c.blocks, C = c.width, NH = c.heads, n = c.itemCount
        refreshItemTable()
        let a = trainingActivations(B: B, T: T)
        let valid = batch.targets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) }
        let dloss = 1 / Float(max(valid, 1))
        gradients.zero()
        a.dresidual.zero()
        let dres = a.dresidual.data, dln = a.dln.data
        // The gradient of the item table accumulates straight into the ID embedding's slot:
        // ∂E/∂itemEmb is the identity.
        let dtable = gradients.data + layout.itemEmbedding
        var total: Double = 0
        batch.inputs.withUnsafeBufferPointer { inp in
        batch.targets.withUnsafeBufferPointer { tgt in
        batch.negatives.withUnsafeBufferPointer { neg in
        (batch.users ?? []).withUnsafeBufferPointer { usr in
            forward(inputs: inp.baseAddress!, users: usr.baseAddress, a: a)
            switch objective {
            case .bce:
                // dln[N,C] = ∂loss/∂h
                total = SampledBCE.forwardBackward(
                    losses: a.losses.data, dh: dln, dtable: dtable, h: a.lnf.data, table: itemTable.data,
                    positives: tgt.baseAddress!, negatives: neg.baseAddress!, dloss: dloss, N: N, C: C)
            case .softmax:
                if a.logits == nil { a.logits = Tensor(uncheckedZeros: [N, n]) }
                let logits = a.logits!.data
                // logits[N,n] = h @ Eᵀ, then in place dlogits = dloss·(softmax − onehot)
                TiedLMHead.forward(logits: logits, inp: a.lnf.data, wte: itemTable.data, N: N, C: C, V: n)
                SoftmaxCrossEntropy.forwardBackward(losses: a.losses.data, logits: logits,
                                                    targets: tgt.baseAddress!, dloss: dloss, N: N, V: n)
                for r in 0..<N { total += Double(a.losses[r]) }
                // dln[N,C] = dlogits @ E ; dE[n,C] += dlogitsᵀ @ h
                TiedLMHead.backward(dinp: dln, dwte: dtable, dlogits: logits, inp: a.lnf.data,
                                    wte: itemTable.data, N: N, C: C, V: n)
            }
            // Final LayerNorm: dres[N,C] += LNf'(dln)
            LayerNorm.backward(dinp: dres, dweight: gradients.data + layout.finalNormWeight,
                               dbias: gradients.data + layout.finalNormBias, dout: dln,
                               inp: a.residual3.data + (L - 1) * N * C,
                               weight: parameters.data + layout.finalNormWeight,
                               mean: a.lnfMean.data, rstd: a.lnfRstd.data, N: N, C: C)
            let scratch = TransformerBlockScratch(dln: dln, datty: a.datty.data, dqkv: a.dqkv.data, dfc: a.dfc.data)
            for l in stride(from: L - 1, through: 0, by: -1) {
                let residual = l == 0 ? a.encoded.data : a.residual3.data + (l - 1) * N * C
                block.backward(dres: dres, inp: residual, weights: blockWeights(l), gradients: blockGradients(l),
                               activations: a.block(l), att: a.att.data + l * B * NH * T * T, scratch: scratch,
                               B: B, T: T)
            }
            // dres = ∂/∂encoded [N,C]: into the item table rows and the position embedding.
            Embedding.backward(dwte: dtable, dwpe: gradients.data + layout.positionEmbedding, dout: dres,
                               tokens: inp.baseAddress!, B: B, T: T, C: C)
            // ... and into the user projection: dWu[Du,C] += Σ_b Fu[users[b]]ᵀ ⊗ Σ_t dres[b,t]
            if c.userFeatureDimension > 0, let users = usr.baseAddress, let userFeatures {
                UserProjection.backward(dweight: gradients.data + layout.userProjection, dencoded: dres,
                                        features: userFeatures.data, users: users,
                                        B: B, T: T, Du: c.userFeatureDimension, C: C)
            }
        }}}}
        // dWf[D,C] += Fᵀ @ dE ; dE is already the ID embedding's gradient.
        FeatureProjection.backward(dweight: gradients.data + layout.featureProjection, dtable: dtable,
                                   features: features.map { UnsafePointer($0.data) },
                                   n: n, D: c.featureDimension, C: C)
        return Float(total / Double(max(valid, 1)))
    }

    /// One AdamW step: forward, backward, global-norm clipping at `clip` (0: none), update, and
    /// a refresh of the item table. A non-finite loss or gradient refuses the step (nothing
    /// changes) with ``SASRecError/nonFinite(_:)``.
    @discardableResult
    public func trainStep(_ batch: SASRecBatch, objective: SASRecObjective, optimizer: AdamW,
                          learningRate: Float, clip: Float) throws(SASRecError) -> Float {
        guard optimizer.m.count == layout.total else {
            throw .invalidInput("the optimizer holds \(optimizer.m.count) parameters, the model \(layout.total)")
        }
        let loss = try forwardBackward(batch, objective: objective)
        guard loss.isFinite else { throw .nonFinite("loss is \(loss)") }
        let norm = GradientClipping.globalNorm(gradients.data, count: layout.total)
        guard norm.isFinite else { throw .nonFinite("gradient norm is \(norm)") }
        optimizer.update(params: parameters.data, grads: gradients.data, segments: layout.segments(config: config),
                         lr: learningRate, gradScale: GradientClipping.scale(norm: norm, maxNorm: clip))
        refreshItemTable()
        return loss
    }

    // MARK: Scoring

    /// `scores[j] = hidden · E[candidates[j]]` for one hidden state `[C]`.
    /// Throws ``SASRecError/itemOutOfRange(item:itemCount:)`` for an unknown candidate.
    public func scores(hidden: UnsafePointer<Float>, candidates: UnsafeBufferPointer<UInt32>,
                       into scores: UnsafeMutableBufferPointer<Float>) throws(SASRecError) {
        let C = config.width, n = config.itemCount
        let table = UnsafePointer(itemTable.data)
        for (j, item) in candidates.enumerated() {
            guard Int(item) < n else { throw .itemOutOfRange(item: Int(item), itemCount: n) }
            let e = table + Int(item) * C
            var lanes = SIMD8<Float>()
            var i = 0
            while i + 8 <= C {
                lanes += UnsafeRawPointer(hidden + i).loadUnaligned(as: SIMD8<Float>.self)
                    * UnsafeRawPointer(e + i).loadUnaligned(as: SIMD8<Float>.self)
                i += 8
            }
            var s = lanes.sum()
            while i < C { s += hidden[i] * e[i]; i += 1 }
            scores[j] = s
        }
    }

    /// Scores of every item `[U, n]` for hidden states `[U, C]` (one matrix product).
    public func allScores(hidden: [Float], users U: Int) -> [Float] {
        let C = config.width, n = config.itemCount
        var out = [Float](repeating: 0, count: U * n)
        guard U > 0 else { return out }
        hidden.withUnsafeBufferPointer { h in
            out.withUnsafeMutableBufferPointer { o in
                BLAS.gemm(transA: false, transB: true, m: U, n: n, k: C, a: h.baseAddress!, lda: C,
                          b: itemTable.data, ldb: C, beta: 0, c: o.baseAddress!, ldc: n)
            }
        }
        return out
    }
}
