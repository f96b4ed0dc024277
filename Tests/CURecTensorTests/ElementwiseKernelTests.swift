import CURecTensor
import Foundation
import Testing

/// The eight-lane GELU and LayerNorm kernels against the formulas evaluated with libm, one
/// value at a time, in double precision.
@Suite("Element-wise kernels")
struct ElementwiseKernelTests {
    @Test("GELU and its derivative follow the tanh formula from -12 to 12, tails included")
    func geluMatchesTheFormula() {
        let N = 1003   // not a multiple of eight: the remainder runs the one-value path
        let x = Tensor(uncheckedZeros: [N]), out = Tensor(uncheckedZeros: [N])
        for i in 0..<N { x[i] = -12 + 24 * Float(i) / Float(N - 1) }
        GELU.forward(out: out.data, inp: x.data, N: N)
        let ones = Tensor(uncheckedZeros: [N]), slope = Tensor(uncheckedZeros: [N])
        for i in 0..<N { ones[i] = 1 }
        GELU.backward(dinp: slope.data, inp: x.data, dout: ones.data, N: N)
        let s = (2 / Double.pi).squareRoot()
        var worst = 0.0, worstSlope = 0.0
        for i in 0..<N {
            let v = Double(x[i])
            let th = tanh(s * (v + 0.044715 * v * v * v))
            worst = max(worst, abs(Double(out[i]) - 0.5 * v * (1 + th)))
            let d = 0.5 * (1 + th) + 0.5 * v * (1 - th * th) * s * (1 + 3 * 0.044715 * v * v)
            worstSlope = max(worstSlope, abs(Double(slope[i]) - d))
        }
        // Float rounding of values up to 12 in magnitude: a few 1e-6.
        #expect(worst < 1e-5)
        #expect(worstSlope < 1e-5)
    }

    @Test("LayerNorm rows of widths with and without a remainder of eight")
    func layerNormMatchesTheFormula() {
        for C in [3, 8, 13, 64] {
            let N = 5
            let x = Tensor(uncheckedZeros: [N, C]), w = Tensor(uncheckedZeros: [C]), b = Tensor(uncheckedZeros: [C])
            var rng = Xoshiro256(seed: UInt64(C))
            for i in 0..<(N * C) { x[i] = 3 + 2 * rng.nextGaussian() }
            for i in 0..<C { w[i] = 1 + 0.1 * rng.nextGaussian(); b[i] = 0.1 * rng.nextGaussian() }
            let out = Tensor(uncheckedZeros: [N, C]), mean = Tensor(uncheckedZeros: [N]), rstd = Tensor(uncheckedZeros: [N])
            LayerNorm.forward(out: out.data, mean: mean.data, rstd: rstd.data, inp: x.data, weight: w.data, bias: b.data,
                              N: N, C: C)
            for n in 0..<N {
                let row = (0..<C).map { Double(x[n * C + $0]) }
                let m = row.reduce(0, +) / Double(C)
                let v = row.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(C)
                let r = 1 / (v + Double(LayerNorm.eps)).squareRoot()
                #expect(abs(Double(mean[n]) - m) < 1e-5 && abs(Double(rstd[n]) - r) < 1e-4 * r)
                for i in 0..<C {
                    let expected = (row[i] - m) * r * Double(w[i]) + Double(b[i])
                    #expect(abs(Double(out[n * C + i]) - expected) < 1e-4)
                }
            }
        }
    }
}
