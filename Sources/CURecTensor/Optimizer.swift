import Foundation

/// A contiguous slice of a flat parameter buffer and whether weight decay applies to it.
public struct ParameterSegment: Sendable, Equatable {
    /// Element range inside the flat buffer.
    public var range: Range<Int>
    /// Whether AdamW's decoupled weight decay applies (matrices and embeddings, not biases/norms).
    public var decay: Bool
    public init(range: Range<Int>, decay: Bool) {
        self.range = range
        self.decay = decay
    }
}

/// AdamW (Loshchilov & Hutter) with decoupled weight decay over one flat parameter buffer.
///
/// Update for step `t` (1-based), gradient `g` (already scaled by the clipping factor):
/// `m = β₁m + (1−β₁)g`, `v = β₂v + (1−β₂)g²`, `p −= lr·(m̂/(√v̂+ε) + λ·p)` where
/// `m̂ = m/(1−β₁ᵗ)`, `v̂ = v/(1−β₂ᵗ)` and `λ` applies only to segments marked `decay`.
public final class AdamW: @unchecked Sendable {
    public var beta1: Float
    public var beta2: Float
    public var eps: Float
    public var weightDecay: Float
    /// Number of updates applied so far.
    public private(set) var step: Int = 0
    /// First moments, one per parameter.
    public let m: Tensor
    /// Second moments, one per parameter.
    public let v: Tensor

    /// Optimizer state for `parameterCount` parameters, moments zero.
    public init(parameterCount: Int, beta1: Float = 0.9, beta2: Float = 0.95, eps: Float = 1e-8,
                weightDecay: Float = 0.1) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
        self.m = Tensor(uncheckedZeros: [max(parameterCount, 0)])
        self.v = Tensor(uncheckedZeros: [max(parameterCount, 0)])
    }

    /// An independent copy of the state (moments and step).
    public func copy() -> AdamW {
        let c = AdamW(parameterCount: m.count, beta1: beta1, beta2: beta2, eps: eps,
                      weightDecay: weightDecay)
        c.m.data.update(from: m.data, count: m.count)
        c.v.data.update(from: v.data, count: v.count)
        c.step = step
        return c
    }

    /// Sets the number of updates taken, for state restored from a checkpoint (the bias
    /// corrections of the next update depend on it). Negative values count as 0.
    public func restoreStep(_ step: Int) { self.step = max(step, 0) }

    /// Applies one update to `params` from `grads · gradScale`.
    ///
    /// - Parameters:
    ///   - params: flat parameters, `m.count` elements, updated in place.
    ///   - grads: gradients with the same layout.
    ///   - segments: which ranges get weight decay; ranges not listed are updated without decay,
    ///     or, with `onlySegments`, left unchanged (frozen parameters: neither they nor their
    ///     moments move).
    ///   - lr: learning rate of this step.
    ///   - gradScale: multiplier for the gradients (the clipping factor, 1 when not clipped).
    ///   - onlySegments: update only the listed ranges.
    public func update(params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>,
                       segments: [ParameterSegment], lr: Float, gradScale: Float = 1,
                       onlySegments: Bool = false) {
        step += 1
        let b1 = beta1, b2 = beta2, e = eps
        let c1 = 1 - Float(pow(Double(b1), Double(step)))
        let c2 = 1 - Float(pow(Double(b2), Double(step)))
        let n = m.count
        // Decay per element: segments marked `decay` get `weightDecay`, everything else 0.
        var ranges: [(Range<Int>, Float)] = []
        var covered = 0
        for s in segments.sorted(by: { $0.range.lowerBound < $1.range.lowerBound }) {
            let r = s.range.clamped(to: covered..<n)
            if r.lowerBound > covered && !onlySegments { ranges.append((covered..<r.lowerBound, 0)) }
            if !r.isEmpty { ranges.append((r, s.decay ? weightDecay : 0)) }
            covered = max(covered, r.upperBound)
        }
        if covered < n && !onlySegments { ranges.append((covered..<n, 0)) }
        let pp = SendablePointer(params), mp = SendablePointer(m.data), vp = SendablePointer(v.data)
        for (range, wd) in ranges {
            Parallel.forRange(range.count, grain: 16384) { r in
                for j in r {
                    let i = range.lowerBound + j
                    let g = grads[i] * gradScale
                    let mi = b1 * mp.p[i] + (1 - b1) * g
                    let vi = b2 * vp.p[i] + (1 - b2) * g * g
                    mp.p[i] = mi
                    vp.p[i] = vi
                    let mhat = mi / c1, vhat = vi / c2
                    pp.p[i] -= lr * (mhat / (vhat.squareRoot() + e) + wd * pp.p[i])
                }
            }
        }
    }
}

/// Global-norm gradient clipping.
public enum GradientClipping {
    /// `‖g‖₂` over all `count` gradients, accumulated in double precision. NaN or ±inf in any
    /// gradient makes the result non-finite.
    public static func globalNorm(_ grads: UnsafePointer<Float>, count: Int) -> Double {
        let chunks = min(Parallel.workers, max(1, count / 16384))
        var partial = [Double](repeating: 0, count: chunks)
        partial.withUnsafeMutableBufferPointer { buf in
            guard let base = buf.baseAddress else { return }
            let out = SendablePointer(base)
            Parallel.forEach(chunks) { c in
                var s: Double = 0
                var acc: Float = 0
                var k = 0
                for i in (count * c / chunks)..<(count * (c + 1) / chunks) {
                    acc += grads[i] * grads[i]
                    k += 1
                    if k == 1024 { s += Double(acc); acc = 0; k = 0 }
                }
                out.p[c] = s + Double(acc)
            }
        }
        return partial.reduce(0, +).squareRoot()
    }

    /// The factor that brings a gradient of norm `norm` down to `maxNorm` (1 if already below).
    public static func scale(norm: Double, maxNorm: Float) -> Float {
        guard maxNorm > 0, norm > Double(maxNorm) else { return 1 }
        return Float(Double(maxNorm) / norm)
    }
}

/// Learning rate: linear warm-up to `maxLR`, then cosine decay to `minLR` at `totalSteps`.
public struct CosineSchedule: Sendable, Equatable {
    public var maxLR: Float
    public var minLR: Float
    public var warmupSteps: Int
    public var totalSteps: Int

    public init(maxLR: Float, minLR: Float, warmupSteps: Int, totalSteps: Int) {
        self.maxLR = maxLR
        self.minLR = minLR
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
    }

    /// Learning rate for the 0-based `step`: `maxLR·(step+1)/warmup` during warm-up,
    /// `minLR + ½(1+cos(π·progress))·(maxLR−minLR)` afterwards, `minLR` past `totalSteps`.
    public func learningRate(step: Int) -> Float {
        if step < warmupSteps { return maxLR * Float(step + 1) / Float(warmupSteps) }
        if step >= totalSteps { return minLR }
        let span = max(totalSteps - warmupSteps, 1)
        let progress = Double(step - warmupSteps) / Double(span)
        let coeff = 0.5 * (1 + cos(Double.pi * progress))
        return minLR + Float(coeff) * (maxLR - minLR)
    }
}
