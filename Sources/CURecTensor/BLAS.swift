import COpenBLAS
import Synchronization

/// Row-major matrix products through `cblas_sgemm`.
///
/// Threading: by default OpenBLAS is switched to one thread and ``gemm`` splits large products
/// over ``Parallel/workers`` itself, so no OpenBLAS thread spins while the element-wise kernels
/// run on the same cores. ``threading`` can hand the threading back to OpenBLAS instead.
public enum BLAS {
    /// Who splits a matrix product over the cores.
    public enum Threading: Int, Sendable {
        /// OpenBLAS runs single-threaded; ``gemm`` splits the output over the workers.
        case split = 0
        /// OpenBLAS uses its own thread pool with ``Parallel/workers`` threads.
        case openBLAS = 1
    }

    private static let mode = Atomic<Int>(-1)

    /// The current threading mode (``Threading/split`` unless changed).
    public static var threading: Threading {
        get { Threading(rawValue: max(0, mode.load(ordering: .relaxed))) ?? .split }
        set { apply(newValue) }
    }

    private static func apply(_ t: Threading) {
        mode.store(t.rawValue, ordering: .relaxed)
        openblas_set_num_threads(t == .split ? 1 : Int32(Parallel.workers))
    }

    @inline(__always) private static func ensureConfigured() {
        if mode.load(ordering: .relaxed) < 0 { apply(.split) }
    }

    /// Makes OpenBLAS single-threaded so callers may run independent products concurrently.
    ///
    /// Returns the mode to restore with ``restore(_:)``.
    public static func enterConcurrentRegion() -> Threading {
        ensureConfigured()
        let old = threading
        if old == .openBLAS { openblas_set_num_threads(1) }
        return old
    }

    /// Restores the mode saved by ``enterConcurrentRegion()``.
    public static func restore(_ old: Threading) {
        if old == .openBLAS { openblas_set_num_threads(Int32(Parallel.workers)) }
    }

    /// `C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C`, all row-major.
    ///
    /// `op(A)` is `A` (`A` stored `[M, lda>=K]`) or, with `transA`, `Aᵀ` (`A` stored `[K, lda>=M]`);
    /// likewise for `B` (`[K, ldb>=N]` or, transposed, `[N, ldb>=K]`).
    /// Large products are split over the workers by output rows or columns.
    public static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        ensureConfigured()
        let flops = 2 * m * n * k
        let workers = Parallel.workers
        // Small products run on one thread, unless an operand is large: a few rows against a
        // big weight matrix (decoding) is bound by reading the matrix, which the split shares.
        let largeOperand = k * max(m, n) >= 1 << 18
        let split = !(threading == .openBLAS || workers == 1 || (flops < 2_000_000 && !largeOperand))
        if m == 1 {
            rowTimesMatrix(transA: transA, transB: transB, n: n, k: k, alpha: alpha, a: a, lda: lda,
                           b: b, ldb: ldb, beta: beta, c: c, split: split)
            return
        }
        if !split {
            single(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return
        }
        let sa = SendablePointer(UnsafeMutablePointer(mutating: a))
        let sb = SendablePointer(UnsafeMutablePointer(mutating: b))
        let sc = SendablePointer(c)
        if m >= n {
            // Split the rows of C (and of op(A)).
            Parallel.forRange(m, grain: 16) { r in
                let aOff = transA ? r.lowerBound : r.lowerBound * lda
                single(transA, transB, r.count, n, k, alpha, sa.p + aOff, lda, sb.p, ldb,
                       beta, sc.p + r.lowerBound * ldc, ldc)
            }
        } else {
            // Split the columns of C (and of op(B)).
            Parallel.forRange(n, grain: 16) { r in
                let bOff = transB ? r.lowerBound * ldb : r.lowerBound
                single(transA, transB, m, r.count, k, alpha, sa.p, lda, sb.p + bOff, ldb,
                       beta, sc.p + r.lowerBound, ldc)
            }
        }
    }

    /// `c[1,n] = alpha · op(A)[1,k] · op(B)[k,n] + beta · c` as matrix-vector products
    /// (`cblas_sgemv`), split over the columns of `c` when `split`. A single row is the shape of
    /// decoding one token; sgemm would first copy (pack) all of `B` for it, doubling the memory
    /// traffic of a product that is bound by reading `B`.
    private static func rowTimesMatrix(
        transA: Bool, transB: Bool, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, split: Bool
    ) {
        // The row of op(A): contiguous, or a column of A (stride lda) when transposed.
        let incA = Int32(transA ? lda : 1)
        let sb = SendablePointer(UnsafeMutablePointer(mutating: b)), sc = SendablePointer(c)
        let columns = { (r: Range<Int>) in
            if transB {
                // op(B)[k, r] = rows r of B [n, ldb]: c[r] = B[r, :] · a
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(r.count), Int32(k), alpha,
                            sb.p + r.lowerBound * ldb, Int32(ldb), a, incA, beta, sc.p + r.lowerBound, 1)
            } else {
                // op(B)[k, r] = columns r of B [k, ldb]: c[r] = B[:, r]ᵀ · a
                cblas_sgemv(CblasRowMajor, CblasTrans, Int32(k), Int32(r.count), alpha,
                            sb.p + r.lowerBound, Int32(ldb), a, incA, beta, sc.p + r.lowerBound, 1)
            }
        }
        if split {
            Parallel.forRange(n, grain: 64, columns)
        } else {
            columns(0..<n)
        }
    }

    /// One `cblas_sgemm` call on the calling thread, no splitting.
    @inline(__always)
    public static func single(
        _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int,
        _ alpha: Float, _ a: UnsafePointer<Float>, _ lda: Int,
        _ b: UnsafePointer<Float>, _ ldb: Int,
        _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
    ) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                    transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb),
                    beta, c, Int32(ldc))
    }
}
