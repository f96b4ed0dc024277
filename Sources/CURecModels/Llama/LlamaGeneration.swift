import CURecTensor

extension LlamaKVCache: KeyValueCache {}

/// The Llama model drives the shared generation loop (``BatchedGenerator``) and completion
/// scorer (``CompletionScorer``) through ``CausalLanguageModel``; its cached step is the
/// same ``LlamaBlock`` forward the training pass runs.
extension LlamaModel: CausalLanguageModel {
    /// Number of token ids (`config.vocab`).
    public var vocabularySize: Int { config.vocab }
    /// Most positions of a sequence (`config.context`).
    public var contextLength: Int { config.context }

    /// An empty cache for `rows` sequences of up to `capacity` positions (callers pass
    /// `rows >= 1` and `capacity` in `1...contextLength`, which are clamped into range).
    public func makeCache(rows: Int, capacity: Int) -> LlamaKVCache {
        LlamaKVCache(validConfig: config, rows: max(1, rows), capacity: min(max(1, capacity), config.context))
    }

    /// Runs new tokens through the network using and extending `cache`; see
    /// ``CausalLanguageModel/step(cache:rows:tokens:want:)``. Inputs are validated by the caller.
    public func step(cache: LlamaKVCache, rows: [Int], tokens: [Int32], want: [Int]) -> [Float] {
        cachedForward(cache: cache, rows: rows, tokens: tokens, want: want)
    }
}
