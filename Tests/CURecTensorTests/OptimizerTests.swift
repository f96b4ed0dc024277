import CURecTensor
import Foundation
import Testing

@Suite("Optimizer, clipping, RNG, gemm")
struct OptimizerTests {
    @Test("AdamW matches a hand computation, decay only on marked segments")
    func adamw() {
        let p = Tensor(uncheckedZeros: [2]); p[0] = 1; p[1] = 1
        let g = Tensor(uncheckedZeros: [2]); g[0] = 0.5; g[1] = 0.5
        let opt = AdamW(parameterCount: 2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1)
        let segs = [ParameterSegment(range: 0..<1, decay: true), ParameterSegment(range: 1..<2, decay: false)]
        opt.update(params: p.data, grads: g.data, segments: segs, lr: 0.1, gradScale: 0.5)
        // g' = 0.25; m̂ = 0.25, v̂ = 0.0625 → step 1 ; p0 = 1 − 0.1·(1 + 0.1·1), p1 = 1 − 0.1
        #expect(abs(p[0] - 0.89) < 1e-6)
        #expect(abs(p[1] - 0.9) < 1e-6)
        #expect(opt.step == 1)
        #expect(abs(opt.m[0] - 0.025) < 1e-7 && abs(opt.v[0] - 0.000625) < 1e-8)
    }

    @Test("AdamW with onlySegments leaves unlisted ranges and their moments unchanged")
    func adamwOnlySegments() {
        let p = Tensor(uncheckedZeros: [3]); p.fill(1)
        let g = Tensor(uncheckedZeros: [3]); g.fill(0.5)
        let opt = AdamW(parameterCount: 3, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1)
        opt.update(params: p.data, grads: g.data, segments: [ParameterSegment(range: 1..<2, decay: true)],
                   lr: 0.1, gradScale: 0.5, onlySegments: true)
        #expect(p[0] == 1 && p[2] == 1 && opt.m[0] == 0 && opt.v[2] == 0)
        #expect(abs(p[1] - 0.89) < 1e-6)
    }

    @Test("global norm and clip factor; NaN propagates")
    func clipping() {
        let g = Tensor(uncheckedZeros: [40000])
        g[0] = 3; g[39999] = 4
        #expect(GradientClipping.globalNorm(g.data, count: g.count) == 5)
        #expect(GradientClipping.scale(norm: 5, maxNorm: 1) == 0.2)
        #expect(GradientClipping.scale(norm: 0.5, maxNorm: 1) == 1)
        g[20000] = .nan
        #expect(!GradientClipping.globalNorm(g.data, count: g.count).isFinite)
    }

    @Test("seeded RNG is reproducible and roughly standard normal")
    func rng() {
        var a = Xoshiro256(seed: 1), b = Xoshiro256(seed: 1), c = Xoshiro256(seed: 2)
        let xs = (0..<20000).map { _ in a.nextGaussian() }
        #expect(xs == (0..<20000).map { _ in b.nextGaussian() })
        #expect(xs[0] != c.nextGaussian())
        let mean = xs.reduce(0, +) / Float(xs.count)
        let varc = xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(xs.count)
        #expect(abs(mean) < 0.03 && abs(varc - 1) < 0.05)
    }

    @Test("split gemm equals a plain triple loop for every transpose combination, single rows included")
    func gemmSplit() {
        let m = 130, n = 120, k = 140
        var rng = Xoshiro256(seed: 3)
        for ta in [false, true] {
            for tb in [false, true] {
                for (mm, nn) in [(m, n), (n / 4, m), (1, n), (1, 4000)] {
                    let a = Tensor(uncheckedZeros: [mm * k]), b = Tensor(uncheckedZeros: [k * nn])
                    rng.fillGaussian(a.data, count: a.count, std: 1)
                    rng.fillGaussian(b.data, count: b.count, std: 1)
                    let c = Tensor(uncheckedZeros: [mm * nn]); c.fill(1)
                    BLAS.gemm(transA: ta, transB: tb, m: mm, n: nn, k: k, alpha: 0.5, a: a.data,
                              lda: ta ? mm : k, b: b.data, ldb: tb ? k : nn, beta: 2, c: c.data, ldc: nn)
                    var worst: Float = 0
                    for i in 0..<mm {
                        for j in 0..<nn {
                            var s: Float = 0
                            for p in 0..<k {
                                s += (ta ? a[p * mm + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * nn + j])
                            }
                            worst = max(worst, abs(c[i * nn + j] - (0.5 * s + 2)))
                        }
                    }
                    #expect(worst < 1e-3)
                }
            }
        }
    }
}
