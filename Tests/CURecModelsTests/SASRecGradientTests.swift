import CURecModels
import CURecTensor
import Foundation
import Testing

/// Finite-difference checks of the SASRec backward pass, in particular the pieces that are
/// new to SASRec: the item and user feature projections and the sampled BCE loss.
@Suite("SASRec gradients")
struct SASRecGradientTests {
    static let config = SASRecConfig(itemCount: 7, maxLength: 5, width: 8, blocks: 2, heads: 2, hidden: 12,
                                     featureDimension: 3)
    /// The same model with user features: 3 users, 4 dimensions.
    static let userConfig = SASRecConfig(itemCount: 7, maxLength: 5, width: 8, blocks: 2, heads: 2, hidden: 12,
                                         featureDimension: 3, userCount: 3, userFeatureDimension: 4)

    static func features(seed: UInt64) -> [Float] {
        var rng = Xoshiro256(seed: seed)
        return (0..<(config.itemCount * config.featureDimension)).map { _ in rng.nextGaussian() }
    }

    static func userFeatures(seed: UInt64) -> [Float] {
        var rng = Xoshiro256(seed: seed)
        return (0..<(userConfig.userCount * userConfig.userFeatureDimension)).map { _ in rng.nextGaussian() }
    }

    /// A model with weights large enough (std ≈ 0.3) that every gradient is well above the
    /// float32 noise of a central difference; with `users`, the model has user features.
    static func model(users: Bool = false) throws -> SASRecModel {
        let m = users
            ? try SASRecModel(config: userConfig, features: features(seed: 3), userFeatures: userFeatures(seed: 4), seed: 11)
            : try SASRecModel(config: config, features: features(seed: 3), seed: 11)
        var rng = Xoshiro256(seed: 5)
        let ln = (0..<config.blocks).flatMap { b in
            [SASRecLayout.BlockParam.ln1w, .ln2w].map { m.layout.offset($0, block: b) }
        } + [m.layout.finalNormWeight]
        for i in 0..<m.layout.total { m.parameters.data[i] = rng.nextGaussian() * 0.3 }
        for o in ln { for i in 0..<config.width { m.parameters.data[o + i] = 1 + rng.nextGaussian() * 0.1 } }
        m.refreshItemTable()
        return m
    }

    /// Two rows of five positions; the second row has two padding positions at its end.
    /// With `users`, the rows belong to users 2 and 0 (user 1 is absent: its features get no gradient).
    static func batch(users: Bool = false) throws -> SASRecBatch {
        try SASRecBatch(B: 2, T: 5,
                        inputs: [0, 3, 5, 2, 6, 1, 4, 4, 0, 0],
                        targets: [3, 5, 2, 6, 1, 4, 4, 2, -1, -1],
                        negatives: [6, 1, 0, 4, 2, 5, 0, 3, 0, 0],
                        users: users ? [2, 0] : nil,
                        config: users ? userConfig : config)
    }

    /// Central differences of the loss for the given parameter indices, against the analytic
    /// gradient; relative error measured against the larger of the two magnitudes.
    static func check(_ objective: SASRecObjective, indices: [Int], label: String, users: Bool = false) throws {
        let m = try model(users: users)
        let b = try batch(users: users)
        try m.forwardBackward(b, objective: objective)
        let analytic = m.gradients.values
        let h: Float = 1e-2
        var worst: Float = 0
        for i in indices {
            let x = m.parameters.data[i]
            m.parameters.data[i] = x + h
            let up = Double(try m.loss(b, objective: objective))
            m.parameters.data[i] = x - h
            let down = Double(try m.loss(b, objective: objective))
            m.parameters.data[i] = x
            let numeric = Float((up - down) / (2 * Double(h)))
            let err = abs(numeric - analytic[i]) / max(abs(numeric), abs(analytic[i]), 1e-2)
            worst = max(worst, err)
            #expect(err < 2e-2, "\(label) \(objective) parameter \(i): numeric \(numeric) analytic \(analytic[i])")
        }
        #expect(worst < 2e-2)
    }

    static var layout: SASRecLayout { SASRecLayout(config: config) }

    @Test("feature projection: every weight's gradient matches finite differences (BCE and softmax)")
    func featureProjection() throws {
        let l = Self.layout
        let indices = Array(l.featureProjection..<(l.featureProjection + Self.config.featureDimension * Self.config.width))
        try Self.check(.bce, indices: indices, label: "featureProjection")
        try Self.check(.softmax, indices: indices, label: "featureProjection")
    }

    @Test("item ID embeddings: positives, negatives, inputs and unused items match finite differences")
    func itemEmbedding() throws {
        let C = Self.config.width
        // Every item row, two channels each (items never in the batch must get 0 for BCE).
        let indices = (0..<Self.config.itemCount).flatMap { [$0 * C + 1, $0 * C + 6] }
        try Self.check(.bce, indices: indices, label: "itemEmbedding")
        try Self.check(.softmax, indices: indices, label: "itemEmbedding")
    }

    @Test("positions, attention, feed-forward and norms match finite differences")
    func blocks() throws {
        let l = Self.layout, C = Self.config.width
        var indices = [l.positionEmbedding + 2, l.positionEmbedding + 3 * C + 5]
        for b in 0..<Self.config.blocks {
            for p in SASRecLayout.BlockParam.allCases {
                let o = l.offset(p, block: b), size = l.blockSizes[p.rawValue]
                indices += [o, o + size / 2, o + size - 1]
            }
        }
        indices += [l.finalNormWeight + 4, l.finalNormBias + 7]
        try Self.check(.bce, indices: indices, label: "blocks")
        try Self.check(.softmax, indices: indices, label: "blocks")
    }

    static var userLayout: SASRecLayout { SASRecLayout(config: userConfig) }

    @Test("user projection: every weight's gradient matches finite differences (BCE and softmax)")
    func userProjection() throws {
        let l = Self.userLayout, c = Self.userConfig
        #expect(l.userProjection == l.featureProjection + c.featureDimension * c.width)
        #expect(l.blockStart == l.userProjection + c.userFeatureDimension * c.width)
        let indices = Array(l.userProjection..<l.blockStart)
        try Self.check(.bce, indices: indices, label: "userProjection", users: true)
        try Self.check(.softmax, indices: indices, label: "userProjection", users: true)
    }

    @Test("with user features on: embeddings, item projection, blocks and norms match finite differences")
    func restWithUserFeatures() throws {
        let l = Self.userLayout, c = Self.userConfig, C = c.width
        var indices = (0..<c.itemCount).flatMap { [$0 * C + 1, $0 * C + 6] }
        indices += [l.positionEmbedding + 2, l.positionEmbedding + 3 * C + 5]
        indices += [l.featureProjection, l.featureProjection + 5, l.featureProjection + c.featureDimension * C - 1]
        for b in 0..<c.blocks {
            for p in SASRecLayout.BlockParam.allCases {
                let o = l.offset(p, block: b), size = l.blockSizes[p.rawValue]
                indices += [o, o + size / 2, o + size - 1]
            }
        }
        indices += [l.finalNormWeight + 4, l.finalNormBias + 7]
        try Self.check(.bce, indices: indices, label: "withUsers", users: true)
        try Self.check(.softmax, indices: indices, label: "withUsers", users: true)
    }

    @Test("user features: the row's user changes the loss; a batch without users is refused")
    func usersMatter() throws {
        let m = try Self.model(users: true)
        var b = try Self.batch(users: true)
        let first = try m.loss(b, objective: .bce)
        b.users = [1, 0]
        #expect(try m.loss(b, objective: .bce) != first)
        b.users = nil
        #expect(throws: SASRecError.self) { try m.loss(b, objective: .bce) }
        #expect(throws: SASRecError.self) { try m.forwardBackward(b, objective: .bce) }
        b.users = [0, 3]
        #expect(throws: SASRecError.userOutOfRange(user: 3, userCount: 3)) { try m.forwardBackward(b, objective: .bce) }
        #expect(throws: SASRecError.self) {
            _ = try SASRecBatch(B: 1, T: 2, inputs: [0, 1], targets: [1, 2], negatives: [3, 3], config: Self.userConfig)
        }
        #expect(throws: SASRecError.self) { _ = try m.hiddenStates(sequences: [[0, 1]]) }
        #expect(throws: SASRecError.userOutOfRange(user: 5, userCount: 3)) {
            _ = try m.hiddenStates(sequences: [[0, 1]], users: [5])
        }
        // Hidden states depend on the user; a model without user features ignores users.
        let h = try m.hiddenStates(sequences: [[0, 1], [0, 1]], users: [0, 2])
        #expect(Array(h[0..<8]) != Array(h[8..<16]))
        let plain = try Self.model()
        #expect(try plain.hiddenStates(sequences: [[0, 1]], users: [7]) == plain.hiddenStates(sequences: [[0, 1]]))
    }

    @Test("user projection kernel: V = Fu·Wu, rows added at every position, dWu = Σ_b Fu[u_b]ᵀ Σ_t dX[b,t]")
    func userProjectionKernel() {
        let U = 3, Du = 2, C = 2, B = 2, T = 2
        let F: [Float] = [1, 0, 0, 1, 1, 1]
        let W: [Float] = [10, 20, 30, 40]
        var table = [Float](repeating: 9, count: U * C)
        UserProjection.table(table: &table, features: F, weight: W, U: U, Du: Du, C: C)
        #expect(table == [10, 20, 30, 40, 40, 60])
        let users: [Int32] = [2, 0]
        var x: [Float] = [1, 1, 2, 2, 3, 3, 4, 4]   // [B,T,C]
        UserProjection.forward(encoded: &x, table: table, users: users, B: B, T: T, C: C)
        #expect(x == [41, 61, 42, 62, 13, 23, 14, 24])
        let dX: [Float] = [1, 2, 3, 4, 5, 6, 7, 8]
        var dW = [Float](repeating: 1, count: Du * C)
        UserProjection.backward(dweight: &dW, dencoded: dX, features: F, users: users, B: B, T: T, Du: Du, C: C)
        // Row 0 (user 2, F = [1,1]): Σ_t dX = [4,6]; row 1 (user 0, F = [1,0]): Σ_t dX = [12,14].
        // dW[0] = [4+12, 6+14] + 1, dW[1] = [4, 6] + 1.
        #expect(dW == [17, 21, 5, 7])
    }

    @Test("padding positions get no gradient: the last position's embedding is unchanged by them")
    func paddingIsInert() throws {
        let m = try Self.model()
        let full = try Self.batch()
        try m.forwardBackward(full, objective: .bce)
        let g1 = m.gradients.values
        // Change the padded inputs and negatives: nothing may change.
        var other = full
        other.inputs[8] = 5
        other.inputs[9] = 2
        other.negatives[8] = 6
        try m.forwardBackward(other, objective: .bce)
        #expect(m.gradients.values == g1)
        // Padding rows of the position embedding (positions 3 and 4 of row 2 only) still get
        // gradient from row 1, so compare the loss instead.
        #expect(try m.loss(full, objective: .bce) == m.loss(other, objective: .bce))
    }

    @Test("sampled BCE kernel: loss and gradients against a double-precision reference")
    func sampledBCEKernel() {
        let N = 4, C = 5, n = 6
        var rng = Xoshiro256(seed: 9)
        let h = (0..<(N * C)).map { _ in rng.nextGaussian() }
        let table = (0..<(n * C)).map { _ in rng.nextGaussian() }
        let pos: [Int32] = [1, 4, -1, 0], neg: [Int32] = [2, 2, 3, 5]
        var losses = [Float](repeating: 0, count: N)
        var dh = [Float](repeating: 7, count: N * C)
        var dtable = [Float](repeating: 0, count: n * C)
        let scale: Float = 0.25
        let total = SampledBCE.forwardBackward(
            losses: &losses, dh: &dh, dtable: &dtable, h: h, table: table, positives: pos, negatives: neg,
            dloss: scale, N: N, C: C)
        var refTotal = 0.0
        var refDh = [Double](repeating: 0, count: N * C), refDt = [Double](repeating: 0, count: n * C)
        for r in 0..<N where pos[r] >= 0 {
            let p = Int(pos[r]), q = Int(neg[r])
            var sp = 0.0, sq = 0.0
            for i in 0..<C {
                sp += Double(h[r * C + i]) * Double(table[p * C + i])
                sq += Double(h[r * C + i]) * Double(table[q * C + i])
            }
            let l = -log(1 / (1 + exp(-sp))) - log(1 - 1 / (1 + exp(-sq)))
            #expect(abs(Double(losses[r]) - l) < 1e-5)
            refTotal += l
            let gp = Double(scale) * (1 / (1 + exp(-sp)) - 1), gq = Double(scale) / (1 + exp(-sq))
            for i in 0..<C {
                refDh[r * C + i] = gp * Double(table[p * C + i]) + gq * Double(table[q * C + i])
                refDt[p * C + i] += gp * Double(h[r * C + i])
                refDt[q * C + i] += gq * Double(h[r * C + i])
            }
        }
        #expect(losses[2] == 0)
        #expect(abs(total - refTotal) < 1e-4)
        for i in 0..<(N * C) { #expect(abs(Double(dh[i]) - refDh[i]) < 1e-5) }
        for i in 0..<(n * C) { #expect(abs(Double(dtable[i]) - refDt[i]) < 1e-5) }
        // Extreme scores stay finite.
        let big = [Float](repeating: 40, count: C)
        var l1 = [Float](repeating: 0, count: 1)
        SampledBCE.forward(losses: &l1, h: big, table: big + big, positives: [1], negatives: [0], N: 1, C: C)
        #expect(l1[0].isFinite && l1[0] > 1000)
    }

    @Test("feature projection kernel: table = emb + F·W and dW = Fᵀ·dE")
    func featureProjectionKernel() {
        let n = 3, D = 2, C = 2
        let emb: [Float] = [1, 2, 3, 4, 5, 6]
        let F: [Float] = [1, 0, 0, 1, 1, 1]
        let W: [Float] = [10, 20, 30, 40]
        var table = [Float](repeating: 0, count: n * C)
        FeatureProjection.forward(table: &table, emb: emb, features: F, weight: W, n: n, D: D, C: C)
        #expect(table == [11, 22, 33, 44, 45, 66])
        let dE: [Float] = [1, 1, 2, 3, 4, 5]
        var dW = [Float](repeating: 1, count: D * C)
        FeatureProjection.backward(dweight: &dW, dtable: dE, features: F, n: n, D: D, C: C)
        // Fᵀ dE = [[1·1+0·2+1·4, 1·1+0·3+1·5], [0·1+1·2+1·4, 0·1+1·3+1·5]] = [[5,6],[6,8]], plus 1.
        #expect(dW == [6, 7, 7, 9])
    }
}
