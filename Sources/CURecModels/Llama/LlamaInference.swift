import CURecTensor
import Foundation

/// Keys and values of the positions already processed, for `rows` independent sequences.
///
/// Layout: `keys`, `values` `[L, rows, kvHeads, capacity, headSize]` (rotated keys; each head's
/// positions contiguous, so that a decoding step streams them); row `b` holds `lengths[b]`
/// positions. One position costs `2·L·kvWidth` floats (46 KB for SmolLM2-135M),
/// so size `capacity` to the longest sequence needed rather than the model's context.
public final class LlamaKVCache: @unchecked Sendable {
    /// Shape of the model the cache belongs to.
    public let config: LlamaConfig
    /// Number of sequences.
    public let rows: Int
    /// Positions each sequence can hold.
    public let capacity: Int
    let keys: Tensor
    let values: Tensor
    /// Positions stored per row.
    public internal(set) var lengths: [Int]
    /// Activation buffers of the last step, reused while large enough.
    var scratch: LlamaBlockBuffers?

    /// An empty cache for `rows` sequences of up to `capacity` tokens (default and maximum:
    /// the model's context).
    public convenience init(config: LlamaConfig, rows: Int, capacity: Int? = nil) throws(LlamaError) {
        let capacity = capacity ?? config.context
        guard rows > 0 else { throw .invalidArgument("a cache needs at least one row, got \(rows)") }
        guard capacity > 0, capacity <= config.context else {
            throw .invalidArgument("cache capacity must be in 1...\(config.context), got \(capacity)")
        }
        self.init(validConfig: config, rows: rows, capacity: capacity)
    }

    /// An empty cache for arguments the caller has checked (`rows >= 1`, `capacity` in
    /// `1...config.context`).
    init(validConfig config: LlamaConfig, rows: Int, capacity: Int) {
        self.config = config
        self.rows = rows
        self.capacity = capacity
        let shape = [config.layers, rows, config.kvHeads, capacity, config.headSize]
        keys = Tensor(uncheckedZeros: shape)
        values = Tensor(uncheckedZeros: shape)
        lengths = [Int](repeating: 0, count: rows)
    }

    /// Bytes held by the keys and values.
    public var byteCount: Int { (keys.count + values.count) * MemoryLayout<Float>.stride }

    /// Forgets the positions of `row` so that a new sequence can start there.
    public func reset(row: Int) throws(LlamaError) {
        guard row >= 0 && row < rows else { throw .rowOutOfRange(row: row, rows: rows) }
        lengths[row] = 0
    }

    /// Block `layer`'s slice of the cache.
    func keyValues(layer: Int) -> LlamaKeyValues {
        let o = layer * rows * capacity * config.kvWidth
        return LlamaKeyValues(keys: keys.data + o, values: values.data + o,
                              layout: .headMajor(capacity: capacity, NKV: config.kvHeads, hs: config.headSize))
    }

    func buffers(N: Int) -> LlamaBlockBuffers {
        if let s = scratch, s.N >= N { return s }
        let s = LlamaBlockBuffers(config: config, N: N, probabilities: nil)
        scratch = s
        return s
    }
}

extension LlamaModel {
    // MARK: Cached forward

    /// Runs new tokens through the model using and extending `cache`.
    ///
    /// Item `i` is token `tokens[i]` of sequence `rows[i]` at position `cache.lengths[row] +
    /// (number of earlier items of that row)`; items of one row need not be adjacent, and
    /// several rows may advance in one call (e.g. a whole batch's prompts, then one token per
    /// row). Returns logits `[want.count, V]` (flat, row-major) for the items listed in `want`.
    /// The same blocks as the training pass do the work, reading keys and values from the
    /// cache. Nothing changes when an argument is refused.
    public func step(cache: LlamaKVCache, rows: [Int], tokens: [Int], want: [Int]) throws(LlamaError) -> [Float] {
        guard cache.config == config else {
            throw .invalidArgument("the cache belongs to \(cache.config), not \(config)")
        }
        guard !rows.isEmpty else { throw .emptyInput("no tokens to run") }
        guard rows.count == tokens.count else {
            throw .invalidArgument("\(rows.count) rows but \(tokens.count) tokens")
        }
        var added = [Int](repeating: 0, count: cache.rows)
        for (r, t) in zip(rows, tokens) {
            guard r >= 0 && r < cache.rows else { throw .rowOutOfRange(row: r, rows: cache.rows) }
            guard t >= 0 && t < config.vocab else {
                throw .tokenOutOfRange(token: t, row: r, position: cache.lengths[r] + added[r], vocab: config.vocab)
            }
            added[r] += 1
        }
        for r in 0..<cache.rows where cache.lengths[r] + added[r] > cache.capacity {
            throw .sequenceTooLong(row: r, length: cache.lengths[r] + added[r], context: cache.capacity)
        }
        for i in want where i < 0 || i >= rows.count {
            throw .invalidArgument("wanted item \(i) is outside 0..<\(rows.count)")
        }
        return cachedForward(cache: cache, rows: rows, tokens: tokens.map { Int32($0) }, want: want)
    }

    /// ``step(cache:rows:tokens:want:)`` on validated input.
    func cachedForward(cache: LlamaKVCache, rows: [Int], tokens: [Int32], want: [Int]) -> [Float] {
        let c = config, N = rows.count, C = c.width, V = c.vocab
        // Spans: maximal runs of adjacent items of one row.
        var spans: [AttentionSpan] = []
        for i in 0..<N {
            let r = rows[i], position = cache.lengths[r]
            cache.lengths[r] += 1
            if let last = spans.last, last.row == r, last.start + last.count == position {
                spans[spans.count - 1].count += 1
            } else {
                spans.append(AttentionSpan(row: r, start: position, first: i, count: 1))
            }
        }
        let layout = LlamaTokenLayout(spans: spans)
        let buffers = cache.buffers(N: N)
        let x = Tensor(uncheckedZeros: [N, C])
        tokens.withUnsafeBufferPointer { tok in
            guard let tp = tok.baseAddress else { return }
            embedding.gatherRows(out: x.data, tokens: tp, N: N)
        }
        for (l, block) in blocks.enumerated() {
            block.forward(out: x.data, inp: x.data, buffers: buffers, layout: layout,
                          kv: cache.keyValues(layer: l), saveProbabilities: false)
        }
        let M = want.count
        if M == 0 { return [] }
        let sel = Tensor(uncheckedZeros: [M, C])
        for (j, i) in want.enumerated() { (sel.data + j * C).update(from: x.data + i * C, count: C) }
        RMSNorm.forward(out: sel.data, rstd: nil, inp: sel.data, weight: store.value(.outputNorm),
                        eps: c.rmsEps, N: M, C: C)
        var logits = [Float](repeating: 0, count: M * V)
        logits.withUnsafeMutableBufferPointer { buf in
            guard let base = buf.baseAddress else { return }
            embedding.forward(out: base, inp: sel.data, N: M)
        }
        return logits
    }

    // MARK: Greedy decoding

    /// Greedy (arg-max) continuations of `prompts`, all rows advancing together: the prompts
    /// run as one prefill step, then each step feeds every unfinished row its last token.
    ///
    /// - Parameters:
    ///   - prompts: token ids per row (each non-empty).
    ///   - maxTokens: tokens generated per row; `prompt.count + maxTokens` must fit the context.
    ///   - stopTokens: a row ends after producing one of these (it is included in the output).
    /// - Returns: the generated tokens of each row.
    public func greedy(prompts: [[Int]], maxTokens: Int, stopTokens: Set<Int> = []) throws(LlamaError) -> [[Int]] {
        guard !prompts.isEmpty else { throw .emptyInput("no prompts") }
        guard maxTokens >= 0 else { throw .invalidArgument("maxTokens must be >= 0, got \(maxTokens)") }
        for (r, p) in prompts.enumerated() {
            guard !p.isEmpty else { throw .emptyInput("prompt \(r) has no tokens") }
            guard p.count + maxTokens <= config.context else {
                throw .sequenceTooLong(row: r, length: p.count + maxTokens, context: config.context)
            }
            for (t, id) in p.enumerated() where id < 0 || id >= config.vocab {
                throw .tokenOutOfRange(token: id, row: r, position: t, vocab: config.vocab)
            }
        }
        var out = prompts.map { _ in [Int]() }
        if maxTokens == 0 { return out }
        let longest = prompts.map(\.count).max() ?? 0
        let cache = try LlamaKVCache(config: config, rows: prompts.count, capacity: longest + maxTokens)
        var rows: [Int] = [], toks: [Int32] = [], want: [Int] = []
        for (b, p) in prompts.enumerated() {
            for t in p { rows.append(b); toks.append(Int32(t)) }
            want.append(rows.count - 1)
        }
        var active = Array(0..<prompts.count)
        var logits = cachedForward(cache: cache, rows: rows, tokens: toks, want: want)
        let V = config.vocab
        while true {
            var next: [Int] = []
            for (j, b) in active.enumerated() {
                let base = j * V
                var best = 0
                for i in 1..<V where logits[base + i] > logits[base + best] { best = i }
                out[b].append(best)
                if out[b].count < maxTokens && !stopTokens.contains(best) { next.append(b) }
            }
            if next.isEmpty { break }
            active = next
            logits = cachedForward(cache: cache, rows: active, tokens: active.map { Int32(out[$0].last ?? 0) },
                                   want: Array(0..<active.count))
        }
        return out
    }
}
