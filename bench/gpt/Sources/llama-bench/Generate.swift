import CURecModels
import CURecTensor
import Foundation

// llama-bench generate --gguf FILE [--weights float32|quantized] [--batch B] [--prompt P] [--new N] [--runs R]
//
// Generation speed of the Llama engine on a GGUF file (SmolLM2-135M-Instruct): B rows with the
// same P-token prompt (a fixed text repeated, the same as bench/llama/hf_generate.py and
// llamacpp_generate.py), N greedy tokens each through BatchedGenerator (the serving loop:
// one prefill step for all rows, then one step per token for every row). After a 4-token
// warm-up, prints one JSON line per run: generated tokens over wall time including the
// prefill, the prefill alone (time to the first token), the decoding rate after it, the
// fastest and median decoding step (row 0's token to token time: the fastest is the least
// disturbed by other jobs on a shared machine) and the process's peak RSS (loading included).

let benchText = String(repeating: "Recommendation reasons tell a viewer why a film suits them: the genres they return to, "
    + "the decades they favour, the people who share their taste. ", count: 40)

func stringArg(_ name: String, _ def: String) -> String {
    let a = CommandLine.arguments
    if let i = a.firstIndex(of: "--" + name), i + 1 < a.count { return a[i + 1] }
    return def
}

func runGenerate() throws {
    let path = stringArg("gguf", "var/models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
    let weights: LlamaWeightFormat = stringArg("weights", "quantized") == "float32" ? .float32 : .quantized
    let B = arg("batch", 1), P = arg("prompt", 128), N = arg("new", 128), runs = arg("runs", 3)
    let loadStart = now()
    let file = try GGUFFile.read(path: path)
    let tokenizer = try PretrainedTokenizer(gguf: file)
    let model = try LlamaModel.load(gguf: file, weights: weights)
    let loadSeconds = now() - loadStart
    let ids = tokenizer.encode(benchText, addingBOSToken: false).map(Int.init)
    guard ids.count >= P else { fatalError("the text has only \(ids.count) tokens") }
    let prompts = [[Int]](repeating: Array(ids.prefix(P)), count: B)
    let generator = BatchedGenerator(model: model)
    _ = try generator.generate(prompts: prompts, options: SamplingOptions(maxTokens: 4, temperature: 0))
    for _ in 0..<runs {
        let t0 = now()
        var firstToken = 0.0, last = 0.0, steps: [Double] = []
        let out = try generator.generate(prompts: prompts, options: SamplingOptions(maxTokens: N, temperature: 0)) { row, _ in
            guard row == 0 else { return }
            let t = now()
            if firstToken == 0 { firstToken = t - t0 } else { steps.append(t - last) }
            last = t
        }
        let seconds = now() - t0
        steps.sort()
        precondition(out.allSatisfy { $0.tokens.count == N })
        let first = out[0].tokens.prefix(8).map(String.init).joined(separator: ",")
        print("{\"impl\":\"swift-\(weights)\",\"batch\":\(B),\"tokens_per_s\":\(Double(B * N) / seconds),\"seconds\":\(seconds),\"prefill_s\":\(firstToken),\"step_ms_min\":\((steps.first ?? 0) * 1000),\"step_ms_median\":\((steps.isEmpty ? 0 : steps[steps.count / 2]) * 1000),\"decode_tokens_per_s\":\(Double(B * (N - 1)) / (seconds - firstToken)),\"load_s\":\(loadSeconds),\"peak_rss_mib\":\(peakRSSMiB()),\"first_tokens\":[\(first)]}")
        fflush(nil)
    }
}
