import CURecModels
import CURecTensor
import Foundation

// llama-engine-bench train|generate --model PATH [--key value ...]; prints one JSON object per line.
// Weights are the GGUF file's tensors dequantized to float32.

func arg(_ name: String, _ def: Int) -> Int {
    let a = CommandLine.arguments
    if let i = a.firstIndex(of: "--" + name), i + 1 < a.count, let v = Int(a[i + 1]) { return v }
    return def
}

func stringArg(_ name: String) -> String? {
    let a = CommandLine.arguments
    if let i = a.firstIndex(of: "--" + name), i + 1 < a.count { return a[i + 1] }
    return nil
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
guard let path = stringArg("model") else {
    print("usage: llama-engine-bench train|generate --model FILE.gguf [--batch B] ...")
    exit(2)
}
let loadStart = now()
let model = try LlamaModel.load(path: path)
let loadSeconds = now() - loadStart
let V = model.config.vocab
var rng = Xoshiro256(seed: 2)
func randomTokens(_ n: Int, _ rng: inout Xoshiro256) -> [Int] { (0..<n).map { _ in Int(rng.next() % UInt64(V)) } }

switch mode {
case "train":
    // Full fine-tuning step on B rows of T tokens, loss on the last `loss` positions of each
    // row: forward alone (`loss`, no activations kept for backward) and the whole step
    // (forward keeping activations, backward, clipping, AdamW).
    let B = arg("batch", 8), T = arg("time", 256), lossPositions = arg("loss", 64)
    let steps = arg("steps", 3)
    let data = (0..<B).map { _ in randomTokens(T + 1, &rng) }
    let x = data.map { Array($0[0..<T]) }
    let y = data.map { row in (0..<T).map { t in t >= T - lossPositions ? row[t + 1] : -1 } }
    let optimizer = model.makeOptimizer()
    var forward: [Double] = [], step: [Double] = []
    var loss: Float = 0
    for s in 0..<(steps + 1) {
        let t0 = now()
        _ = try model.loss(inputs: x, targets: y)
        let t1 = now()
        loss = try model.trainStep(inputs: x, targets: y, optimizer: optimizer, learningRate: 1e-5).loss
        let t2 = now()
        if s > 0 {
            forward.append(t1 - t0)
            step.append(t2 - t1)
        }
    }
    let N = Double(B * T)
    print("{\"impl\":\"swift\",\"mode\":\"train\",\"batch\":\(B),\"time\":\(T),\"loss_positions\":\(lossPositions),\"load_s\":\(loadSeconds),\"forward_s\":\(median(forward)),\"forward_tokens_per_s\":\(N / median(forward)),\"step_s\":\(median(step)),\"step_tokens_per_s\":\(N / median(step)),\"loss\":\(loss),\"peak_rss_mib\":\(peakRSSMiB())}")
case "generate":
    // Greedy decoding: one prefill step with every prompt, then one token per row per step;
    // decode tokens/s counts the generated tokens over the decode steps only.
    let B = arg("batch", 1), newTokens = arg("tokens", 64), promptLength = arg("prompt", 32)
    var prefill: [Double] = [], decode: [Double] = []
    for r in 0..<(arg("runs", 3) + 1) {
        let prompts = (0..<B).map { _ in randomTokens(promptLength, &rng) }
        let cache = try LlamaKVCache(config: model.config, rows: B, capacity: promptLength + newTokens)
        let t0 = now()
        var logits = try model.step(cache: cache, rows: prompts.indices.flatMap { b in [Int](repeating: b, count: promptLength) },
                                    tokens: prompts.flatMap { $0 },
                                    want: (0..<B).map { ($0 + 1) * promptLength - 1 })
        let t1 = now()
        for _ in 1..<newTokens {
            let next = (0..<B).map { b -> Int in
                var best = 0
                for i in 1..<V where logits[b * V + i] > logits[b * V + best] { best = i }
                return best
            }
            logits = try model.step(cache: cache, rows: Array(0..<B), tokens: next, want: Array(0..<B))
        }
        let t2 = now()
        if r > 0 {
            prefill.append(t1 - t0)
            decode.append(t2 - t1)
        }
    }
    let decoded = Double(B * (newTokens - 1))
    print("{\"impl\":\"swift\",\"mode\":\"generate\",\"batch\":\(B),\"prompt\":\(promptLength),\"new_tokens\":\(newTokens),\"prefill_s\":\(median(prefill)),\"decode_s\":\(median(decode)),\"decode_tokens_per_s\":\(decoded / median(decode)),\"peak_rss_mib\":\(peakRSSMiB())}")
default:
    print("usage: llama-engine-bench train|generate --model FILE.gguf [--batch B] ...")
}
