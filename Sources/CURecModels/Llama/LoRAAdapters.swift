import CURecTensor
import Foundation

/// The low-rank adapters of a whole Llama model: one ``LoRAAdapter`` per targeted projection of
/// every block, their parameters in one flat buffer (``parameters``, laid out by ``layout``)
/// with a gradient buffer of the same layout, so that one ``AdamW`` trains them all.
///
/// Adapters are made for a model shape (``modelConfig``), attached to a model with
/// ``attach(to:)`` and removed with ``detach(from:)``. While attached, every forward pass of
/// the model (training, ``LlamaModel/loss(inputs:targets:)``, cached decoding) includes them;
/// dropout applies only while ``isTraining`` is true. The rows of `B` for the query and key
/// projections are in the engine's (GGUF) order; the `peft` files hold them in Hugging Face
/// order (see ``savePeft(directory:baseModelNameOrPath:)``).
///
/// Not thread-safe: use the adapters and their model from one task at a time.
public final class LlamaLoRA: @unchecked Sendable {
    /// The adapters' hyper-parameters.
    public let config: LoRAConfig
    /// The shape of the model the adapters fit.
    public let modelConfig: LlamaConfig
    /// Where each adapter's `A` and `B` sit in ``parameters``.
    public let layout: LoRALayout
    /// The adapters, in ``LoRALayout/slots`` order.
    public let adapters: [LoRAAdapter]
    let storage: LoRAStorage

    /// All adapter parameters, flat (`layout.total` floats).
    public var parameters: Tensor { storage.parameters }
    /// Their gradients, accumulated by the model's backward passes (zero them with
    /// ``zeroGradients()`` before each one).
    public var gradients: Tensor { storage.gradients }

    /// Whether dropout is applied (set it only around training passes).
    public var isTraining: Bool {
        get { storage.training }
        set { storage.training = newValue }
    }

    /// The generator the dropout masks are drawn from (saved in checkpoints to resume exactly).
    public var dropoutGenerator: Xoshiro256 {
        get { storage.generator }
        set { storage.generator = newValue }
    }

    /// Fresh adapters initialised as `peft` does: `A` Kaiming-uniform with `a = √5`, i.e.
    /// `U(−1/√in, 1/√in)`, drawn from `seed`; `B` zero, so the adapted model starts equal to
    /// the base model. The dropout masks are drawn from `dropoutSeed` (default: `seed`).
    public init(config: LoRAConfig, modelConfig: LlamaConfig, seed: UInt64,
                dropoutSeed: UInt64? = nil) throws(LoRAError) {
        try config.validate()
        do { try modelConfig.validate() } catch { throw .invalidConfig("model: \(error.description)") }
        self.config = config
        self.modelConfig = modelConfig
        let layout = LoRALayout(config: config, model: modelConfig)
        self.layout = layout
        let storage = LoRAStorage(count: layout.total, dropoutSeed: dropoutSeed ?? seed)
        self.storage = storage
        self.adapters = layout.slots.map { LoRAAdapter(slot: $0, config: config, storage: storage) }
        var rng = Xoshiro256(seed: seed)
        for slot in layout.slots {
            let bound = 1 / Float(slot.inFeatures).squareRoot()
            let a = storage.parameters.data + slot.a.lowerBound
            for i in 0..<slot.a.count { a[i] = (2 * rng.nextUniform() - 1) * bound }
        }
    }

    /// Total number of adapter parameters.
    public var parameterCount: Int { layout.total }

    /// `A [rank, in]` of one adapter (nil when `target` has no adapter).
    public func a(layer: Int, target: LoRATarget) -> [Float]? {
        layout.slot(layer: layer, target: target).map { values($0.a) }
    }

    /// `B [out, rank]` of one adapter in the engine's row order (nil when `target` has no
    /// adapter).
    public func b(layer: Int, target: LoRATarget) -> [Float]? {
        layout.slot(layer: layer, target: target).map { values($0.b) }
    }

    private func values(_ r: Range<Int>) -> [Float] {
        Array(UnsafeBufferPointer(start: parameters.data + r.lowerBound, count: r.count))
    }

    /// Sets every parameter to zero gradient.
    public func zeroGradients() { gradients.zero() }

    /// One range covering every adapter parameter, with weight decay.
    public var segments: [ParameterSegment] { [ParameterSegment(range: 0..<layout.total, decay: true)] }

    /// Fresh AdamW state for the adapter parameters.
    public func makeOptimizer(beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
                              weightDecay: Float = 0) -> AdamW {
        AdamW(parameterCount: layout.total, beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay)
    }

    /// Puts every adapter on its projection of `model` (replacing any adapter there). The
    /// model's own tensors keep their trainable flags: freeze them with
    /// `model.setTrainable(false)` to train only the adapters.
    public func attach(to model: LlamaModel) throws(LoRAError) {
        guard model.config == modelConfig else { throw .modelMismatch(adapters: modelConfig, model: model.config) }
        for adapter in adapters {
            adapter.slot.target.linear(in: model.blocks[adapter.slot.layer]).adapter = adapter
        }
    }

    /// Removes these adapters from `model` (other adapters stay).
    public func detach(from model: LlamaModel) {
        for block in model.blocks {
            for target in LoRATarget.allCases {
                let linear = target.linear(in: block)
                if let current = linear.adapter as? LoRAAdapter, current.storage === storage {
                    linear.adapter = nil
                }
            }
        }
    }

    /// Adds `s · B·A` into the dense weights of `model`'s targeted projections, so the model
    /// computes what it computes with the adapters attached, without them (detach them first,
    /// or they would count twice). The model's weights change in place; a model with quantized
    /// weights is refused (attach the adapters instead).
    public func merge(into model: LlamaModel) throws(LoRAError) {
        guard model.config == modelConfig else { throw .modelMismatch(adapters: modelConfig, model: model.config) }
        guard model.weightFormat == .float32 else { throw .quantizedModel }
        for slot in layout.slots {
            // W[out,in] += s · B[out,r] · A[r,in]
            let w = model.store.value(slot.target.parameter, slot.layer)
            BLAS.gemm(transA: false, transB: false, m: slot.outFeatures, n: slot.inFeatures, k: config.rank,
                      alpha: config.scaling, a: parameters.data + slot.b.lowerBound, lda: config.rank,
                      b: parameters.data + slot.a.lowerBound, ldb: slot.inFeatures, beta: 1, c: w,
                      ldc: slot.inFeatures)
        }
    }
}
