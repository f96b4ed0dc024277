/// A BERT vocabulary (`vocab.txt`): one token per line, the line number is the id.
public struct WordPieceVocabulary: Sendable {
    /// Tokens by id.
    public let tokens: [String]
    private let ids: [String: Int32]

    /// Builds a vocabulary from tokens in id order. Duplicates keep their first id.
    public init(tokens: [String]) throws(TokenizerError) {
        guard tokens.count < Int(Int32.max) else {
            throw .invalidConfiguration("vocabulary of \(tokens.count) tokens is too large")
        }
        var ids: [String: Int32] = [:]
        ids.reserveCapacity(tokens.count)
        for (index, token) in tokens.enumerated() where ids[token] == nil {
            ids[token] = Int32(index)
        }
        self.tokens = tokens
        self.ids = ids
    }

    /// Reads `vocab.txt` (UTF-8, one token per line; a final newline is optional).
    public static func load(path: String) throws(TokenizerError) -> WordPieceVocabulary {
        let text = try TokenizerFiles.readText(path)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            line.hasSuffix("\r") ? String(line.dropLast()) : String(line)
        }
        if lines.last == "" { lines.removeLast() }
        guard !lines.isEmpty else {
            throw .invalidFile(path: path, line: nil, reason: "the vocabulary is empty")
        }
        return try WordPieceVocabulary(tokens: lines)
    }

    /// The id of `token`, or nil.
    public func id(_ token: String) -> Int32? { ids[token] }

    /// Number of tokens.
    public var count: Int { tokens.count }
}

/// Token ids of one text, with `[CLS]` first and `[SEP]` last.
public struct EncodedText: Sendable, Equatable {
    /// Token ids, at most the tokenizer's `maxLength`.
    public var ids: [Int32]
    /// 1 for every real token (always all ones for a single text).
    public var attentionMask: [Int32] { [Int32](repeating: 1, count: ids.count) }
}

/// Several encoded texts padded to one length, row-major `[count, sequenceLength]`.
public struct TokenBatch: Sendable, Equatable {
    /// Padded token ids, `count * sequenceLength` values.
    public var ids: [Int32]
    /// 1 for real tokens, 0 for padding, same layout as `ids`.
    public var attentionMask: [Int32]
    /// Real length of each text.
    public var lengths: [Int]
    /// Length every row is padded to (the longest text).
    public var sequenceLength: Int
    /// Number of texts.
    public var count: Int { lengths.count }

    /// The ids of row `index` without padding.
    public func ids(ofRow index: Int) -> ArraySlice<Int32> {
        let start = index * sequenceLength
        return ids[start..<(start + lengths[index])]
    }
}

/// BERT's WordPiece tokenizer: `BertPreTokenizer`, then greedy longest-match-first sub-words
/// with a `##` continuation prefix, `[UNK]` for words that cannot be split or are too long,
/// `[CLS] … [SEP]` around the text and truncation to `maxLength` tokens.
public struct WordPieceTokenizer: Sendable {
    /// The vocabulary.
    public let vocabulary: WordPieceVocabulary
    /// Clean-up and word splitting.
    public let preTokenizer: BertPreTokenizer
    /// Words longer than this many Unicode scalars become `[UNK]`.
    public let maxInputCharsPerWord: Int
    /// Most tokens per encoded text, `[CLS]` and `[SEP]` included.
    public let maxLength: Int
    /// Ids of the special tokens.
    public let unknownID: Int32, classifierID: Int32, separatorID: Int32, paddingID: Int32
    private let continuationPrefix: [Unicode.Scalar] = ["#", "#"]

    /// Creates a tokenizer; the vocabulary must hold `[UNK]`, `[CLS]`, `[SEP]` and `[PAD]`.
    public init(
        vocabulary: WordPieceVocabulary, lowercase: Bool = true, maxInputCharsPerWord: Int = 100,
        maxLength: Int = 256
    ) throws(TokenizerError) {
        guard maxLength >= 2 else {
            throw .invalidConfiguration("maxLength \(maxLength) leaves no room for [CLS] and [SEP]")
        }
        guard maxInputCharsPerWord > 0 else {
            throw .invalidConfiguration("maxInputCharsPerWord must be positive")
        }
        func required(_ token: String) throws(TokenizerError) -> Int32 {
            guard let id = vocabulary.id(token) else { throw .missingToken(token) }
            return id
        }
        self.vocabulary = vocabulary
        self.preTokenizer = BertPreTokenizer(lowercase: lowercase)
        self.maxInputCharsPerWord = maxInputCharsPerWord
        self.maxLength = maxLength
        unknownID = try required("[UNK]")
        classifierID = try required("[CLS]")
        separatorID = try required("[SEP]")
        paddingID = try required("[PAD]")
    }

    /// Loads `vocab.txt` and creates a tokenizer for an uncased model.
    public static func load(
        vocabPath: String, lowercase: Bool = true, maxLength: Int = 256
    ) throws(TokenizerError) -> WordPieceTokenizer {
        try WordPieceTokenizer(
            vocabulary: WordPieceVocabulary.load(path: vocabPath), lowercase: lowercase, maxLength: maxLength)
    }

    /// The sub-word tokens of `text`, without special tokens or truncation.
    public func tokenize(_ text: String) -> [String] {
        pieceIDs(text).map { vocabulary.tokens[Int($0)] }
    }

    /// `[CLS]`, the sub-word ids (truncated to `maxLength - 2`), `[SEP]`.
    public func encode(_ text: String) -> EncodedText {
        var pieces = pieceIDs(text, limit: maxLength - 2)
        pieces.insert(classifierID, at: 0)
        pieces.append(separatorID)
        return EncodedText(ids: pieces)
    }

    /// Encodes each text and pads every row with `[PAD]` to the longest one.
    public func encodeBatch(_ texts: [String]) -> TokenBatch {
        TokenBatch(padding: texts.map { encode($0).ids }, paddingID: paddingID)
    }

    /// Sub-word ids of `text`, stopping once `limit` ids are produced.
    func pieceIDs(_ text: String, limit: Int = .max) -> [Int32] {
        var ids: [Int32] = []
        for word in preTokenizer.words(text) {
            if ids.count >= limit { break }
            appendPieces(of: word, to: &ids)
        }
        if ids.count > limit { ids.removeLast(ids.count - limit) }
        return ids
    }

    /// Greedy longest-match-first split of one word; the whole word is `[UNK]` if any
    /// remainder matches no vocabulary entry.
    private func appendPieces(of word: [Unicode.Scalar], to ids: inout [Int32]) {
        guard word.count <= maxInputCharsPerWord else {
            ids.append(unknownID)
            return
        }
        let mark = ids.count
        var start = 0
        var candidate = String.UnicodeScalarView()
        while start < word.count {
            var end = word.count
            var match: Int32?
            while start < end {
                candidate.removeAll(keepingCapacity: true)
                if start > 0 { candidate.append(contentsOf: continuationPrefix) }
                candidate.append(contentsOf: word[start..<end])
                if let id = vocabulary.id(String(candidate)) {
                    match = id
                    break
                }
                end -= 1
            }
            guard let match else {
                ids.removeLast(ids.count - mark)
                ids.append(unknownID)
                return
            }
            ids.append(match)
            start = end
        }
    }
}

extension TokenBatch {
    /// Pads `rows` with `paddingID` to the longest row.
    public init(padding rows: [[Int32]], paddingID: Int32) {
        let length = rows.map(\.count).max() ?? 0
        var ids = [Int32](repeating: paddingID, count: rows.count * length)
        var mask = [Int32](repeating: 0, count: rows.count * length)
        for (row, tokens) in rows.enumerated() {
            let start = row * length
            for (column, id) in tokens.enumerated() {
                ids[start + column] = id
                mask[start + column] = 1
            }
        }
        self.init(ids: ids, attentionMask: mask, lengths: rows.map(\.count), sequenceLength: length)
    }
}
