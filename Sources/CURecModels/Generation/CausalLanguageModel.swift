/// Keys and values of the positions a ``CausalLanguageModel`` has already processed, for a
/// batch of independent sequences (rows).
public protocol KeyValueCache: AnyObject {
    /// Number of sequences.
    var rows: Int { get }
    /// Most positions a row can hold.
    var capacity: Int { get }
    /// Positions stored per row (`rows` values); ``CausalLanguageModel/step(cache:rows:tokens:want:)``
    /// advances them.
    var lengths: [Int] { get }
}

/// A decoder-only language model that processes tokens incrementally against a key/value
/// cache. ``BatchedGenerator`` (sampling) and ``CompletionScorer`` (log-probabilities) work
/// with any conforming model.
///
/// A conforming model provides its vocabulary size and context length, makes empty caches,
/// and runs one step: new tokens of some rows in, logits of requested tokens out.
public protocol CausalLanguageModel {
    /// The model's cache type.
    associatedtype Cache: KeyValueCache

    /// Number of token ids; every logits vector has this many values.
    var vocabularySize: Int { get }
    /// Most positions (prompt and generated tokens) a sequence may have.
    var contextLength: Int { get }

    /// An empty cache (all lengths 0) for `rows` sequences of up to `capacity` positions each.
    /// Callers pass `1...contextLength` for `capacity` and `rows >= 1`.
    func makeCache(rows: Int, capacity: Int) -> Cache

    /// Runs new tokens through the network, reading and extending `cache`.
    ///
    /// Item `i` is token `tokens[i]` of row `rows[i]`, at position `cache.lengths[rows[i]]`
    /// plus the number of earlier items of the same row in this call (a row's items are in
    /// order; one call may hold a whole prompt of a row, or one token each of several rows).
    /// Every item attends to its row's cached positions and to the earlier items of its row.
    /// Afterwards each row's length has grown by its number of items.
    ///
    /// - Returns: logits `[want.count, vocabularySize]`, row-major: for each index `j` in
    ///   `want`, the next-token logits after item `j`.
    ///
    /// The callers validate the inputs: `rows.count == tokens.count`, rows in
    /// `0..<cache.rows`, tokens in `0..<vocabularySize`, no row beyond `cache.capacity`,
    /// `want` indices in `0..<tokens.count`.
    func step(cache: Cache, rows: [Int], tokens: [Int32], want: [Int]) -> [Float]
}

/// Why generation or scoring was refused.
public enum GenerationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// There are no prompts, or a prompt has no tokens.
    case emptyInput(String)
    /// A sequence is longer than the model's context.
    case sequenceTooLong(row: Int, length: Int, context: Int)
    /// A token id is outside `0..<vocab`.
    case tokenOutOfRange(token: Int, row: Int, position: Int, vocab: Int)
    /// An option or argument is out of range.
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .emptyInput(let why): return "empty input: \(why)"
        case let .sequenceTooLong(row, length, context):
            return "row \(row) has \(length) tokens, more than the context of \(context)"
        case let .tokenOutOfRange(token, row, position, vocab):
            return "token \(token) at row \(row), position \(position) is outside the vocabulary of \(vocab)"
        case .invalidArgument(let why): return "invalid argument: \(why)"
        }
    }
}

extension CausalLanguageModel {
    /// Checks that `sequence` (row `row`) is non-empty, fits the context and holds valid ids.
    func validate(_ sequence: [Int], row: Int, what: String = "prompt") throws(GenerationError) {
        guard !sequence.isEmpty else { throw .emptyInput("\(what) \(row) has no tokens") }
        guard sequence.count <= contextLength else {
            throw .sequenceTooLong(row: row, length: sequence.count, context: contextLength)
        }
        for (position, id) in sequence.enumerated() where id < 0 || id >= vocabularySize {
            throw .tokenOutOfRange(token: id, row: row, position: position, vocab: vocabularySize)
        }
    }
}
