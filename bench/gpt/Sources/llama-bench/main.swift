import CURecModels
import CURecTensor
import Foundation

// llama-bench lora|full [--batch B] [--time T] [--loss-tokens K] [--rank R] [--steps S] [--warmup W]
//
// Fine-tuning step throughput of the Llama engine on the SmolLM2-135M shape (30 blocks, width
// 576, feed-forward 1536, 9 query / 3 key-value heads, vocab 49152, tied head), weights random
// (a step's cost does not depend on their values). Each row has T input tokens and the loss is
// taken on its last K tokens. `lora`: rank R (alpha 2R, dropout 0.05) on q, k, v, o, base frozen;
// `full`: every tensor. AdamW (betas 0.9/0.999, no weight decay), clipping at 1.0, through
// LlamaFineTuner.step(). Prints one JSON line.

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

/// User + system CPU seconds of the process (all threads).
func cpuSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6
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

let mode = CommandLine.arguments.dropFirst().first ?? "lora"
if mode == "generate" {   // see Generate.swift
    try runGenerate()
    exit(0)
}
guard mode == "lora" || mode == "full" else {
    print("usage: llama-bench lora|full [--batch B] [--time T] [--loss-tokens K] [--rank R] [--steps S] [--warmup W]")
    print("       llama-bench generate --gguf FILE [--weights float32|quantized] [--batch B] [--prompt P] [--new N] [--runs R]")
    exit(2)
}
let B = arg("batch", 8), T = arg("time", 256), K = arg("loss-tokens", 64), rank = arg("rank", 8)
let steps = arg("steps", 3), warmup = arg("warmup", 1)
let config = LlamaConfig(layers: 30, width: 576, hidden: 1536, heads: 9, kvHeads: 3, ropeBase: 100_000,
                         rmsEps: 1e-5, context: 2048, vocab: 49152)
let model = try LlamaModel(config: config, seed: 1)
var rng = Xoshiro256(seed: 2)
let sequences = try (0..<B).map { _ in
    try LlamaTrainingSequence(tokens: (0...T).map { _ in Int(rng.next() % UInt64(config.vocab)) },
                              completionStart: T + 1 - K)
}
let method: LlamaFineTuningMethod = mode == "lora"
    ? .lora(LoRAConfig(rank: rank, alpha: Float(2 * rank), dropout: 0.05, targets: [.query, .key, .value, .output]))
    : .full
let tuner = try LlamaFineTuner(
    model: model, dataset: try LlamaChatDataset(sequences: sequences),
    config: LlamaFineTuningConfig(method: method, batchSize: B, learningRate: 2e-4, warmupSteps: 0,
                                  totalSteps: 1000, weightDecay: 0, beta1: 0.9, beta2: 0.999, maxGradNorm: 1))
var times: [Double] = [], cpu: [Double] = []
var loss: Float = 0
for s in 0..<(warmup + steps) {
    let t0 = now(), c0 = cpuSeconds()
    let r = try tuner.step()
    if s >= warmup {
        times.append(now() - t0)
        cpu.append(cpuSeconds() - c0)
    }
    loss = r.loss
    precondition(r.lossTokens == B * K && r.paddedTokens == B * T)
}
let med = median(times)
print("{\"impl\":\"swift\",\"mode\":\"\(mode)\",\"batch\":\(B),\"time\":\(T),\"loss_tokens\":\(K),\"rank\":\(rank),\"trainable\":\(tuner.trainableParameterCount),\"step_s\":\(med),\"tokens_per_s\":\(Double(B * T) / med),\"loss\":\(loss),\"cpu_s\":\(median(cpu)),\"peak_rss_mib\":\(peakRSSMiB()),\"steps\":\(times)}")
