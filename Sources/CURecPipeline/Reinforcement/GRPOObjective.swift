import Foundation

/// The per-token GRPO objective and the cross-entropy weights that optimise it.
///
/// For completion token `t` of a sample with advantage `A`, with `ℓ` its log-probability under
/// the policy being trained, `ℓ_old` under the policy that sampled it and `ℓ_ref` under the
/// reference model:
///
///     ρ  = exp(ℓ - ℓ_old)
///     J_t = min(ρA, clip(ρ, 1-ε, 1+ε)A) - β·(exp(ℓ_ref - ℓ) - (ℓ_ref - ℓ) - 1)
///
/// and the objective is the token-level mean `J = (1/N) Σ_t J_t` over the `N` completion
/// tokens of the batch. Its derivative with respect to `ℓ`:
///
///     dJ_t/dℓ = ρA·[unclipped] + β·(exp(ℓ_ref - ℓ) - 1)
///
/// where "unclipped" means the min takes the ratio term: `ρ <= 1+ε` for `A > 0`, `ρ >= 1-ε`
/// for `A < 0` (no surrogate gradient when `A = 0`). A weighted cross-entropy
/// `L = Σ_t w_t·(-ℓ_t) / n` (the model divides by the `n` counted positions) has
/// `dL/dℓ_t = -w_t/n`; with only completion tokens counted, `n = N`, so `w_t = dJ_t/dℓ` makes
/// `∇L = -∇J` and minimising `L` maximises `J`.
///
/// Log-ratios are clamped to ±20 before exponentiation so that one extreme token cannot make
/// a weight infinite (the clamp only matters far outside any realistic trust region).
struct GRPOObjective: Sendable {
    var clipEpsilon: Float
    var klCoefficient: Float

    static let logRatioLimit: Float = 20

    /// The objective and weights of one batch.
    struct Evaluation: Sendable {
        /// Cross-entropy weight of each completion token, `[sample][token]`.
        var weights: [[Float]]
        /// `J`, the token-level mean objective.
        var objective: Double
        /// Mean per-token KL estimate to the reference (k3, >= 0).
        var kl: Double
        /// Tokens whose surrogate gradient the clip removed.
        var clippedTokens: Int
        /// `N`, completion tokens in the batch.
        var tokens: Int
    }

    /// Evaluates the objective for per-token log-probabilities `[sample][token]` (all three of
    /// the same shape) and one advantage per sample.
    func evaluate(logProbs: [[Float]], oldLogProbs: [[Float]], referenceLogProbs: [[Float]],
                  advantages: [Float]) -> Evaluation {
        let limit = Self.logRatioLimit
        let beta = klCoefficient
        let low = 1 - clipEpsilon, high = 1 + clipEpsilon
        let tokens = logProbs.reduce(0) { $0 + $1.count }
        var weights: [[Float]] = []
        weights.reserveCapacity(logProbs.count)
        var objective = 0.0, kl = 0.0
        var clipped = 0
        for (i, row) in logProbs.enumerated() {
            let a = advantages[i]
            var w = [Float](repeating: 0, count: row.count)
            for t in 0..<row.count {
                let logRatio = min(max(row[t] - oldLogProbs[i][t], -limit), limit)
                let ratio = expf(logRatio)
                var surrogate: Float
                var surrogateGradient: Float = 0
                if a > 0 {
                    surrogate = a * min(ratio, high)
                    if ratio > high { clipped += 1 } else { surrogateGradient = ratio * a }
                } else if a < 0 {
                    surrogate = a * max(ratio, low)
                    if ratio < low { clipped += 1 } else { surrogateGradient = ratio * a }
                } else {
                    surrogate = 0
                }
                let refDiff = min(max(referenceLogProbs[i][t] - row[t], -limit), limit)
                let refRatio = expf(refDiff)
                let k3 = max(0, refRatio - refDiff - 1)
                objective += Double(surrogate) - Double(beta) * Double(k3)
                kl += Double(k3)
                w[t] = surrogateGradient + beta * (refRatio - 1)
            }
            weights.append(w)
        }
        let n = Double(max(tokens, 1))
        return Evaluation(weights: weights, objective: objective / n, kl: kl / n,
                          clippedTokens: clipped, tokens: tokens)
    }

    /// Group-normalised advantages: `(r - mean) / (std + 1e-4)` within each consecutive group
    /// of `groupSize` rewards, with the sample standard deviation (n - 1); a group whose
    /// rewards are all equal gets 0.
    static func advantages(rewards: [Float], groupSize: Int) -> (advantages: [Float], flatGroups: Int) {
        var out = [Float](repeating: 0, count: rewards.count)
        var flat = 0
        var start = 0
        while start < rewards.count {
            let group = rewards[start..<min(start + groupSize, rewards.count)]
            let mean = group.reduce(0.0) { $0 + Double($1) } / Double(group.count)
            if group.allSatisfy({ $0 == group.first }) {
                flat += 1
            } else {
                let squares = group.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) }
                let std = (squares / Double(max(group.count - 1, 1))).squareRoot()
                for i in group.indices { out[i] = Float((Double(rewards[i]) - mean) / (std + 1e-4)) }
            }
            start += groupSize
        }
        return (out, flat)
    }

    /// Training rows for samples `prompt + completion`: inputs are the sequence without its last
    /// token (right-padded with 0), targets the next token on completion positions and -1 on
    /// prompt and padding positions, weights the per-token weights on completion positions.
    static func trainingRows(prompts: [[Int]], completions: [[Int]], weights: [[Float]]? = nil)
        -> (inputs: [[Int]], targets: [[Int]], weights: [[Float]]) {
        let width = zip(prompts, completions).map { $0.count + $1.count - 1 }.max() ?? 0
        var inputs: [[Int]] = [], targets: [[Int]] = [], rowWeights: [[Float]] = []
        for (i, (prompt, completion)) in zip(prompts, completions).enumerated() {
            let sequence = prompt + completion
            var input = [Int](repeating: 0, count: width)
            var target = [Int](repeating: -1, count: width)
            var weight = [Float](repeating: 0, count: width)
            for j in 0..<(sequence.count - 1) {
                input[j] = sequence[j]
                let k = j + 1 - prompt.count   // index of the target in the completion
                if k >= 0 {
                    target[j] = sequence[j + 1]
                    if let weights { weight[j] = weights[i][k] }
                }
            }
            inputs.append(input)
            targets.append(target)
            rowWeights.append(weight)
        }
        return (inputs, targets, rowWeights)
    }
}
