import CURecModels
import CURecTensor
import Foundation

/// Loads the fixtures written by `Fixtures/make_gpt_reference.py`, located beside this file.
struct GPTReferenceFixture {
    struct Config: Decodable {
        let n_layer: Int, n_head: Int, n_embd: Int, n_positions: Int, vocab_size: Int
    }
    struct Index: Decodable { let offset: Int; let shape: [Int] }
    struct Meta: Decodable {
        let config: Config
        let lr: Float, beta1: Float, beta2: Float, eps: Float, weight_decay: Float
        let max_grad_norm: Float
        let inputs: [[Int]], targets: [[Int]]
        let loss1: Double, grad_norm1: Double, loss2: Double, grad_norm2: Double
        let tensors: [String: Index]
    }

    let meta: Meta
    let blob: [Float]

    static var directory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    }

    init() throws {
        let dir = Self.directory
        meta = try JSONDecoder().decode(Meta.self, from: Data(contentsOf: dir.appendingPathComponent("gpt_reference.json")))
        let data = try Data(contentsOf: dir.appendingPathComponent("gpt_reference.bin"))
        blob = data.withUnsafeBytes { raw in
            Array(raw.bindMemory(to: Float.self))
        }
    }

    var config: GPTConfig {
        GPTConfig(layers: meta.config.n_layer, heads: meta.config.n_head, width: meta.config.n_embd,
                  context: meta.config.n_positions, vocab: meta.config.vocab_size)
    }

    func tensor(_ name: String) throws -> [Float] {
        guard let ix = meta.tensors[name] else { throw FixtureError.missing(name) }
        let n = ix.shape.reduce(1, *)
        return Array(blob[ix.offset..<(ix.offset + n)])
    }

    /// The model's flat layout filled from the fixture tensors under `prefix` (HF names).
    func flat(prefix: String, config: GPTConfig) throws -> [Float] {
        let layout = GPTLayout(config: config)
        var out = [Float](repeating: .nan, count: layout.total)
        for p in GPTParam.allCases {
            for l in 0..<(p.perLayer ? config.layers : 1) {
                let values = try tensor(prefix + p.hfName(layer: l))
                let o = layout.offset(p, layer: l)
                out.replaceSubrange(o..<(o + values.count), with: values)
            }
        }
        return out
    }
}

enum FixtureError: Error { case missing(String) }

/// Largest `|a − b|` and the largest `|a − b| / (atol + |b|)`-style relative error.
func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}

/// `‖a − b‖ / max(‖b‖, tiny)` in double precision.
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    var num = 0.0, den = 0.0
    for (x, y) in zip(a, b) {
        num += Double(x - y) * Double(x - y)
        den += Double(y) * Double(y)
    }
    return (num / max(den, 1e-30)).squareRoot()
}
