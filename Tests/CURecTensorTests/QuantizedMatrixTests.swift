import Foundation
import Testing

@testable import CURecTensor

/// Random weight blocks of a quantized type with realistic scales (f16 d around 0.01-0.1,
/// Q4_1 minimums around -8d).
private func randomBlocks(_ type: GGMLType, rows: Int, columns: Int, rng: inout Xoshiro256) -> [UInt8] {
    var bytes: [UInt8] = []
    func half(_ value: Float) -> [UInt8] {
        let bits = Float16(value).bitPattern
        return [UInt8(bits & 0xFF), UInt8(bits >> 8)]
    }
    for _ in 0..<(rows * columns / 32) {
        let d = 0.01 + 0.09 * rng.nextUniform()
        switch type {
        case .q8_0:
            bytes += half(d / 16) + (0..<32).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        case .q4_1:
            bytes += half(d) + half(-8 * d * (0.5 + rng.nextUniform())) + (0..<16).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        default:
            bytes += half(d) + (0..<16).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        }
    }
    return bytes
}

/// Activation rows with a different magnitude per block, one all-zero block and one outlier.
private func randomActivations(rows: Int, columns: Int, rng: inout Xoshiro256) -> [Float] {
    var x = [Float](repeating: 0, count: rows * columns)
    for block in 0..<(rows * columns / 32) {
        let scale = Float(block % 5 == 3 ? 0 : 0.1 + Float(block % 7))
        for i in 0..<32 { x[block * 32 + i] = rng.nextGaussian() * scale }
    }
    if x.count > 40 { x[40] = 50 }
    return x
}

/// The exact product in Float64 and, per output, the largest error the 8-bit activation
/// rounding can cause plus a margin for Float32 arithmetic.
///
/// Each activation is replaced by q·d with d = max|x_block| / 127 and q = round(x / d), so it
/// moves by at most d/2 = max|x_block| / 254, and output (r, o) by at most
/// Σ_b max|x_rb| / 254 · Σ_{i in b} |w_oi|. The kernels then compute exactly in integers and
/// round in Float32 only the per-block scales (dw·dx), the block terms and their sums: a few
/// dozen roundings of 2^-24 relative to Σ|terms| ≤ Σ (|q·dw| + |offset|)·|x|, covered by 1e-5
/// of that magnitude (about 170 roundings).
private func reference(
    weights: [Float], magnitudes: [Float], x: [Float], rows: Int, columns: Int, n: Int
) -> (exact: [Double], bound: [Double], slack: [Double]) {
    var exact = [Double](repeating: 0, count: n * rows), bound = exact, slack = exact
    for r in 0..<n {
        for o in 0..<rows {
            var sum = 0.0, rounding = 0.0, magnitude = 0.0
            for b in 0..<(columns / 32) {
                var amax = 0.0, wabs = 0.0
                for i in (b * 32)..<(b * 32 + 32) {
                    let w = Double(weights[o * columns + i]), v = Double(x[r * columns + i])
                    sum += w * v
                    amax = max(amax, abs(v))
                    wabs += abs(w)
                    magnitude += Double(magnitudes[o * columns + i]) * abs(v)
                }
                rounding += amax / 254 * wabs
            }
            exact[r * rows + o] = sum
            slack[r * rows + o] = 1e-5 * magnitude + 1e-30
            bound[r * rows + o] = rounding * (1 + 1e-5) + slack[r * rows + o]
        }
    }
    return (exact, bound, slack)
}

/// Per element, the size of the terms the kernels add for it, from the stored blocks:
/// |q·d| + |m| for Q4_1, |q·d| + 8|d| for Q4_0 (q the stored nibble), |q·d| for Q8_0.
private func magnitudes(_ type: GGMLType, _ blocks: [UInt8]) -> [Float] {
    var result: [Float] = []
    func half(_ at: Int) -> Float { Float(Float16(bitPattern: UInt16(blocks[at]) | UInt16(blocks[at + 1]) << 8)) }
    for start in stride(from: 0, to: blocks.count, by: type.blockBytes) {
        let d = half(start)
        switch type {
        case .q8_0:
            result += (0..<32).map { abs(Float(Int8(bitPattern: blocks[start + 2 + $0])) * d) }
        default:
            let offset = type == .q4_1 ? abs(half(start + 2)) : 8 * abs(d)
            let packed = Array(blocks[(start + blockStart(type))..<(start + type.blockBytes)])
            let q = packed.map { $0 & 0x0F } + packed.map { $0 >> 4 }
            result += q.map { Float($0) * abs(d) + offset }
        }
    }
    return result
}

private func blockStart(_ type: GGMLType) -> Int { type == .q4_1 ? 4 : 2 }

@Suite("QuantizedMatrix")
struct QuantizedMatrixTests {
    @Test("every kernel matches the Float64 product of the dequantized weights within the 8-bit activation bound",
          arguments: [GGMLType.q4_1, .q4_0, .q8_0])
    func matchesDequantizedProduct(type: GGMLType) throws {
        var rng = Xoshiro256(seed: 42 + UInt64(type.rawValue))
        let rows = 37, columns = 96
        let blocks = randomBlocks(type, rows: rows, columns: columns, rng: &rng)
        let matrix = QuantizedMatrix(type: type, rows: rows, columns: columns, blocks: blocks)
        let weights = matrix.dequantized()
        let sizes = magnitudes(type, blocks)
        #expect(QuantKernel.supported.contains(.portable) && QuantKernel.best.isSupported)
        // Tiles of 1-8 rows, several groups, several passes of 32 rows with a ragged end.
        for n in [1, 2, 3, 4, 5, 7, 8, 9, 16, 70] {
            let x = randomActivations(rows: n, columns: columns, rng: &rng)
            let (exact, bound, slack) = reference(weights: weights, magnitudes: sizes, x: x, rows: rows, columns: columns, n: n)
            var outputs: [QuantKernel: [Float]] = [:]
            for kernel in QuantKernel.supported {
                var out = [Float](repeating: .nan, count: n * rows)
                out.withUnsafeMutableBufferPointer { o in
                    x.withUnsafeBufferPointer { matrix.forward(out: o.baseAddress!, inp: $0.baseAddress!, n: n, kernel: kernel) }
                }
                var worst = 0.0
                for i in 0..<out.count {
                    let error = abs(Double(out[i]) - exact[i])
                    #expect(error <= bound[i], "\(type) \(kernel) n=\(n) [\(i / rows), \(i % rows)]: \(out[i]) vs \(exact[i]), bound \(bound[i])")
                    worst = max(worst, error / bound[i])
                }
                // The bound is not vacuous: the rounding shows, well inside it.
                #expect(worst > 0 && worst < 1)
                outputs[kernel] = out
            }
            // The kernels see the same integers and differ only in Float32 rounding.
            let portable = try #require(outputs[.portable])
            for (kernel, out) in outputs {
                for i in 0..<out.count {
                    #expect(abs(Double(out[i]) - Double(portable[i])) <= 2 * slack[i], "\(kernel) vs portable at \(i)")
                }
            }
        }
    }

    @Test("many weight rows (several slabs of 512) and a long input give the portable kernel's result",
          arguments: [GGMLType.q4_1, .q4_0, .q8_0])
    func slabsAndChunks(type: GGMLType) throws {
        var rng = Xoshiro256(seed: 11 + UInt64(type.rawValue))
        let rows = 1100, columns = 64, n = 45
        let blocks = randomBlocks(type, rows: rows, columns: columns, rng: &rng)
        let matrix = QuantizedMatrix(type: type, rows: rows, columns: columns, blocks: blocks)
        let x = randomActivations(rows: n, columns: columns, rng: &rng)
        let (_, _, slack) = reference(weights: matrix.dequantized(), magnitudes: magnitudes(type, blocks), x: x,
                                      rows: rows, columns: columns, n: n)
        var outputs: [QuantKernel: [Float]] = [:]
        for kernel in QuantKernel.supported {
            var out = [Float](repeating: .nan, count: n * rows)
            out.withUnsafeMutableBufferPointer { o in
                x.withUnsafeBufferPointer { matrix.forward(out: o.baseAddress!, inp: $0.baseAddress!, n: n, kernel: kernel) }
            }
            outputs[kernel] = out
        }
        let portable = try #require(outputs[.portable])
        for (kernel, out) in outputs {
            let bad = (0..<out.count).filter { !(abs(Double(out[$0]) - Double(portable[$0])) <= 2 * slack[$0]) }
            #expect(bad.isEmpty, "\(type) \(kernel): \(bad.count) outputs differ, first at \(bad.first ?? 0)")
        }
    }

    @Test("activation quantization gives exactly the plain formula (the vector path included), NaN and infinities too")
    func activationFormula() {
        var rng = Xoshiro256(seed: 9)
        let rows = 11, columns = 96, blocks = columns / 32
        var x = randomActivations(rows: rows, columns: columns, rng: &rng)
        x[3] = .nan
        x[70] = .infinity
        x[200] = -.infinity
        x[300] = Float(bitPattern: 0x0001_0000)   // subnormal
        x[301] = -0.0
        let a = x.withUnsafeBufferPointer { QuantizedActivations($0.baseAddress!, rows: rows, columns: columns) }
        var same = true
        for r in 0..<rows {
            for b in 0..<blocks {
                let v = x[(r * columns + b * 32)..<(r * columns + b * 32 + 32)]
                var peak: Float = 0
                for e in v where abs(e) > peak { peak = abs(e) }
                let inverse: Float = peak > 0 ? 127 / peak : 0
                var sum = 0
                for (i, e) in v.enumerated() {
                    var rounded = (e * inverse + 12_582_912) - 12_582_912
                    rounded = rounded >= -127 ? (rounded <= 127 ? rounded : 127) : -127
                    same = same && a.q[r * columns + b * 32 + i] == Int8(rounded)
                    sum += Int(rounded)
                }
                let scale: Float = v.contains { $0.isNaN } ? .nan : peak / 127
                let d = a.d[r * blocks + b], s = a.s[((r / 8) * blocks + b) * 8 + r % 8]
                same = same && (d == scale || (d.isNaN && scale.isNaN))
                let expected = scale * Float(sum)
                same = same && (s == expected || (s.isNaN && expected.isNaN))
            }
        }
        #expect(same)
    }

    @Test("activations quantized over several workers equal the rows quantized one by one")
    func parallelActivations() {
        var rng = Xoshiro256(seed: 5)
        let rows = 5003, columns = 64, blocks = columns / 32   // splits into ranges of 8-row groups
        let x = randomActivations(rows: rows, columns: columns, rng: &rng)
        let all = x.withUnsafeBufferPointer { QuantizedActivations($0.baseAddress!, rows: rows, columns: columns) }
        #expect(all.s.count == (rows + 7) / 8 * 8 * blocks)
        var same = true
        for r in 0..<rows {
            let one = x.withUnsafeBufferPointer { QuantizedActivations($0.baseAddress! + r * columns, rows: 1, columns: columns) }
            same = same && Array(all.q[(r * columns)..<((r + 1) * columns)]) == one.q
                && Array(all.d[(r * blocks)..<((r + 1) * blocks)]) == one.d
                && (0..<blocks).allSatisfy { all.s[((r / 8) * blocks + $0) * 8 + r % 8] == one.s[$0 * 8] }
        }
        #expect(same)
        // The padding rows of the last group are zero.
        #expect((rows..<((rows + 7) / 8 * 8)).allSatisfy { r in (0..<blocks).allSatisfy { all.s[((r / 8) * blocks + $0) * 8 + r % 8] == 0 } })
    }

    @Test("accumulate adds the product to the output")
    func accumulates() {
        var rng = Xoshiro256(seed: 7)
        let rows = 9, columns = 64, n = 3
        for type in [GGMLType.q4_1, .q4_0, .q8_0] {
            let matrix = QuantizedMatrix(
                type: type, rows: rows, columns: columns, blocks: randomBlocks(type, rows: rows, columns: columns, rng: &rng))
            let x = randomActivations(rows: n, columns: columns, rng: &rng)
            for kernel in QuantKernel.supported {
                var plain = [Float](repeating: 0, count: n * rows)
                var added = (0..<(n * rows)).map { Float($0) }
                x.withUnsafeBufferPointer { xp in
                    plain.withUnsafeMutableBufferPointer { matrix.forward(out: $0.baseAddress!, inp: xp.baseAddress!, n: n, kernel: kernel) }
                    added.withUnsafeMutableBufferPointer {
                        matrix.forward(out: $0.baseAddress!, inp: xp.baseAddress!, n: n, accumulate: true, kernel: kernel)
                    }
                }
                for i in 0..<plain.count {
                    #expect(abs(added[i] - (plain[i] + Float(i))) <= 1e-4 * (abs(plain[i]) + Float(i) + 1), "\(type) \(kernel)")
                }
            }
        }
    }

    @Test("quantized activations shared by several matrices give the same result as quantizing per call")
    func sharedActivations() {
        var rng = Xoshiro256(seed: 11)
        let rows = 20, columns = 64, n = 2
        let matrix = QuantizedMatrix(
            type: .q4_1, rows: rows, columns: columns, blocks: randomBlocks(.q4_1, rows: rows, columns: columns, rng: &rng))
        let x = randomActivations(rows: n, columns: columns, rng: &rng)
        let activations = x.withUnsafeBufferPointer { QuantizedActivations($0.baseAddress!, rows: n, columns: columns) }
        var a = [Float](repeating: 0, count: n * rows), b = a
        a.withUnsafeMutableBufferPointer { matrix.forward(out: $0.baseAddress!, activations: activations) }
        b.withUnsafeMutableBufferPointer { o in
            x.withUnsafeBufferPointer { matrix.forward(out: o.baseAddress!, inp: $0.baseAddress!, n: n) }
        }
        #expect(a == b)
    }

    @Test("a NaN or infinite activation makes its row's outputs NaN, not finite garbage")
    func nonFinite() {
        var rng = Xoshiro256(seed: 13)
        let rows = 5, columns = 64, n = 3
        let matrix = QuantizedMatrix(
            type: .q4_1, rows: rows, columns: columns, blocks: randomBlocks(.q4_1, rows: rows, columns: columns, rng: &rng))
        var x = randomActivations(rows: n, columns: columns, rng: &rng)
        x[columns + 7] = .nan
        x[2 * columns + 40] = .infinity
        for kernel in QuantKernel.supported {
            var out = [Float](repeating: 0, count: n * rows)
            out.withUnsafeMutableBufferPointer { o in
                x.withUnsafeBufferPointer { matrix.forward(out: o.baseAddress!, inp: $0.baseAddress!, n: n, kernel: kernel) }
            }
            let finite = out[0..<rows].allSatisfy { $0.isFinite }, nan = out[rows...].allSatisfy { $0.isNaN }
            #expect(finite && nan, "\(kernel): \(out)")
        }
    }

    @Test("a Float32 matrix multiplies through BLAS")
    func float32() {
        var rng = Xoshiro256(seed: 3)
        let rows = 13, columns = 40, n = 4
        let weights = (0..<(rows * columns)).map { _ in rng.nextGaussian() }
        let x = (0..<(n * columns)).map { _ in rng.nextGaussian() }
        let matrix = QuantizedMatrix(rows: rows, columns: columns, floats: weights)
        #expect(matrix.type == .f32 && matrix.dequantized() == weights)
        var out = [Float](repeating: 1, count: n * rows)
        out.withUnsafeMutableBufferPointer { o in
            x.withUnsafeBufferPointer { matrix.forward(out: o.baseAddress!, inp: $0.baseAddress!, n: n, accumulate: true) }
        }
        for r in 0..<n {
            for o in 0..<rows {
                var sum = 1.0, magnitude = 1.0
                for i in 0..<columns {
                    sum += Double(weights[o * columns + i]) * Double(x[r * columns + i])
                    magnitude += abs(Double(weights[o * columns + i]) * Double(x[r * columns + i]))
                }
                // Float32 sums of 40 terms: within 40 roundings of the magnitude.
                #expect(abs(Double(out[r * rows + o]) - sum) <= 40 * 6e-8 * magnitude)
            }
        }
    }

    @Test("matrices from a GGUF file keep their blocks")
    func fromFile() throws {
        let directory = NSTemporaryDirectory() + "quantized-matrix-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/m.gguf"
        try Data(ggufFile(metadata: [], tensors: TestBlocks.all, alignment: 32).bytes).write(to: URL(fileURLWithPath: path))
        let file = try GGUFFile.read(path: path)
        for tensor in [TestBlocks.q4_1, TestBlocks.q8_0] {
            let matrix = try QuantizedMatrix(file, tensor.name)
            #expect(matrix.type == tensor.type && matrix.rows == tensor.shape[0] && matrix.columns == 32)
            #expect(matrix.dequantized() == tensor.expected)
            #expect(matrix.byteCount == tensor.data.count)
            var row = [Float](repeating: 0, count: 32)
            row.withUnsafeMutableBufferPointer { matrix.dequantizeRow(1, into: $0.baseAddress!) }
            #expect(row[...] == tensor.expected[32..<64])
        }
        let floats = QuantizedMatrix(rows: 2, columns: 3, floats: [1, 2, 3, 4, 5, 6])
        var row = [Float](repeating: 0, count: 3)
        row.withUnsafeMutableBufferPointer { floats.dequantizeRow(1, into: $0.baseAddress!) }
        #expect(row == [4, 5, 6])
    }

    @Test("3-D, 1-D and unsupported tensors are refused")
    func refusals() throws {
        let directory = NSTemporaryDirectory() + "quantized-matrix-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/m.gguf"
        let k = TestTensor(
            name: "k", shape: [1, 256], type: .q5_K, data: [UInt8](repeating: 0, count: 176), expected: [])
        let tensors = [TestBlocks.f32, TestBlocks.q4_0, k]
        try Data(ggufFile(metadata: [], tensors: tensors, alignment: 32).bytes).write(to: URL(fileURLWithPath: path))
        let file = try GGUFFile.read(path: path)
        for name in [TestBlocks.f32.name, TestBlocks.q4_0.name] {
            #expect(throws: GGUFError.self) { try QuantizedMatrix(file, name) }
        }
        #expect(throws: GGUFError.unsupportedType(path: path, tensor: "k", type: .q5_K)) { try QuantizedMatrix(file, "k") }
        #expect(throws: GGUFError.tensorNotFound(path: path, tensor: "none")) { try QuantizedMatrix(file, "none") }
    }

    @Test("SmolLM2 projections and the Q8_0 embedding match their dequantized Float32 products",
          .enabled(if: SmolLMAssets.available))
    func smolLM() throws {
        let file = try GGUFFile.read(path: SmolLMAssets.modelPath)
        var rng = Xoshiro256(seed: 5)
        for (name, n) in [("blk.0.attn_q.weight", 3), ("blk.3.ffn_down.weight", 2), ("blk.29.attn_k.weight", 16), ("token_embd.weight", 1)] {
            let matrix = try QuantizedMatrix(file, name)
            let weights = try file.floats(name)
            #expect(matrix.dequantized() == weights)
            var row = [Float](repeating: 0, count: matrix.columns)
            for index in [0, matrix.rows / 2, matrix.rows - 1] {
                row.withUnsafeMutableBufferPointer { matrix.dequantizeRow(index, into: $0.baseAddress!) }
                #expect(row[...] == weights[(index * matrix.columns)..<((index + 1) * matrix.columns)], "\(name) row \(index)")
            }
            let rows = matrix.rows, columns = matrix.columns
            let x = (0..<(n * columns)).map { _ in rng.nextGaussian() }
            // Reference and bounds through BLAS: W·xᵀ, |W|·|x|ᵀ and |W|·aᵀ with a the
            // per-element rounding radius max|x_block| / 254.
            let absW = weights.map(abs), absX = x.map(abs)
            var radius = [Float](repeating: 0, count: x.count)
            for block in 0..<(x.count / 32) {
                let peak = absX[(block * 32)..<(block * 32 + 32)].max() ?? 0
                for i in (block * 32)..<(block * 32 + 32) { radius[i] = peak / 254 }
            }
            func product(_ a: [Float], _ w: [Float]) -> [Float] {
                var out = [Float](repeating: 0, count: n * rows)
                a.withUnsafeBufferPointer { ap in
                    w.withUnsafeBufferPointer { wp in
                        out.withUnsafeMutableBufferPointer { op in
                            BLAS.gemm(transA: false, transB: true, m: n, n: rows, k: columns, a: ap.baseAddress!, lda: columns,
                                      b: wp.baseAddress!, ldb: columns, c: op.baseAddress!, ldc: rows)
                        }
                    }
                }
                return out
            }
            let exact = product(x, weights), magnitude = product(absX, absW), rounding = product(radius, absW)
            for kernel in QuantKernel.supported {
                var out = [Float](repeating: .nan, count: n * rows)
                out.withUnsafeMutableBufferPointer { o in
                    x.withUnsafeBufferPointer { matrix.forward(out: o.baseAddress!, inp: $0.baseAddress!, n: n, kernel: kernel) }
                }
                // Float32 sums over C ≤ 1536 terms in both the reference and the kernel (and
                // the Q4_1 offset terms, at most as large again): 2e-4 of Σ|w·x| covers
                // C · 2^-24 ≈ 9.2e-5 twice.
                var failures = 0
                for i in 0..<out.count {
                    let bound = rounding[i] * 1.0001 + 2e-4 * magnitude[i]
                    if abs(out[i] - exact[i]) > bound { failures += 1 }
                }
                #expect(failures == 0, "\(name) \(kernel) n=\(n): \(failures) outputs outside the bound")
            }
        }
    }
}
