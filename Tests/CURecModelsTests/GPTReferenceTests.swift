import CURecModels
import CURecTensor
import Foundation
import Testing

/// Two AdamW steps of a tiny GPT (2 layers, 2 heads, width 16, context 8, vocab 32, batch 2)
/// against the independent float64 numpy implementation in Fixtures/make_gpt_reference.py.
@Suite("GPT vs numpy reference")
struct GPTReferenceTests {
    @Test("forward, backward and two AdamW steps match numpy")
    func matchesNumpy() throws {
        let fx = try GPTReferenceFixture()
        let config = fx.config
        let model = try GPTModel(config: config, seed: 0)
        let initial = try fx.flat(prefix: "init/", config: config)
        try model.parameters.assign(from: Tensor(shape: [initial.count], values: initial))

        // Logits of step 1.
        let logits = try model.logits(inputs: fx.meta.inputs)
        let refLogits = try fx.tensor("step1/logits")
        #expect(maxAbsDiff(logits, refLogits) < 1e-5)

        let opt = model.makeOptimizer(beta1: fx.meta.beta1, beta2: fx.meta.beta2, eps: fx.meta.eps,
                                      weightDecay: fx.meta.weight_decay)
        let r1 = try model.trainStep(inputs: fx.meta.inputs, targets: fx.meta.targets, optimizer: opt,
                                     learningRate: fx.meta.lr, maxGradNorm: fx.meta.max_grad_norm)
        #expect(abs(Double(r1.loss) - fx.meta.loss1) < 1e-5)
        #expect(abs(r1.gradNorm - fx.meta.grad_norm1) / fx.meta.grad_norm1 < 1e-5)
        // Gradients (kept in model.gradients after the step), per tensor.
        let grads = model.gradients.values
        let refGrads = try fx.flat(prefix: "step1/grad/", config: config)
        #expect(relativeError(grads, refGrads) < 1e-5)
        #expect(maxAbsDiff(grads, refGrads) < 1e-6)

        // Updated weights. Adam divides by √v̂, so where the true gradient is zero (the key bias
        // of attention: softmax is shift invariant) float32 rounding noise of ~1e-9 becomes a
        // step of up to lr. Those entries (|g_ref| < 1e-6) are only checked to stay within one
        // step of the reference; every other entry must match to 1e-5.
        let w1 = try fx.flat(prefix: "step1/weights/", config: config)
        let live = refGrads.map { abs($0) >= 1e-6 }
        let p1 = model.parameters.values
        #expect(masked(p1, w1, live) < 1e-5)
        #expect(masked(p1, w1, live.map { !$0 }) <= 2 * fx.meta.lr)
        #expect(live.filter { !$0 }.count < 3 * config.width)

        let r2 = try model.trainStep(inputs: fx.meta.inputs, targets: fx.meta.targets, optimizer: opt,
                                     learningRate: fx.meta.lr, maxGradNorm: fx.meta.max_grad_norm)
        #expect(abs(Double(r2.loss) - fx.meta.loss2) < 1e-5)
        #expect(abs(r2.gradNorm - fx.meta.grad_norm2) / fx.meta.grad_norm2 < 1e-5)
        let w2 = try fx.flat(prefix: "step2/weights/", config: config)
        let p2 = model.parameters.values
        #expect(masked(p2, w2, live) < 2e-5)
        #expect(masked(p2, w2, live.map { !$0 }) <= 4 * fx.meta.lr)
        #expect(opt.step == 2)
    }
}

/// Largest `|a − b|` over the entries where `mask` is true.
func masked(_ a: [Float], _ b: [Float], _ mask: [Bool]) -> Float {
    var m: Float = 0
    for i in 0..<min(a.count, b.count, mask.count) where mask[i] { m = max(m, abs(a[i] - b[i])) }
    return m
}
