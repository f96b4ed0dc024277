import CURecTensor
import Foundation

// gguf-bench info MODEL.gguf
//     Prints the header, the metadata (big arrays summarised) and the tensor list.
// gguf-bench matmul MODEL.gguf [--runs R] [--min-ms T]
//     Times out[N, OC] = inp[N, C] · Wᵀ for the SmolLM2 projection shapes at N = 1 and 16:
//     QuantizedMatrix with each kernel this CPU runs against cblas_sgemm (BLAS.gemm) on the
//     dequantized Float32 weights. Contenders alternate within each run; medians over R runs.

func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

/// CPU time of the whole process (all threads): unaffected by time spent descheduled.
func cpuTime() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.isEmpty ? 0 : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
}

func option(_ name: String, _ fallback: Int) -> Int {
    let a = CommandLine.arguments
    if let i = a.firstIndex(of: "--" + name), i + 1 < a.count, let v = Int(a[i + 1]) { return v }
    return fallback
}

func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}

func fixed(_ value: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", value) }

func summary(_ value: GGUFValue) -> String {
    switch value {
    case let .string(s):
        let line = s.replacingOccurrences(of: "\n", with: "\\n")
        return line.count > 60 ? "\"\(line.prefix(60))...\" (\(s.utf8.count) bytes)" : "\"\(line)\""
    case let .array(elements):
        let kind = elements.first.map { "\($0)".split(separator: "(").first.map(String.init) ?? "?" } ?? "empty"
        let head = elements.prefix(3).map(summary).joined(separator: ", ")
        return "[\(elements.count) x \(kind)] \(head)\(elements.count > 3 ? ", ..." : "")"
    case let .uint8(v): return "\(v) (uint8)"
    case let .int8(v): return "\(v) (int8)"
    case let .uint16(v): return "\(v) (uint16)"
    case let .int16(v): return "\(v) (int16)"
    case let .uint32(v): return "\(v) (uint32)"
    case let .int32(v): return "\(v) (int32)"
    case let .uint64(v): return "\(v) (uint64)"
    case let .int64(v): return "\(v) (int64)"
    case let .float32(v): return "\(v) (float32)"
    case let .float64(v): return "\(v) (float64)"
    case let .bool(v): return "\(v) (bool)"
    }
}

func info(_ path: String) throws {
    let start = now()
    let file = try GGUFFile.read(path: path)
    let elapsed = now() - start
    print("\(path): GGUF v\(file.version), alignment \(file.alignment), data at byte \(file.dataStart), "
        + "\(file.metadata.count) metadata entries, \(file.tensors.count) tensors (read in \(fixed(elapsed * 1000, 1)) ms)")
    print("\nmetadata:")
    for key in file.metadataKeys {
        print("  \(pad(key, 40)) \(summary(file.metadata[key]!))")
    }
    print("\ntensors (shape outermost first):")
    var counts: [String: (Int, Int)] = [:]
    for tensor in file.tensors {
        print("  \(pad(tensor.name, 28)) \(pad(tensor.type.name, 5)) \(tensor.shape)")
        let c = counts[tensor.type.name, default: (0, 0)]
        counts[tensor.type.name] = (c.0 + 1, c.1 + tensor.byteCount)
    }
    print("\nby type:")
    for (type, c) in counts.sorted(by: { $0.key < $1.key }) {
        print("  \(pad(type, 5)) \(c.0) tensors, \(fixed(Double(c.1) / 1_048_576, 1)) MiB")
    }
}

/// One timed contender: runs one product.
struct Contender {
    let name: String
    let bytes: Int
    let run: () -> Void
}

func matmul(_ path: String) throws {
    let file = try GGUFFile.read(path: path)
    let runs = option("runs", 7)
    let minSeconds = Double(option("min-ms", 40)) / 1000
    // (label, tensor, count per decoded token): the SmolLM2 shapes, OC x C.
    let shapes: [(String, String, Int)] = [
        ("576x576 q/o", "blk.0.attn_q.weight", 60),
        ("192x576 k/v", "blk.0.attn_k.weight", 60),
        ("1536x576 gate/up", "blk.0.ffn_up.weight", 60),
        ("576x1536 down", "blk.0.ffn_down.weight", 30),
        ("49152x576 head", "token_embd.weight", 1),
    ]
    print("kernels on this CPU: \(QuantKernel.supported.map(\.description).joined(separator: ", ")) "
        + "(best: \(QuantKernel.best)); \(Parallel.workers) workers; \(runs) runs, each >= \(Int(minSeconds * 1000)) ms per contender")
    print("\(pad("shape", 18)) \(pad("type", 5)) \(pad("N", 3)) \(pad("contender", 11)) \(pad("us/product", 11)) "
        + "\(pad("GB/s", 7)) \(pad("GFLOP/s", 8)) \(pad("vs sgemm", 8)) cpu us (all threads)")
    var perToken: [Int: [String: Double]] = [:]
    for (label, name, count) in shapes {
        let matrix = try QuantizedMatrix(file, name)
        let weights = matrix.dequantized()
        let rows = matrix.rows, columns = matrix.columns
        for n in [1, 16] {
            var rng = Xoshiro256(seed: 1)
            var x = [Float](repeating: 0, count: n * columns)
            x.withUnsafeMutableBufferPointer { rng.fillGaussian($0.baseAddress!, count: $0.count, std: 1) }
            var out = [Float](repeating: 0, count: n * rows)
            let xp = x.withUnsafeBufferPointer { $0.baseAddress! }  // x outlives every use below
            let op = out.withUnsafeMutableBufferPointer { $0.baseAddress! }
            let wp = weights.withUnsafeBufferPointer { $0.baseAddress! }
            var contenders = QuantKernel.supported.map { kernel in
                Contender(name: kernel.description, bytes: matrix.byteCount) {
                    matrix.forward(out: op, inp: xp, n: n, kernel: kernel)
                }
            }
            contenders.append(Contender(name: "sgemm f32", bytes: rows * columns * 4) {
                BLAS.gemm(transA: false, transB: true, m: n, n: rows, k: columns, a: xp, lda: columns,
                          b: wp, ldb: columns, c: op, ldc: rows)
            })
            // Iterations per run: enough for minSeconds on the slowest contender.
            var iterations = 1
            for contender in contenders {
                contender.run()
                let t0 = now()
                contender.run()
                iterations = max(iterations, Int(minSeconds / max(now() - t0, 1e-7)) + 1)
            }
            var times = [[Double]](repeating: [], count: contenders.count), cpu = times
            for _ in 0..<runs {
                for (i, contender) in contenders.enumerated() {
                    let t0 = now(), c0 = cpuTime()
                    for _ in 0..<iterations { contender.run() }
                    times[i].append((now() - t0) / Double(iterations))
                    cpu[i].append((cpuTime() - c0) / Double(iterations))
                }
            }
            let sgemm = median(times.last!)
            for (i, contender) in contenders.enumerated() {
                let t = median(times[i])
                let gbs = Double(contender.bytes) / t / 1e9
                let gflops = 2 * Double(n * rows * columns) / t / 1e9
                print("\(pad(label, 18)) \(pad(i == contenders.count - 1 ? "F32" : matrix.type.name, 5)) \(pad("\(n)", 3)) "
                    + "\(pad(contender.name, 11)) \(pad(fixed(t * 1e6, 1), 11)) \(pad(fixed(gbs, 1), 7)) "
                    + "\(pad(fixed(gflops, 1), 8)) \(pad(fixed(sgemm / t, 2) + "x", 8)) \(fixed(median(cpu[i]) * 1e6, 1))")
                perToken[n, default: [:]][contender.name, default: 0] += t * Double(count)
            }
            withExtendedLifetime((x, out, weights)) {}
        }
    }
    // The products of one decoding step of the 30-layer model (7 projections per layer and
    // the tied output head), from the medians above: weights hot in cache.
    for n in [1, 16] {
        let line = perToken[n]!.sorted { $0.value < $1.value }
            .map { "\($0.key) \(fixed($0.value * 1000, 2)) ms" }.joined(separator: ", ")
        print("sum of the above for one decoding step, N=\(n) (hot caches): \(line)")
    }
    try decodeStep(file, runs: runs)
}

/// One decoding step's products over the real, distinct weights of all 30 layers and the
/// head, in model order: 98 MB of quantized weights (540 MB as Float32) stream from memory.
func decodeStep(_ file: GGUFFile, runs: Int) throws {
    let layers = file.int("llama.block_count") ?? 30
    var names: [String] = []
    for layer in 0..<layers {
        for part in ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"] {
            names.append("blk.\(layer).\(part).weight")
        }
    }
    names.append("token_embd.weight")
    var matrices: [QuantizedMatrix] = []
    for name in names { matrices.append(try QuantizedMatrix(file, name)) }
    let floats = matrices.map { $0.dequantized() }
    let quantBytes = matrices.reduce(0) { $0 + $1.byteCount }
    let floatBytes = matrices.reduce(0) { $0 + $1.rows * $1.columns * 4 }
    let widest = matrices.map { max($0.rows, $0.columns) }.max()!
    for n in [1, 16] {
        var rng = Xoshiro256(seed: 2)
        var x = [Float](repeating: 0, count: n * widest), out = x
        var unused = [Float](repeating: 0, count: n * 49152)
        x.withUnsafeMutableBufferPointer { rng.fillGaussian($0.baseAddress!, count: $0.count, std: 1) }
        var contenders: [(String, Int, () -> Void)] = QuantKernel.supported.filter { $0 != .portable }.map { kernel in
            (kernel.description, quantBytes, {
                x.withUnsafeBufferPointer { xp in
                    unused.withUnsafeMutableBufferPointer { op in
                        for matrix in matrices { matrix.forward(out: op.baseAddress!, inp: xp.baseAddress!, n: n, kernel: kernel) }
                    }
                }
            })
        }
        contenders.append(("sgemm f32", floatBytes, {
            x.withUnsafeBufferPointer { xp in
                unused.withUnsafeMutableBufferPointer { op in
                    for (matrix, w) in zip(matrices, floats) {
                        w.withUnsafeBufferPointer { wp in
                            BLAS.gemm(transA: false, transB: true, m: n, n: matrix.rows, k: matrix.columns, a: xp.baseAddress!,
                                      lda: matrix.columns, b: wp.baseAddress!, ldb: matrix.columns, c: op.baseAddress!,
                                      ldc: matrix.rows)
                        }
                    }
                }
            }
        }))
        for contender in contenders { contender.2() }  // warm-up
        var times = [[Double]](repeating: [], count: contenders.count)
        for _ in 0..<runs {
            for (i, contender) in contenders.enumerated() {
                let t0 = now()
                contender.2()
                times[i].append(now() - t0)
            }
        }
        let sgemm = median(times.last!)
        for (i, contender) in contenders.enumerated() {
            let t = median(times[i])
            print("decoding step N=\(pad("\(n)", 2)) \(pad(contender.0, 10)) \(pad(fixed(t * 1000, 2), 7)) ms  "
                + "\(pad(fixed(Double(contender.1) / t / 1e9, 1), 5)) GB/s  \(pad(fixed(Double(n) / t, 0), 5)) tokens/s  "
                + "\(fixed(sgemm / t, 2))x vs sgemm  (\(names.count) products, \(fixed(Double(contender.1) / 1_048_576, 1)) MiB of weights)")
        }
        withExtendedLifetime((out, floats)) {}
    }
}

let arguments = CommandLine.arguments
guard arguments.count >= 3 else {
    print("usage: gguf-bench info|matmul MODEL.gguf [--runs R] [--min-ms T]")
    exit(2)
}
do {
    switch arguments[1] {
    case "info": try info(arguments[2])
    case "matmul": try matmul(arguments[2])
    default:
        print("unknown command \(arguments[1])")
        exit(2)
    }
} catch {
    print("gguf-bench: \(error)")
    exit(1)
}
