import CURecTensor
import Foundation
import Synchronization

/// Scratch of one inference forward (``SASRecModel/inferenceForward(inputs:lengths:users:B:T:buffers:into:)``)
/// over up to ``rows`` positions: one set of block activations shared by every block (nothing
/// is kept for a backward pass), the residual stream, and the last block's `[B, C]` rows.
/// Uninitialised memory, written before it is read; reused across calls through the model's pool.
final class SASRecInferenceBuffers: @unchecked Sendable {
    /// Positions `N = B·T` the buffers hold.
    let rows: Int
    /// Attention probabilities the buffers hold (`B·NH·T·T` of the non-last blocks).
    let attention: Int
    private let storage: UnsafeMutablePointer<Float>
    let x: UnsafeMutablePointer<Float>          // [N,C]   residual stream (embeddings, then each block's output in place)
    let gathered: UnsafeMutablePointer<Float>   // [N,C]   the last block's residual rows ([B,C] used)
    let last: UnsafeMutablePointer<Float>       // [N,C]   the last block's output rows ([B,C] used)
    let att: UnsafeMutablePointer<Float>        // [B,NH,T,T]
    let block: TransformerBlockActivations

    init(rows N: Int, attention: Int, width C: Int, hidden H: Int) {
        rows = N
        self.attention = attention
        // x, gathered, last, ln, atty, mid: 6 [N,C]; qkv [N,3C]; fc [N,H]; two sets of [N] statistics.
        let total = N * (9 * C + H + 4) + attention
        storage = .allocate(capacity: max(total, 1))
        var next = storage
        func take(_ count: Int) -> UnsafeMutablePointer<Float> {
            defer { next += count }
            return next
        }
        x = take(N * C)
        gathered = take(N * C)
        last = take(N * C)
        let ln = take(N * C), atty = take(N * C), mid = take(N * C), qkv = take(N * 3 * C), fc = take(N * H)
        let ln1Mean = take(N), ln1Rstd = take(N), ln2Mean = take(N), ln2Rstd = take(N)
        att = take(attention)
        // ln1 and ln2 share a buffer (ln1 is read only by the QKV product before ln2 is
        // written); GELU runs in place on fc.
        block = TransformerBlockActivations(ln1: ln, ln1Mean: ln1Mean, ln1Rstd: ln1Rstd, qkv: qkv, atty: atty, mid: mid,
                                            ln2: ln, ln2Mean: ln2Mean, ln2Rstd: ln2Rstd, fc: fc, fcGelu: fc)
    }

    deinit { storage.deallocate() }

    func fits(rows N: Int, attention A: Int) -> Bool { N <= rows && A <= attention }
}

/// Buffers of finished inference forwards, for the next ones (concurrent callers each take
/// their own set).
final class SASRecInferencePool: Sendable {
    private let free = Mutex<[SASRecInferenceBuffers]>([])
    /// Sets kept between calls: enough for every core to run a forward.
    private let keep = 2 * Parallel.workers

    /// A set holding `rows` positions and `attention` probabilities, from the pool or new.
    func take(rows: Int, attention: Int, width: Int, hidden: Int) -> SASRecInferenceBuffers {
        let reused: SASRecInferenceBuffers? = free.withLock { sets in
            guard let index = sets.firstIndex(where: { $0.fits(rows: rows, attention: attention) }) else { return nil }
            return sets.remove(at: index)
        }
        return reused ?? SASRecInferenceBuffers(rows: rows, attention: attention, width: width, hidden: hidden)
    }

    /// Returns `buffers` for reuse; beyond ``keep`` sets the smallest is dropped.
    func give(_ buffers: SASRecInferenceBuffers) {
        free.withLock { sets in
            sets.append(buffers)
            if sets.count > keep, let smallest = sets.indices.min(by: { sets[$0].rows < sets[$1].rows }) {
                sets.remove(at: smallest)
            }
        }
    }
}

extension SASRecModel {
    /// Windows one inference forward takes at most (bounds its buffers).
    static let inferenceChunk = 256

    /// Inference forward: the hidden states `h[B,C]` of the last real position of each of `B`
    /// right-padded windows `inputs[B,T]` (`lengths[B]`, each `1...T`), and with user features
    /// `users[B]` (checked by the caller). Reads ``itemTable`` and ``userTable``.
    ///
    /// The same blocks as ``forward(inputs:users:a:)`` on fewer rows: every block but the last
    /// runs over all `B·T` positions; the last one computes keys and values for all of them
    /// but attention, the MLP and the final LayerNorm only for the `B` last positions, the
    /// only rows scoring reads (``TransformerBlockAttention/lastPositions(lengths:B:T:gathered:)``).
    func inferenceForward(inputs: UnsafePointer<Int32>, lengths: UnsafePointer<Int>, users: UnsafePointer<Int32>?,
                          B: Int, T: Int, buffers s: SASRecInferenceBuffers, into h: UnsafeMutablePointer<Float>) {
        let c = config, N = B * T, L = c.blocks, C = c.width
        // x[B,T,C] = E[s_t] + P[t] (+ V[u])
        Embedding.forward(out: s.x, tokens: inputs, wte: itemTable.data,
                          wpe: parameters.data + layout.positionEmbedding, B: B, T: T, C: C)
        if c.userFeatureDimension > 0, let users {
            UserProjection.forward(encoded: s.x, table: userTable.data, users: users, B: B, T: T, C: C)
        }
        for l in 0..<(L - 1) {
            // x[N,C] = block_l(x), in place
            block.forward(out: s.x, inp: s.x, weights: blockWeights(l), activations: s.block, N: N,
                          attention: .causal(att: s.att, B: B, T: T))
        }
        // last[B,C] = block_{L-1}(x) at each window's last position
        block.forward(out: s.last, inp: s.x, weights: blockWeights(L - 1), activations: s.block, N: N,
                      attention: .lastPositions(lengths: lengths, B: B, T: T, gathered: s.gathered))
        // h[B,C] = LNf(last)
        LayerNorm.forward(out: h, mean: s.block.ln1Mean, rstd: s.block.ln1Rstd, inp: s.last,
                          weight: parameters.data + layout.finalNormWeight,
                          bias: parameters.data + layout.finalNormBias, N: B, C: C)
    }

    /// The hidden state after the last item of each sequence (each truncated to its last
    /// `maxLength` items), `[sequences.count, C]` row-major. Empty sequences get a zero row.
    /// `users` gives the user of each sequence (`[sequences.count]`): required by a model with
    /// user features, ignored by one without.
    ///
    /// Runs ``inferenceForward(inputs:lengths:users:B:T:buffers:into:)`` over up to
    /// ``inferenceChunk`` windows at a time, padded to the longest of them.
    /// Thread-safe: uses its own buffers and only reads the weights.
    public func hiddenStates(sequences: [[Int32]], users: [Int32]? = nil) throws(SASRecError) -> [Float] {
        let C = config.width, maxT = config.maxLength, n = config.itemCount
        let withUsers = config.userFeatureDimension > 0
        if withUsers { try Self.checkUsers(users, rows: sequences.count, config: config) }
        for sequence in sequences {
            if let bad = sequence.suffix(maxT).first(where: { $0 < 0 || Int($0) >= n }) {
                throw .itemOutOfRange(item: Int(bad), itemCount: n)
            }
        }
        var out = [Float](repeating: 0, count: sequences.count * C)
        var start = 0
        while start < sequences.count {
            let end = min(start + Self.inferenceChunk, sequences.count), B = end - start
            let T = max(1, sequences[start..<end].map { min($0.count, maxT) }.max() ?? 1)
            var inputs = [Int32](repeating: 0, count: B * T)
            var lengths = [Int](repeating: 1, count: B)
            for b in 0..<B {
                let window = sequences[start + b].suffix(maxT)
                lengths[b] = max(1, window.count)
                for (t, item) in window.enumerated() { inputs[b * T + t] = item }
            }
            let buffers = inferencePool.take(rows: B * T, attention: B * config.heads * T * T,
                                             width: C, hidden: config.hidden)
            defer { inferencePool.give(buffers) }
            let chunkUsers = withUsers ? Array((users ?? [])[start..<end]) : []
            out.withUnsafeMutableBufferPointer { o in
                inputs.withUnsafeBufferPointer { inp in
                    lengths.withUnsafeBufferPointer { len in
                        chunkUsers.withUnsafeBufferPointer { usr in
                            inferenceForward(inputs: inp.baseAddress!, lengths: len.baseAddress!, users: usr.baseAddress,
                                             B: B, T: T, buffers: buffers, into: o.baseAddress! + start * C)
                        }
                    }
                }
                // An empty window ran as one padding item; its row stays zero.
                for b in 0..<B where sequences[start + b].isEmpty {
                    (o.baseAddress! + (start + b) * C).update(repeating: 0, count: C)
                }
            }
            start = end
        }
        return out
    }
}
