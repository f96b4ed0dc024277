@testable import CURecModels
import CURecTensor
import Testing

/// The GPT-style block shared by GPT training, GPT decoding and SASRec, on its own.
@Suite("Transformer block")
struct TransformerBlockTests {
    // C = 8, two heads, an MLP width that is not 4C (as SASRec allows).
    static let block = TransformerBlock(width: 8, heads: 2, hidden: 12)
    static let B = 2, T = 4

    /// Weights (or gradients) of one block in one flat buffer, and pointers to each tensor.
    final class Tensors {
        let buffer: Tensor
        let weights: TransformerBlockWeights
        /// (name, offset, count) of each tensor, for the gradient check.
        let parts: [(String, Int, Int)]

        init(block b: TransformerBlock, seed: UInt64?) {
            let C = b.width, H = b.hidden
            let shapes: [(String, Int)] = [("ln1w", C), ("ln1b", C), ("qkvw", C * 3 * C), ("qkvb", 3 * C),
                                           ("projw", C * C), ("projb", C), ("ln2w", C), ("ln2b", C),
                                           ("fcw", C * H), ("fcb", H), ("fcprojw", H * C), ("fcprojb", C)]
            var parts: [(String, Int, Int)] = []
            var offset = 0
            for (name, count) in shapes {
                parts.append((name, offset, count))
                offset += count
            }
            let storage = Tensor(uncheckedZeros: [offset])
            if let seed {
                var rng = Xoshiro256(seed: seed)
                for (name, o, n) in parts {
                    let norm = name == "ln1w" || name == "ln2w"
                    for i in 0..<n { storage.data[o + i] = norm ? 1 + 0.1 * rng.nextGaussian() : 0.2 * rng.nextGaussian() }
                }
            }
            let p = parts.map { storage.data + $0.1 }
            buffer = storage
            weights = TransformerBlockWeights(
                ln1Weight: p[0], ln1Bias: p[1], qkvWeight: p[2], qkvBias: p[3], projWeight: p[4], projBias: p[5],
                ln2Weight: p[6], ln2Bias: p[7], fcWeight: p[8], fcBias: p[9], fcProjWeight: p[10], fcProjBias: p[11])
            self.parts = parts
        }
    }

    /// Activation buffers for `N` tokens, kept for backward.
    final class Buffers {
        let ln1, ln1Mean, ln1Rstd, qkv, atty, mid, ln2, ln2Mean, ln2Rstd, fc, fcGelu: Tensor
        init(block b: TransformerBlock, N: Int) {
            let C = b.width, H = b.hidden
            ln1 = Tensor(uncheckedZeros: [N, C]); ln1Mean = Tensor(uncheckedZeros: [N]); ln1Rstd = Tensor(uncheckedZeros: [N])
            qkv = Tensor(uncheckedZeros: [N, 3 * C]); atty = Tensor(uncheckedZeros: [N, C]); mid = Tensor(uncheckedZeros: [N, C])
            ln2 = Tensor(uncheckedZeros: [N, C]); ln2Mean = Tensor(uncheckedZeros: [N]); ln2Rstd = Tensor(uncheckedZeros: [N])
            fc = Tensor(uncheckedZeros: [N, H]); fcGelu = Tensor(uncheckedZeros: [N, H])
        }
        var activations: TransformerBlockActivations {
            TransformerBlockActivations(ln1: ln1.data, ln1Mean: ln1Mean.data, ln1Rstd: ln1Rstd.data, qkv: qkv.data,
                                        atty: atty.data, mid: mid.data, ln2: ln2.data, ln2Mean: ln2Mean.data,
                                        ln2Rstd: ln2Rstd.data, fc: fc.data, fcGelu: fcGelu.data)
        }
    }

    @Test("input and every parameter against central differences")
    func gradients() {
        let b = Self.block, B = Self.B, T = Self.T, N = B * T, C = b.width, H = b.hidden
        let tensors = Tensors(block: b, seed: 5), grads = Tensors(block: b, seed: nil)
        let buffers = Buffers(block: b, N: N)
        let att = Tensor(uncheckedZeros: [B, b.heads, T, T])
        let x = GradientProbe.random([N, C], seed: 70), r = GradientProbe.random([N, C], seed: 71)
        let out = Tensor(uncheckedZeros: [N, C])
        func loss() -> Double {
            b.forward(out: out.data, inp: x.data, weights: tensors.weights, activations: buffers.activations, N: N,
                      attention: .causal(att: att.data, B: B, T: T))
            return GradientProbe.dot(out, r)
        }
        _ = loss()
        let dres = r.copy()
        let scratch = [Tensor(uncheckedZeros: [N, C]), Tensor(uncheckedZeros: [N, C]),
                       Tensor(uncheckedZeros: [N, 3 * C]), Tensor(uncheckedZeros: [N, H])]
        b.backward(dres: dres.data, inp: x.data, weights: tensors.weights, gradients: grads.weights,
                   activations: buffers.activations, att: att.data,
                   scratch: TransformerBlockScratch(dln: scratch[0].data, datty: scratch[1].data,
                                                    dqkv: scratch[2].data, dfc: scratch[3].data),
                   B: B, T: T)
        let dx = LlamaModelTests.check(x.data, indices: 0..<x.count, analytic: { dres[$0] }, loss: loss)
        #expect(dx < 1e-3, "input: \(dx)")
        for (name, offset, count) in tensors.parts {
            let e = LlamaModelTests.check(tensors.buffer.data + offset, indices: 0..<count,
                                          analytic: { grads.buffer[offset + $0] }, loss: loss)
            #expect(e < 1e-3, "\(name): \(e)")
        }
    }

    @Test("token by token against the KV cache, the block gives the whole-sequence outputs")
    func cachedMatchesCausal() {
        let b = Self.block, T = Self.T, C = b.width
        let tensors = Tensors(block: b, seed: 9)
        let x = GradientProbe.random([T, C], seed: 80)
        // The whole sequence at once.
        let whole = Tensor(uncheckedZeros: [T, C])
        let att = Tensor(uncheckedZeros: [1, b.heads, T, T])
        let wholeBuffers = Buffers(block: b, N: T)
        withExtendedLifetime(wholeBuffers) {
            b.forward(out: whole.data, inp: x.data, weights: tensors.weights, activations: wholeBuffers.activations,
                      N: T, attention: .causal(att: att.data, B: 1, T: T))
        }
        // One token per step, keys and values from the cache, buffers reused in place as
        // decoding does.
        let cache = GPTKVCache(config: GPTConfig(layers: 1, heads: b.heads, width: C, context: T, vocab: 1), rows: 1)
        let buffers = Buffers(block: b, N: 1)
        for t in 0..<T {
            let step = Tensor(uncheckedZeros: [1, C])
            step.data.update(from: x.data + t * C, count: C)
            let own = buffers.activations
            let aliased = TransformerBlockActivations(
                ln1: own.ln1, ln1Mean: own.ln1Mean, ln1Rstd: own.ln1Rstd, qkv: own.qkv, atty: own.atty,
                mid: step.data, ln2: own.ln1, ln2Mean: own.ln1Mean, ln2Rstd: own.ln1Rstd, fc: own.fc, fcGelu: own.fc)
            b.forward(out: step.data, inp: step.data, weights: tensors.weights, activations: aliased, N: 1,
                      attention: .cached(cache, layer: 0, rows: [0], positions: [t]))
            for j in 0..<C {
                #expect(abs(step[j] - whole[t * C + j]) < 1e-5, "position \(t), channel \(j)")
            }
        }
    }
}
