import CURecTensor
import Foundation

/// Keys and values of the positions already processed, for `rows` independent sequences.
///
/// Layout: `k`, `v` `[L, rows, NH, capacity, hs]`; row `b` holds `lengths[b]` positions.
public final class GPTKVCache: KeyValueCache {
    /// Shape of the model the cache belongs to.
    public let config: GPTConfig
    /// Number of sequences.
    public let rows: Int
    /// Most positions per row.
    public let capacity: Int
    let k: Tensor
    let v: Tensor
    /// Positions stored per row.
    public internal(set) var lengths: [Int]

    /// An empty cache for `rows` sequences of up to `capacity` tokens (at most, and by
    /// default, `config.context`).
    public init(config: GPTConfig, rows: Int, capacity: Int? = nil) {
        self.config = config
        self.rows = rows
        self.capacity = max(1, min(capacity ?? config.context, config.context))
        let hs = config.width / config.heads
        let shape = [config.layers, rows, config.heads, self.capacity, hs]
        k = Tensor(uncheckedZeros: shape)
        v = Tensor(uncheckedZeros: shape)
        lengths = [Int](repeating: 0, count: rows)
    }

    /// Bytes held by the keys and values.
    public var byteCount: Int { (k.count + v.count) * MemoryLayout<Float>.stride }

    @inline(__always) func offset(layer: Int, row: Int, head: Int) -> Int {
        let hs = config.width / config.heads
        return ((layer * rows + row) * config.heads + head) * capacity * hs
    }
}

/// Sampling options of ``GPTModel/generate(prompts:options:onToken:shouldStop:)``.
public typealias GPTSamplingOptions = SamplingOptions
/// Why a row of ``GPTModel/generate(prompts:options:onToken:shouldStop:)`` stopped.
public typealias GPTFinishReason = FinishReason
/// The output of one prompt of ``GPTModel/generate(prompts:options:onToken:shouldStop:)``.
public typealias GPTGeneration = GenerationResult

extension GPTModel: CausalLanguageModel {
    /// Number of token ids (`config.vocab`).
    public var vocabularySize: Int { config.vocab }
    /// Most positions of a sequence (`config.context`).
    public var contextLength: Int { config.context }

    /// An empty cache for `rows` sequences of up to `capacity` tokens.
    public func makeCache(rows: Int, capacity: Int) -> GPTKVCache {
        GPTKVCache(config: config, rows: rows, capacity: capacity)
    }

    /// Runs new tokens through the network using and extending `cache`; see
    /// ``CausalLanguageModel/step(cache:rows:tokens:want:)``.
    public func step(cache: GPTKVCache, rows: [Int], tokens: [Int32], want: [Int]) -> [Float] {
        cachedForward(cache: cache, rows: rows, tokens: tokens, want: want)
    }
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
        let N = rows.count, C = c.width, V = c.vocab
        var positions = [Int](repeating: 0, count: N)
        for i in 0..<N {
            positions[i] = cache.lengths[rows[i]]
            cache.lengths[rows[i]] += 1
        }
        let x = Tensor(uncheckedZeros: [N, C])       // residual stream, updated in place
        let h = Tensor(uncheckedZeros: [N, C])       // LayerNorm output
        let qkv = Tensor(uncheckedZeros: [N, 3 * C])
        let y = Tensor(uncheckedZeros: [N, C])       // attention output
        let f = Tensor(uncheckedZeros: [N, 4 * C])   // MLP hidden, GELU in place
        let stats = Tensor(uncheckedZeros: [2, N])   // mean, rstd
        for i in 0..<N {
            let dst = x.data + i * C
            let we = w(.wte) + Int(tokens[i]) * C, pe = w(.wpe) + positions[i] * C
            for j in 0..<C { dst[j] = we[j] + pe[j] }
        }
        // Nothing is kept for a backward pass: one set of buffers serves every block.
        let buffers = TransformerBlockActivations(
            ln1: h.data, ln1Mean: stats.data, ln1Rstd: stats.data + N, qkv: qkv.data, atty: y.data, mid: x.data,
            ln2: h.data, ln2Mean: stats.data, ln2Rstd: stats.data + N, fc: f.data, fcGelu: f.data)
        for l in 0..<c.layers {
            block.forward(out: x.data, inp: x.data, weights: blockWeights(l), activations: buffers, N: N,
                          attention: .cached(cache, layer: l, rows: rows, positions: positions))
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

    // MARK: Generation

    /// Generates continuations of `prompts` with a KV cache, all rows advancing together
    /// (``BatchedGenerator`` over this model).
    ///
    /// - Parameters:
    ///   - prompts: token ids per row (each non-empty, at most `context` tokens).
    ///   - options: temperature, top-k, top-p, stop sequences, token limit and seed.
    ///   - onToken: called with `(row, token)` for each token as soon as it is final (tokens
    ///     that might begin a stop sequence are held back until that is decided).
    ///   - shouldStop: polled before each token; returning true ends every row (finish
    ///     reason `.cancelled`), e.g. when the caller's deadline passed.
    /// - Returns: one ``GPTGeneration`` per prompt.
    public func generate(
        prompts: [[Int]], options: GPTSamplingOptions,
        onToken: (_ row: Int, _ token: Int) -> Void = { _, _ in },
        shouldStop: () -> Bool = { false }
    ) throws(GPTError) -> [GPTGeneration] {
        do {
            return try BatchedGenerator(model: self).generate(
                prompts: prompts, options: options, onToken: onToken, shouldStop: shouldStop)
        } catch {
            throw GPTError(error)
        }
    }

    // MARK: Log-probabilities

    /// Log-probability of each continuation token given its prompt and the tokens before it:
    /// `result[i][j] = log p(continuations[i][j] | prompts[i] + continuations[i][..<j])`
    /// (``CompletionScorer`` over this model). `prompt.count + continuation.count` must not
    /// exceed the context.
    public func logProbabilities(prompts: [[Int]], continuations: [[Int]]) throws(GPTError) -> [[Float]] {
        do {
            return try CompletionScorer(model: self).logProbabilities(prompts: prompts, continuations: continuations)
        } catch {
            throw GPTError(error)
        }
    }
}

extension GPTError {
    /// The GPT error for a refused generation or scoring request.
    init(_ error: GenerationError) {
        switch error {
        case .emptyInput(let why): self = .emptyInput(why)
        case let .sequenceTooLong(row, length, context): self = .sequenceTooLong(row: row, length: length, context: context)
        case let .tokenOutOfRange(token, row, position, vocab):
            self = .tokenOutOfRange(token: token, row: row, position: position, vocab: vocab)
        case .invalidArgument(let why): self = .invalidArgument(why)
        }
    }
}
