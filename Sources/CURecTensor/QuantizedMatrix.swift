import CQuantKernels

// Matrix products with weights kept in their GGUF block form (Q4_0, Q4_1, Q8_0), for decoding
// where a few activation rows meet every weight once and the time goes into reading the
// weights: a Q4_1 weight takes 5 bits instead of the 32 of a dequantized copy.
//
//   out[N, OC] = inp[N, C] · Wᵀ      W: [OC, C], each row C/32 blocks, GGUF layout
//
// The activation rows are quantized once per product to 8 bits per block of 32 (scale
// d = max|x| / 127, q = round(x / d)), as GGML does for its q4_1 · q8_1 dot, so each block
// product is an exact integer dot scaled by two floats (see CQuantKernels.c for the algebra).
// The kernels are C (CQuantKernels): Swift SIMD code for the same loops ran 7-8x slower than
// the AVX2 intrinsics, its generic vector conversions not being specialized.

/// Which implementation of the quantized dot products to run.
public enum QuantKernel: Int, Sendable, CaseIterable, CustomStringConvertible {
    /// Plain C vectorized by the compiler for the baseline instruction set; runs on every CPU.
    case portable = 0
    /// C with AVX2, FMA and F16C intrinsics (x86-64 since 2013).
    case avx2 = 1
    /// C with AVX-512 VNNI byte dot products (`vpdpbusd`).
    case avx512vnni = 2

    /// The fastest kernel this CPU runs, detected once.
    public static let best: QuantKernel = QuantKernel(rawValue: Int(curec_quant_cpu_level())) ?? .portable

    /// The kernels this CPU runs.
    public static var supported: [QuantKernel] { allCases.filter(\.isSupported) }

    /// True if this CPU runs the kernel.
    public var isSupported: Bool { rawValue <= QuantKernel.best.rawValue }

    public var description: String {
        switch self {
        case .portable: return "portable"
        case .avx2: return "avx2"
        case .avx512vnni: return "avx512vnni"
        }
    }
}

/// Activation rows quantized to 8 bits per block of 32, ready for ``QuantizedMatrix/forward(out:activations:accumulate:kernel:)``.
/// Quantize once to multiply the same rows by several matrices (e.g. query, key and value).
public struct QuantizedActivations: Sendable {
    /// Number of rows (N).
    public let rows: Int
    /// Elements per row (C), a multiple of 32.
    public let columns: Int
    /// Quantized values, [N, C].
    let q: [Int8]
    /// Per block, [N, C/32]: the scale d, so that x ≈ q · d.
    let d: [Float]
    /// Per block, [N8/8, C/32, 8] (groups of 8 rows, block-major within a group) with N8 = N
    /// rounded up to a multiple of 8 (zero padded): d · Σ q, for the weight offsets of Q4_0 and
    /// Q4_1.
    let s: [Float]

    /// Quantizes `rows` rows of `columns` floats (row-major, contiguous) starting at `inp`.
    /// `columns` must be a multiple of 32.
    public init(_ inp: UnsafePointer<Float>, rows: Int, columns: Int) {
        precondition(rows >= 0 && columns >= 0 && columns % 32 == 0, "activation rows of \(columns) are not whole blocks of 32")
        self.rows = rows
        self.columns = columns
        let paddedRows = (rows + 7) / 8 * 8
        var scales = [Float](repeating: 0, count: rows * columns / 32)
        var sums = [Float](repeating: 0, count: columns / 32 * paddedRows)
        q = [Int8](unsafeUninitializedCapacity: rows * columns) { q, initialized in
            scales.withUnsafeMutableBufferPointer { d in
                sums.withUnsafeMutableBufferPointer { s in
                    guard let q = q.baseAddress, let d = d.baseAddress, let s = s.baseAddress else { return }
                    // Workers take whole groups of 8 rows (s is laid out by such groups).
                    let groups = (rows + 7) / 8, blocks = columns / 32
                    let qp = SendablePointer(q), dp = SendablePointer(d), sp = SendablePointer(s)
                    Parallel.forRange(groups, grain: max(1, 8192 / max(1, columns))) { range in
                        let r0 = range.lowerBound * 8, r1 = min(range.upperBound * 8, rows)
                        curec_quant_activations(inp + r0 * columns, Int64(r1 - r0), Int64(columns),
                                                qp.p + r0 * columns, dp.p + r0 * blocks, sp.p + r0 * blocks)
                    }
                }
            }
            initialized = rows * columns
        }
        d = scales
        s = sums
    }
}

/// One product of ``QuantizedMatrix/forward(_:activations:kernel:)``: `out[N, OC] = x · Wᵀ`,
/// or `+=` with `accumulate`.
public struct QuantizedProduct: @unchecked Sendable {
    /// The weight `W[OC, C]`.
    public let matrix: QuantizedMatrix
    /// Where the product goes, `[N, OC]` row-major.
    public let out: UnsafeMutablePointer<Float>
    /// Whether the product is added to `out`.
    public let accumulate: Bool

    public init(_ matrix: QuantizedMatrix, out: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        self.matrix = matrix
        self.out = out
        self.accumulate = accumulate
    }
}

/// A weight matrix W of shape [OC, C] kept in its stored GGUF form (Q4_0, Q4_1 or Q8_0; other
/// types are held as Float32), multiplying activation rows: `out[N, OC] = inp[N, C] · Wᵀ`.
/// Immutable; a matrix read from a file keeps the file mapped and reads the blocks in place.
public struct QuantizedMatrix: Sendable {
    /// Output features (OC): rows of W.
    public let rows: Int
    /// Input features (C): elements per row of W.
    public let columns: Int
    /// Storage type: `.q4_0`, `.q4_1`, `.q8_0` or `.f32`.
    public let type: GGMLType
    private let storage: Storage

    private enum Storage: Sendable {
        case mapped(GGUFTensorData)
        case bytes([UInt8])
        case floats([Float])
    }

    /// Bytes of weight data read by one product.
    public var byteCount: Int {
        type == .f32 ? rows * columns * 4 : rows * (columns / 32) * type.blockBytes
    }

    /// The 2-D tensor `name` of `file` ([OC, C] row-major, i.e. GGUF ne = [C, OC]). Q4_0, Q4_1,
    /// Q8_0 and F32 stay in the mapped file; F16 and BF16 are converted to Float32.
    public init(_ file: GGUFFile, _ name: String) throws(GGUFError) {
        guard let info = file.tensor(name) else { throw .tensorNotFound(path: file.path, tensor: name) }
        guard info.shape.count == 2 else {
            throw .invalidArgument(
                path: file.path, tensor: name, reason: "shape \(info.shape) is not a 2-D weight matrix")
        }
        rows = info.shape[0]
        columns = info.shape[1]
        switch info.type {
        case .q4_0, .q4_1, .q8_0, .f32:
            type = info.type
            storage = .mapped(try file.data(name))
        case .f16, .bf16:
            type = .f32
            storage = .floats(try file.floats(name))
        default:
            throw .unsupportedType(path: file.path, tensor: name, type: info.type)
        }
    }

    /// A matrix from stored blocks: `rows` rows of `columns / 32` blocks of `type` (Q4_0, Q4_1
    /// or Q8_0) in GGUF layout.
    public init(type: GGMLType, rows: Int, columns: Int, blocks: [UInt8]) {
        precondition([.q4_0, .q4_1, .q8_0].contains(type), "\(type) is not a quantized matrix type")
        precondition(rows >= 0 && columns >= 0 && columns % 32 == 0, "rows of \(columns) are not whole blocks")
        precondition(blocks.count == rows * columns / 32 * type.blockBytes, "\(blocks.count) bytes do not hold [\(rows), \(columns)] \(type)")
        self.rows = rows
        self.columns = columns
        self.type = type
        storage = .bytes(blocks)
    }

    /// A Float32 matrix, [rows, columns] row-major (multiplied through BLAS).
    public init(rows: Int, columns: Int, floats: [Float]) {
        precondition(rows >= 0 && columns >= 0 && floats.count == rows * columns, "\(floats.count) floats are not [\(rows), \(columns)]")
        self.rows = rows
        self.columns = columns
        type = .f32
        storage = .floats(floats)
    }

    /// W as Float32, [OC, C] row-major.
    public func dequantized() -> [Float] {
        withWeights { raw in
            [Float](unsafeUninitializedCapacity: rows * columns) { buffer, initialized in
                if let base = raw.baseAddress, let destination = buffer.baseAddress {
                    GGMLBlocks.dequantize(type, from: base, count: rows * columns, into: destination)
                }
                initialized = rows * columns
            }
        }
    }

    /// Writes row `row` of W (`columns` floats) to `destination`: an embedding lookup
    /// without a Float32 copy of the whole table.
    public func dequantizeRow(_ row: Int, into destination: UnsafeMutablePointer<Float>) {
        precondition(row >= 0 && row < rows, "row \(row) is outside 0..<\(rows)")
        let rowBytes = type == .f32 ? columns * 4 : columns / 32 * type.blockBytes
        withWeights { raw in
            if let base = raw.baseAddress {
                GGMLBlocks.dequantize(type, from: base + row * rowBytes, count: columns, into: destination)
            }
        }
    }

    /// `out[N, OC] = inp[N, C] · Wᵀ` (or `+=` with `accumulate`), all row-major and contiguous.
    /// Quantized weights quantize `inp` to 8 bits per block first (see ``QuantizedActivations``).
    public func forward(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, n: Int, accumulate: Bool = false,
        kernel: QuantKernel = .best
    ) {
        if type == .f32 {
            withWeights { raw in
                guard let w = raw.baseAddress?.assumingMemoryBound(to: Float.self) else { return }
                // out[N, OC] = inp[N, C] @ W[OC, C]ᵀ
                BLAS.gemm(
                    transA: false, transB: true, m: n, n: rows, k: columns, a: inp, lda: columns, b: w, ldb: columns,
                    beta: accumulate ? 1 : 0, c: out, ldc: rows)
            }
            return
        }
        forward(out: out, activations: QuantizedActivations(inp, rows: n, columns: columns), accumulate: accumulate, kernel: kernel)
    }

    /// `out[N, OC] = x[N, C] · Wᵀ` (or `+=` with `accumulate`) for activations quantized
    /// beforehand. A Float32 matrix multiplies the dequantized activations. The weight rows
    /// are split over ``Parallel/workers`` when the product has at least
    /// ``blockProductsPerWorker`` block products per worker; `kernel` falls back to
    /// ``QuantKernel/best`` if this CPU lacks it.
    public func forward(
        out: UnsafeMutablePointer<Float>, activations x: QuantizedActivations, accumulate: Bool = false,
        kernel: QuantKernel = .best
    ) {
        Self.forward([QuantizedProduct(self, out: out, accumulate: accumulate)], activations: x, kernel: kernel)
    }

    /// Several products of the same activations, `out_i[N, OC_i] = x[N, C] · W_iᵀ` (or `+=`),
    /// e.g. the query, key and value projections of one input. The weight rows of all the
    /// quantized matrices are split over the workers as one range, so that a decoding step's
    /// small products share one thread hop instead of taking one each (or running on one
    /// core). Float32 matrices multiply the dequantized activations, one after the other.
    public static func forward(_ products: [QuantizedProduct], activations x: QuantizedActivations,
                               kernel: QuantKernel = .best) {
        let n = x.rows
        var quantized: [QuantizedProduct] = []
        for p in products {
            let m = p.matrix
            precondition(x.columns == m.columns, "activations have \(x.columns) columns, the matrix \(m.columns)")
            if n == 0 || m.rows == 0 { continue }
            if m.columns == 0 {
                if !p.accumulate { p.out.update(repeating: 0, count: n * m.rows) }
            } else if m.type == .f32 {
                let floats = (0..<(n * m.columns)).map { Float(x.q[$0]) * x.d[$0 / 32] }
                floats.withUnsafeBufferPointer { inp in
                    if let inp = inp.baseAddress { m.forward(out: p.out, inp: inp, n: n, accumulate: p.accumulate) }
                }
            } else {
                quantized.append(p)
            }
        }
        guard let first = quantized.first else { return }
        let blocks = first.matrix.columns / 32
        let kernel = kernel.isSupported ? kernel : .best
        // Row r of the joint range is row r - starts[j] of product j.
        var starts: [Int] = [], total = 0
        for p in quantized {
            starts.append(total)
            total += p.matrix.rows
        }
        // Each worker takes a range of weight rows; below blockProductsPerWorker block products
        // a range is not worth a thread hop.
        let grain = max(1, blockProductsPerWorker / max(1, blocks * n))
        withWeights(of: quantized, from: 0, [], { weights in
            x.q.withUnsafeBufferPointer { q in
                x.d.withUnsafeBufferPointer { d in
                    x.s.withUnsafeBufferPointer { s in
                        // Workers write disjoint columns o of the outputs (their weight rows).
                        Parallel.forRange(total, grain: grain) { range in
                            for (j, p) in quantized.enumerated() {
                                let m = p.matrix
                                let lo = max(range.lowerBound - starts[j], 0)
                                let hi = min(range.upperBound - starts[j], m.rows)
                                if lo >= hi { continue }
                                let status = curec_quant_matmul(
                                    Int32(kernel.rawValue), Int32(m.type.rawValue), weights[j], blocks * m.type.blockBytes,
                                    Int64(lo), Int64(hi), Int64(blocks), q.baseAddress, d.baseAddress, s.baseAddress,
                                    Int64(n), p.out, Int64(m.rows), p.accumulate ? 1 : 0)
                                precondition(status == 0, "quantized kernel \(kernel) refused \(m.type)")
                            }
                        }
                    }
                }
            }
        })
    }

    /// Calls `body` with the weight bytes of `products[from...]` appended to `weights`, each
    /// valid for the duration of the call.
    private static func withWeights(of products: [QuantizedProduct], from j: Int, _ weights: [UnsafeRawPointer],
                                    _ body: ([UnsafeRawPointer]) -> Void) {
        if j == products.count { return body(weights) }
        products[j].matrix.withWeights { raw in
            guard let w = raw.baseAddress else { return }
            withWeights(of: products, from: j + 1, weights + [w], body)
        }
    }

    /// Block products (one weight block times one activation block) below which a product is
    /// not split over more workers. A decoding step of one row reads each weight once and is
    /// bound by memory, which a second core did not speed up (measured on SmolLM2-135M: the
    /// same fastest step time with every product on one core), so at one row only the
    /// products of about 64K blocks and more (the 49152-row head) are split.
    public static let blockProductsPerWorker = 32_768

    private func withWeights<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        switch storage {
        case let .mapped(data): return data.withBytes(body)
        case let .bytes(bytes): return bytes.withUnsafeBytes(body)
        case let .floats(floats): return floats.withUnsafeBytes(body)
        }
    }
}
