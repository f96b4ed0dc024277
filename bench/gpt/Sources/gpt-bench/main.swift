import COpenBLAS
import CURecModels
import CURecTensor
import Foundation

// gpt-bench train|generate|sgemm [--key value ...]; prints one JSON object per line.

func arg(_ name: String, _ def: Int) -> Int {
    let a = CommandLine.arguments
    if let i = a.firstIndex(of: "--" + name), i + 1 < a.count, let v = Int(a[i + 1]) { return v }
    return def
}

func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

func peakRSSMiB() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_maxrss) / 1024
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.isEmpty ? 0 : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
}

let mode = CommandLine.arguments.dropFirst().first ?? "train"
let config = GPTConfig(layers: arg("layers", 6), heads: arg("heads", 6), width: arg("width", 384),
                       context: arg("context", 256), vocab: arg("vocab", 8192))
if arg("openblas-threads", 0) == 1 { BLAS.threading = .openBLAS }

switch mode {
case "train":
    let B = arg("batch", 8), T = arg("time", config.context)
    let steps = arg("steps", 5), warmup = arg("warmup", 1)
    let model = try GPTModel(config: config, seed: 1)
    let opt = model.makeOptimizer()
    var rng = Xoshiro256(seed: 2)
    let data = (0..<B).map { _ in (0...T).map { _ in Int(rng.next() % UInt64(config.vocab)) } }
    let x = data.map { Array($0[0..<T]) }, y = data.map { Array($0[1...T]) }
    var times: [Double] = []
    var loss: Float = 0
    for s in 0..<(warmup + steps) {
        let t0 = now()
        loss = try model.trainStep(inputs: x, targets: y, optimizer: opt, learningRate: 3e-4).loss
        if s >= warmup { times.append(now() - t0) }
    }
    let L = Double(config.layers), C = Double(config.width), V = Double(config.vocab)
    let N = Double(B * T)
    // Matrix-product FLOPs of one step (forward ×3 for forward+backward); attention counts the
    // full T×T products that are computed.
    let fwd = 2 * N * (12 * C * C * L + C * V) + 4 * Double(B) * Double(T * T) * C * L
    let flops = 3 * fwd
    let med = median(times)
    print("{\"impl\":\"swift\",\"batch\":\(B),\"time\":\(T),\"params\":\(config.parameterCount),\"step_s\":\(med),\"tokens_per_s\":\(N / med),\"gflops\":\(flops / med / 1e9),\"loss\":\(loss),\"peak_rss_mib\":\(peakRSSMiB()),\"steps\":\(times)}")
case "sgemm":
    let n = arg("n", 2048)
    let a = Tensor(uncheckedZeros: [n, n]), b = Tensor(uncheckedZeros: [n, n]), c = Tensor(uncheckedZeros: [n, n])
    a.fill(0.001); b.fill(0.002)
    openblas_set_num_threads(Int32(Parallel.workers))
    var best = Double.infinity
    for _ in 0..<arg("reps", 6) {
        let t0 = now()
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1,
                    a.data, Int32(n), b.data, Int32(n), 0, c.data, Int32(n))
        best = min(best, now() - t0)
    }
    print("{\"impl\":\"cblas_sgemm\",\"n\":\(n),\"threads\":\(Parallel.workers),\"gflops\":\(2 * Double(n * n * n) / best / 1e9)}")
case "generate":
    let B = arg("batch", 1), newTokens = arg("tokens", 128), promptLen = arg("prompt", 16)
    let model = try GPTModel(config: config, seed: 1)
    var rng = Xoshiro256(seed: 3)
    let prompts = (0..<B).map { _ in (0..<promptLen).map { _ in Int(rng.next() % UInt64(config.vocab)) } }
    var times: [Double] = []
    for r in 0..<(arg("runs", 3) + 1) {
        let t0 = now()
        let out = try model.generate(prompts: prompts, options: GPTSamplingOptions(
            maxTokens: newTokens, temperature: 1, topK: 50, seed: UInt64(r)))
        let dt = now() - t0
        precondition(out.allSatisfy { $0.tokens.count == newTokens })
        if r > 0 { times.append(dt) }
    }
    let med = median(times)
    print("{\"impl\":\"swift\",\"batch\":\(B),\"prompt\":\(promptLen),\"new_tokens\":\(newTokens),\"seconds\":\(med),\"tokens_per_s\":\(Double(B * newTokens) / med),\"peak_rss_mib\":\(peakRSSMiB())}")
default:
    print("usage: gpt-bench train|generate|sgemm [--batch B] [--steps S] ...")
}
