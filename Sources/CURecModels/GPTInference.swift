import COpenBLAS
import CURecTensor
import Foundation

/// Keys and values of the positions already processed, for `rows` independent sequences.
///
/// Layout: `k`, `v` `[L, rows, NH, context, hs]`; row `b` holds `lengths[b]` positions.
public final class GPTKVCache {
    /// Shape of the model the cache belongs to.
    public let config: GPTConfig
    /// Number of sequences.
    public let rows: Int
    let k: Tensor
    let v: Tensor
    /// Positions stored per row.
    public internal(set) var lengths: [Int]

    /// An empty cache for `rows` sequences of up to `config.context` tokens.
    public init(config: GPTConfig, rows: Int) {
        self.config = config
        self.rows = rows
        let hs = config.width / config.heads
        let shape = [config.layers, rows, config.heads, config.context, hs]
        k = Tensor(uncheckedZeros: shape)
        v = Tensor(uncheckedZeros: shape)
        lengths = [Int](repeating: 0, count: rows)
    }

    /// Bytes held by the keys and values.
    public var byteCount: Int { (k.count + v.count) * MemoryLayout<Float>.stride }

    @inline(__always) func offset(layer: Int, row: Int, head: Int) -> Int {
        let hs = config.width / config.heads
        return ((layer * rows + row) * config.heads + head) * config.context * hs
    }
}

/// Sampling options for ``GPTModel/generate(prompts:options:onToken:)``.
public struct GPTSamplingOptions: Sendable, Equatable {
    /// Most tokens generated per row.
    public var maxTokens: Int
    /// Softmax temperature; 0 means greedy (arg-max) decoding.
    public var temperature: Float
    /// Keep only the `topK` most likely tokens (0 disables).
    public var topK: Int
    /// Keep the smallest set of most likely tokens whose probability reaches `topP` (1 disables).
    public var topP: Float
    /// Generation of a row stops when its output ends with one of these token sequences; the
    /// stop sequence itself is not part of the output and is never streamed.
    public var stopSequences: [[Int]]
    /// Seed of the sampler; row `i` uses its own stream derived from `seed` and `i`, so a row's
    /// output does not depend on the other rows of the batch.
    public var seed: UInt64
    /// Discourages tokens the row has already generated: their logits are divided by this
    /// when positive and multiplied when negative before sampling (1 disables; must be >= 1).
    public var repetitionPenalty: Float

    public init(maxTokens: Int = 64, temperature: Float = 1, topK: Int = 0, topP: Float = 1,
                stopSequences: [[Int]] = [], seed: UInt64 = 0, repetitionPenalty: Float = 1) {
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.stopSequences = stopSequences
        self.seed = seed
        self.repetitionPenalty = repetitionPenalty
    }
}

/// Why a row stopped generating.
public enum GPTFinishReason: Sendable, Equatable {
    /// `maxTokens` tokens were produced.
    case maxTokens
    /// The output ended with a stop sequence (removed from `tokens`).
    case stopSequence
    /// The sequence filled the model's context.
    case contextFull
    /// The caller's `shouldStop` ended generation.
    case cancelled
}

/// The output of one prompt.
public struct GPTGeneration: Sendable, Equatable {
    /// Generated token ids (prompt and stop sequence excluded).
    public var tokens: [Int]
    /// Why generation stopped.
    public var finishReason: GPTFinishReason
    /// With finish reason `.stopSequence`, the index in `options.stopSequences` of the stop
    /// sequence that ended the row (removed from `tokens`); nil otherwise.
    public var stopSequenceIndex: Int? = nil
}

extension GPTModel {
    // MARK: Cached forward

    /// Runs new tokens through the network using and extending `cache`.
    ///
    /// Item `i` is token `tokens[i]` of row `rows[i]` at position `cache.lengths[row] + (number of
    /// earlier items of that row)`. Returns logits `[want.count, V]` for the items listed in
    /// `want`. Inputs are validated by the callers.
    func cachedForward(cache: GPTKVCache, rows: [Int], tokens: [Int32], want: [Int]) -> [Float] {
        let c = config
        let N = rows.count, C = c.width, NH = c.heads, hs = C / NH, V = c.vocab, T = c.context
        var positions = [Int](repeating: 0, count: N)
        for i in 0..<N {
            positions[i] = cache.lengths[rows[i]]
            cache.lengths[rows[i]] += 1
        }
        let x = Tensor(uncheckedZeros: [N, C])       // residual stream
        let h = Tensor(uncheckedZeros: [N, C])       // LayerNorm output
        let qkv = Tensor(uncheckedZeros: [N, 3 * C])
        let y = Tensor(uncheckedZeros: [N, C])       // attention output
        let f = Tensor(uncheckedZeros: [N, 4 * C])
        let stats = Tensor(uncheckedZeros: [2, N])   // mean, rstd
        for i in 0..<N {
            let dst = x.data + i * C
            let we = w(.wte) + Int(tokens[i]) * C, pe = w(.wpe) + positions[i] * C
            for j in 0..<C { dst[j] = we[j] + pe[j] }
        }
        let scale = 1 / Float(hs).squareRoot()
        for l in 0..<c.layers {
            LayerNorm.forward(out: h.data, mean: stats.data, rstd: stats.data + N, inp: x.data,
                              weight: w(.ln1w, l), bias: w(.ln1b, l), N: N, C: C)
            Matmul.forward(out: qkv.data, inp: h.data, weight: w(.qkvw, l), bias: w(.qkvb, l),
                           N: N, C: C, OC: 3 * C)
            for i in 0..<N {
                for hh in 0..<NH {
                    let o = cache.offset(layer: l, row: rows[i], head: hh) + positions[i] * hs
                    (cache.k.data + o).update(from: qkv.data + i * 3 * C + C + hh * hs, count: hs)
                    (cache.v.data + o).update(from: qkv.data + i * 3 * C + 2 * C + hh * hs, count: hs)
                }
            }
            let yp = SendablePointer(y.data)
            let saved = BLAS.enterConcurrentRegion()
            Parallel.forRange(N * NH) { r in
                let scores = UnsafeMutablePointer<Float>.allocate(capacity: T)
                defer { scores.deallocate() }
                for ih in r {
                    let i = ih / NH, hh = ih % NH
                    let len = positions[i] + 1
                    let base = cache.offset(layer: l, row: rows[i], head: hh)
                    let q = qkv.data + i * 3 * C + hh * hs
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(len), Int32(hs), scale,
                                cache.k.data + base, Int32(hs), q, 1, 0, scores, 1)
                    var mx = -Float.infinity
                    for j in 0..<len where scores[j] > mx { mx = scores[j] }
                    var sum: Float = 0
                    for j in 0..<len { scores[j] = expf(scores[j] - mx); sum += scores[j] }
                    let inv = 1 / sum
                    for j in 0..<len { scores[j] *= inv }
                    cblas_sgemv(CblasRowMajor, CblasTrans, Int32(len), Int32(hs), 1,
                                cache.v.data + base, Int32(hs), scores, 1, 0,
                                yp.p + i * C + hh * hs, 1)
                }
            }
            BLAS.restore(saved)
            Matmul.forward(out: x.data, inp: y.data, weight: w(.attprojw, l), bias: w(.attprojb, l),
                           N: N, C: C, OC: C, residual: x.data)
            LayerNorm.forward(out: h.data, mean: stats.data, rstd: stats.data + N, inp: x.data,
                              weight: w(.ln2w, l), bias: w(.ln2b, l), N: N, C: C)
            Matmul.forward(out: f.data, inp: h.data, weight: w(.fcw, l), bias: w(.fcb, l),
                           N: N, C: C, OC: 4 * C)
            GELU.forward(out: f.data, inp: f.data, N: N * 4 * C)
            Matmul.forward(out: x.data, inp: f.data, weight: w(.fcprojw, l), bias: w(.fcprojb, l),
                           N: N, C: 4 * C, OC: C, residual: x.data)
        }
        let M = want.count
        if M == 0 { return [] }
        let sel = Tensor(uncheckedZeros: [M, C])
        for (j, i) in want.enumerated() { (sel.data + j * C).update(from: x.data + i * C, count: C) }
        LayerNorm.forward(out: sel.data, mean: stats.data, rstd: stats.data + N, inp: sel.data,
                          weight: w(.lnfw), bias: w(.lnfb), N: M, C: C)
        var logits = [Float](repeating: 0, count: M * V)
        logits.withUnsafeMutableBufferPointer { buf in
            guard let base = buf.baseAddress else { return }
            TiedLMHead.forward(logits: base, inp: sel.data, wte: w(.wte), N: M, C: C, V: V)
        }
        return logits
    }

    func validatePrompt(_ prompt: [Int], row: Int) throws(GPTError) {
        guard !prompt.isEmpty else { throw .emptyInput("prompt \(row) has no tokens") }
        guard prompt.count <= config.context else {
            throw .sequenceTooLong(row: row, length: prompt.count, context: config.context)
        }
        for (t, id) in prompt.enumerated() where id < 0 || id >= config.vocab {
            throw .tokenOutOfRange(token: id, row: row, position: t, vocab: config.vocab)
        }
    }

    // MARK: Generation

    /// Generates continuations of `prompts` with a KV cache, all rows advancing together.
    ///
    /// - Parameters:
    ///   - prompts: token ids per row (each non-empty, at most `context` tokens).
    ///   - options: temperature, top-k, top-p, stop sequences, token limit and seed.
    ///   - shouldStop: polled before each token; returning true ends every row (finish
    ///     reason `.cancelled`), e.g. when the caller's deadline passed.
    ///   - onToken: called with `(row, token)` for each token as soon as it is final (tokens
    ///     that might begin a stop sequence are held back until that is decided).
    /// - Returns: one ``GPTGeneration`` per prompt.
    public func generate(
        prompts: [[Int]], options: GPTSamplingOptions,
        onToken: (_ row: Int, _ token: Int) -> Void = { _, _ in },
        shouldStop: () -> Bool = { false }
    ) throws(GPTError) -> [GPTGeneration] {
        guard !prompts.isEmpty else { throw .emptyInput("no prompts") }
        for (r, p) in prompts.enumerated() { try validatePrompt(p, row: r) }
        guard options.maxTokens >= 0 else { throw .invalidArgument("maxTokens must be >= 0, got \(options.maxTokens)") }
        guard options.temperature >= 0, options.temperature.isFinite else {
            throw .invalidArgument("temperature must be finite and >= 0, got \(options.temperature)")
        }
        guard options.topK >= 0 else { throw .invalidArgument("topK must be >= 0, got \(options.topK)") }
        guard options.topP > 0, options.topP <= 1 else {
            throw .invalidArgument("topP must be in (0, 1], got \(options.topP)")
        }
        guard options.stopSequences.allSatisfy({ !$0.isEmpty }) else {
            throw .invalidArgument("stop sequences must not be empty")
        }
        guard options.repetitionPenalty >= 1, options.repetitionPenalty.isFinite else {
            throw .invalidArgument("repetitionPenalty must be finite and >= 1, got \(options.repetitionPenalty)")
        }
        let B = prompts.count, V = config.vocab
        var results = prompts.map { _ in GPTGeneration(tokens: [], finishReason: .maxTokens) }
        if options.maxTokens == 0 { return results }
        let cache = GPTKVCache(config: config, rows: B)
        var rngs = (0..<B).map { Xoshiro256(seed: options.seed &+ UInt64($0) &* 0x9E37_79B9_7F4A_7C15) }
        var emitted = [Int](repeating: 0, count: B)
        var active = [Bool](repeating: true, count: B)

        // Prefill: all prompt tokens of all rows in one pass; logits of each row's last token.
        var rows: [Int] = [], toks: [Int32] = [], want: [Int] = []
        for (b, p) in prompts.enumerated() {
            for t in p { rows.append(b); toks.append(Int32(t)) }
            want.append(rows.count - 1)
        }
        var logits = cachedForward(cache: cache, rows: rows, tokens: toks, want: want)
        var logitRow = Array(0..<B)   // row b's logits are at logitRow[b]
        var probs = [Float](repeating: 0, count: V)
        while true {
            if shouldStop() {
                for b in 0..<B where active[b] { results[b].finishReason = .cancelled }
                break
            }
            var nextRows: [Int] = [], nextToks: [Int32] = []
            for b in 0..<B where active[b] {
                if options.repetitionPenalty > 1 {
                    let base = logitRow[b] * V
                    for previous in Set(results[b].tokens) where previous >= 0 && previous < V {
                        let value = logits[base + previous]
                        logits[base + previous] = value > 0 ? value / options.repetitionPenalty : value * options.repetitionPenalty
                    }
                }
                let token = logits.withUnsafeBufferPointer { buf -> Int in
                    guard let base = buf.baseAddress else { return 0 }
                    return Self.sample(base + logitRow[b] * V, V: V, options: options,
                                       rng: &rngs[b], scratch: &probs)
                }
                results[b].tokens.append(token)
                var finish: GPTFinishReason?
                var hold = 0
                if let stopIndex = options.stopSequences.firstIndex(where: { results[b].tokens.ends(with: $0) }) {
                    results[b].tokens.removeLast(options.stopSequences[stopIndex].count)
                    results[b].stopSequenceIndex = stopIndex
                    finish = .stopSequence
                } else if results[b].tokens.count >= options.maxTokens {
                    finish = .maxTokens
                } else if cache.lengths[b] >= config.context {
                    finish = .contextFull
                } else {
                    hold = Self.pendingStopPrefix(results[b].tokens, options.stopSequences)
                }
                let final = results[b].tokens.count - hold
                while emitted[b] < final {
                    onToken(b, results[b].tokens[emitted[b]])
                    emitted[b] += 1
                }
                if let finish {
                    results[b].finishReason = finish
                    active[b] = false
                } else {
                    nextRows.append(b)
                    nextToks.append(Int32(token))
                }
            }
            if nextRows.isEmpty { break }
            logits = cachedForward(cache: cache, rows: nextRows, tokens: nextToks,
                                   want: Array(0..<nextRows.count))
            for (j, b) in nextRows.enumerated() { logitRow[b] = j }
        }
        return results
    }

    /// Length of the longest suffix of `tokens` that is a proper prefix of a stop sequence.
    static func pendingStopPrefix(_ tokens: [Int], _ stops: [[Int]]) -> Int {
        var best = 0
        for s in stops {
            var n = min(s.count - 1, tokens.count)
            while n > best {
                if tokens.suffix(n).elementsEqual(s.prefix(n)) { best = n; break }
                n -= 1
            }
        }
        return best
    }

    /// Draws one token from `logits[V]` according to `options`.
    static func sample(_ logits: UnsafePointer<Float>, V: Int, options: GPTSamplingOptions,
                       rng: inout Xoshiro256, scratch probs: inout [Float]) -> Int {
        if options.temperature == 0 {
            var best = 0
            for i in 1..<V where logits[i] > logits[best] { best = i }
            return best
        }
        let invT = 1 / options.temperature
        var mx = -Float.infinity
        for i in 0..<V where logits[i] > mx { mx = logits[i] }
        var sum: Float = 0
        for i in 0..<V {
            let e = expf((logits[i] - mx) * invT)
            probs[i] = e
            sum += e
        }
        let filtering = (options.topK > 0 && options.topK < V) || options.topP < 1
        if !filtering {
            var u = rng.nextUniform() * sum
            for i in 0..<V {
                u -= probs[i]
                if u < 0 { return i }
            }
            return V - 1
        }
        // Candidates in decreasing probability: the top k through a size-k min-heap (O(V log k)),
        // or every token when only top-p is active.
        let k = options.topK > 0 ? min(options.topK, V) : V
        var order = k < V ? topIndices(probs, count: k) : Array(0..<V)
        order.sort { probs[$0] > probs[$1] || (probs[$0] == probs[$1] && $0 < $1) }
        var keep = k
        if options.topP < 1 {
            var cum: Float = 0
            let target = options.topP * sum
            for j in 0..<keep {
                cum += probs[order[j]]
                if cum >= target { keep = j + 1; break }
            }
        }
        var total: Float = 0
        for j in 0..<keep { total += probs[order[j]] }
        var u = rng.nextUniform() * total
        for j in 0..<keep {
            u -= probs[order[j]]
            if u < 0 { return order[j] }
        }
        return order[keep - 1]
    }

    /// Indices of the `count` largest values (ties to the lower index), in no particular order.
    static func topIndices(_ values: [Float], count: Int) -> [Int] {
        // Min-heap ordered by (value, -index): the root is the weakest kept candidate.
        var heap: [Int] = []
        heap.reserveCapacity(count)
        @inline(__always) func weaker(_ a: Int, _ b: Int) -> Bool {
            values[a] < values[b] || (values[a] == values[b] && a > b)
        }
        func siftDown(_ start: Int) {
            var i = start
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && weaker(heap[l], heap[m]) { m = l }
                if r < heap.count && weaker(heap[r], heap[m]) { m = r }
                if m == i { return }
                heap.swapAt(i, m)
                i = m
            }
        }
        for i in 0..<values.count {
            if heap.count < count {
                heap.append(i)
                var c = heap.count - 1
                while c > 0 {
                    let p = (c - 1) / 2
                    if weaker(heap[c], heap[p]) { heap.swapAt(c, p); c = p } else { break }
                }
            } else if weaker(heap[0], i) {
                heap[0] = i
                siftDown(0)
            }
        }
        return heap
    }

    // MARK: Log-probabilities

    /// Log-probability of each continuation token given its prompt and the tokens before it:
    /// `result[i][j] = log p(continuations[i][j] | prompts[i] + continuations[i][..<j])`.
    ///
    /// Rows are padded on the right and run as one batch (padding cannot influence earlier
    /// positions under the causal mask). `prompt.count + continuation.count` must not exceed the
    /// context.
    public func logProbabilities(prompts: [[Int]], continuations: [[Int]]) throws(GPTError) -> [[Float]] {
        guard !prompts.isEmpty else { throw .emptyInput("no prompts") }
        guard prompts.count == continuations.count else {
            throw .invalidArgument("\(prompts.count) prompts but \(continuations.count) continuations")
        }
        var rows: [[Int]] = []
        for (r, (p, c)) in zip(prompts, continuations).enumerated() {
            let seq = p + c
            guard !p.isEmpty else { throw .emptyInput("prompt \(r) has no tokens") }
            guard seq.count <= config.context else {
                throw .sequenceTooLong(row: r, length: seq.count, context: config.context)
            }
            for (t, id) in seq.enumerated() where id < 0 || id >= config.vocab {
                throw .tokenOutOfRange(token: id, row: r, position: t, vocab: config.vocab)
            }
            rows.append(seq)
        }
        let T = rows.map(\.count).max() ?? 1
        let padded = rows.map { $0 + [Int](repeating: 0, count: T - $0.count) }
        let batch = try GPTTokenBatch(rows: padded, config: config)
        let a = forwardLogits(batch)
        let V = config.vocab
        var out: [[Float]] = []
        for (b, (p, c)) in zip(prompts, continuations).enumerated() {
            var lp: [Float] = []
            lp.reserveCapacity(c.count)
            for (j, tok) in c.enumerated() {
                let x = a.logits.data + (b * T + p.count - 1 + j) * V
                var mx = -Float.infinity
                for i in 0..<V where x[i] > mx { mx = x[i] }
                var sum: Double = 0
                for i in 0..<V { sum += Double(expf(x[i] - mx)) }
                lp.append(x[tok] - mx - Float(log(sum)))
            }
            out.append(lp)
        }
        return out
    }
}

extension Array where Element: Equatable {
    func ends(with suffix: [Element]) -> Bool {
        suffix.count <= count && self.suffix(suffix.count).elementsEqual(suffix)
    }
}
