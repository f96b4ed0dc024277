import Synchronization

/// A byte-level BPE tokenizer in the style of GPT-2.
///
/// Encoding: the text is first cut at special tokens (which become their own id and are never
/// split), each remaining stretch is pre-tokenized (``BPEPreTokenization``), each piece
/// is written in `ByteLevelAlphabet` (one symbol per UTF-8 byte) and its symbols are merged by
/// the learned merges, lowest rank first. When every byte has a symbol, any UTF-8 text encodes
/// and `decode(encode(text)) == text` exactly (see `droppingBytesWithoutToken` for
/// vocabularies that lack some bytes).
public final class BPETokenizer: Sendable {
    /// Tokens by id (byte-level strings, or the text of a special token).
    public let tokens: [String]
    /// Merges in rank order, as pairs of token strings.
    public let merges: [(String, String)]
    /// Special tokens (never split, matched before pre-tokenization), in the order given.
    public let specialTokens: [String]
    /// Whether a space is put in front of text that does not start with whitespace.
    public let addPrefixSpace: Bool
    /// How text between special tokens is cut into pieces before merging.
    public let preTokenization: BPEPreTokenization

    private let ids: [String: Int32]
    /// (left id, right id) → (rank, merged id).
    private let mergeTable: [SymbolPair: MergeResult]
    /// Token of each byte's symbol; -1 for a byte the vocabulary lacks.
    private let byteIDs: [Int32]
    private let specialIDs: [String: Int32]
    private let specialByFirstScalar: [Unicode.Scalar: [[Unicode.Scalar]]]
    private let isSpecial: [Bool]
    /// Ids of pieces already encoded, keyed by their UTF-8 bytes: `String` keys would compare
    /// by canonical equivalence and hand one piece the ids of another (U+2001 and U+2003,
    /// `;` and U+037E).
    private let cache = Mutex<[[UInt8]: [Int32]]>([:])

    struct SymbolPair: Hashable, Sendable {
        var left: Int32, right: Int32
    }

    struct MergeResult: Sendable {
        var rank: Int32, id: Int32
    }

    /// Builds a tokenizer from a vocabulary (token → id, ids dense from 0), ranked merges and
    /// special tokens. Throws if ids are not dense, a byte symbol is missing, a merge's parts
    /// or result are not in the vocabulary, or a special token is not in it.
    public convenience init(
        vocabulary: [String: Int], merges: [(String, String)], specialTokens: [String],
        addPrefixSpace: Bool = false, preTokenization: BPEPreTokenization = .gpt2,
        droppingBytesWithoutToken: Bool = false
    ) throws(TokenizerError) {
        var tokens = [String?](repeating: nil, count: vocabulary.count)
        for (token, id) in vocabulary {
            guard id >= 0, id < vocabulary.count, tokens[id] == nil else {
                throw .invalidConfiguration("vocabulary ids must be 0..<\(vocabulary.count) without gaps or repeats; '\(token)' has \(id)")
            }
            tokens[id] = token
        }
        try self.init(
            tokens: tokens.compactMap { $0 }, merges: merges, specialTokens: specialTokens,
            addPrefixSpace: addPrefixSpace, preTokenization: preTokenization,
            droppingBytesWithoutToken: droppingBytesWithoutToken)
    }

    /// Builds a tokenizer from its tokens in id order, ranked merges and special tokens.
    /// Throws if a token appears twice, a merge's parts or result are not in the vocabulary,
    /// a special token is not in it, or a byte symbol is missing.
    ///
    /// With `droppingBytesWithoutToken`, a vocabulary without some byte symbols is accepted and
    /// those bytes are left out of encodings, as Hugging Face's BPE without an unknown token and
    /// llama.cpp do (SmolLM2 lacks 21 bytes: a few control characters and bytes that never or
    /// rarely occur in UTF-8); text holding them then does not round-trip.
    public init(
        tokens dense: [String], merges: [(String, String)], specialTokens: [String],
        addPrefixSpace: Bool = false, preTokenization: BPEPreTokenization = .gpt2,
        droppingBytesWithoutToken: Bool = false
    ) throws(TokenizerError) {
        guard dense.count <= Int(Int32.max) else {
            throw .invalidConfiguration("\(dense.count) tokens do not fit 32-bit ids")
        }
        var ids: [String: Int32] = [:]
        ids.reserveCapacity(dense.count)
        for (id, token) in dense.enumerated() {
            if let first = ids[token] {
                throw .invalidConfiguration("token '\(token)' has ids \(first) and \(id)")
            }
            ids[token] = Int32(id)
        }

        var byteIDs: [Int32] = []
        for scalar in ByteLevelAlphabet.scalarForByte {
            if let id = ids[String(Character(scalar))] {
                byteIDs.append(id)
            } else if droppingBytesWithoutToken {
                byteIDs.append(-1)
            } else {
                throw .missingToken(String(Character(scalar)))
            }
        }
        var table: [SymbolPair: MergeResult] = [:]
        for (rank, merge) in merges.enumerated() {
            guard let left = ids[merge.0], let right = ids[merge.1] else {
                throw .invalidConfiguration("merge \(rank) '\(merge.0) \(merge.1)' uses a token outside the vocabulary")
            }
            guard let merged = ids[merge.0 + merge.1] else {
                throw .invalidConfiguration("merge \(rank) '\(merge.0) \(merge.1)' makes '\(merge.0 + merge.1)', which is not in the vocabulary")
            }
            let pair = SymbolPair(left: left, right: right)
            if table[pair] == nil { table[pair] = MergeResult(rank: Int32(rank), id: merged) }
        }
        var specialIDs: [String: Int32] = [:]
        var byFirst: [Unicode.Scalar: [[Unicode.Scalar]]] = [:]
        var isSpecial = [Bool](repeating: false, count: dense.count)
        for token in specialTokens {
            guard let id = ids[token] else { throw .missingToken(token) }
            guard let first = token.unicodeScalars.first else {
                throw .invalidConfiguration("a special token is empty")
            }
            specialIDs[token] = id
            isSpecial[Int(id)] = true
            byFirst[first, default: []].append(Array(token.unicodeScalars))
        }
        // Longest first, so the longest special token wins where several start.
        for key in byFirst.keys { byFirst[key]?.sort { $0.count > $1.count } }

        self.tokens = dense
        self.merges = merges
        self.specialTokens = specialTokens
        self.addPrefixSpace = addPrefixSpace
        self.preTokenization = preTokenization
        self.ids = ids
        self.mergeTable = table
        self.byteIDs = byteIDs
        self.specialIDs = specialIDs
        self.specialByFirstScalar = byFirst
        self.isSpecial = isSpecial
    }

    /// Number of tokens.
    public var vocabularySize: Int { tokens.count }

    /// The id of a token string, or nil.
    public func id(of token: String) -> Int32? { ids[token] }

    /// Whether `id` is one of ``specialTokens``.
    public func isSpecialToken(_ id: Int32) -> Bool {
        id >= 0 && Int(id) < isSpecial.count && isSpecial[Int(id)]
    }

    /// Token ids of `text`.
    ///
    /// With `allowingSpecialTokens` (the default, as Hugging Face tokenizers do) the text of a
    /// special token such as `<|im_start|>` becomes that token's single id, longest match
    /// first. Without it, special tokens are not recognised and their text is encoded like
    /// any other text, e.g. when the text comes from a user and must not forge control tokens.
    public func encode(_ text: String, allowingSpecialTokens: Bool = true) -> [Int32] {
        let scalars = Array(text.unicodeScalars)
        var result: [Int32] = []
        guard allowingSpecialTokens else {
            encodeOrdinary(scalars[...], into: &result)
            return result
        }
        var segmentStart = 0
        var i = 0
        while i < scalars.count {
            if let (length, id) = specialMatch(scalars, at: i) {
                encodeOrdinary(scalars[segmentStart..<i], into: &result)
                result.append(id)
                i += length
                segmentStart = i
            } else {
                i += 1
            }
        }
        encodeOrdinary(scalars[segmentStart..<scalars.count], into: &result)
        return result
    }

    /// The bytes that `ids` stand for; special tokens give their UTF-8 text, or nothing when
    /// `skippingSpecialTokens`.
    public func decodeBytes(_ ids: [Int32], skippingSpecialTokens: Bool = false) throws(TokenizerError) -> [UInt8] {
        var bytes: [UInt8] = []
        for id in ids {
            guard id >= 0, Int(id) < tokens.count else { throw .unknownTokenID(Int(id)) }
            let token = tokens[Int(id)]
            if isSpecial[Int(id)] {
                if !skippingSpecialTokens { bytes.append(contentsOf: token.utf8) }
            } else if let tokenBytes = ByteLevelAlphabet.decode(token) {
                bytes.append(contentsOf: tokenBytes)
            } else {
                // A non-byte-level token in a loaded vocabulary: take its text as is.
                bytes.append(contentsOf: token.utf8)
            }
        }
        return bytes
    }

    /// The text of `ids`. Invalid UTF-8 (e.g. half a character at the end of a partial
    /// sequence) is replaced by U+FFFD; whole encodings always decode exactly. Special tokens
    /// give their text unless `skippingSpecialTokens`.
    public func decode(_ ids: [Int32], skippingSpecialTokens: Bool = false) throws(TokenizerError) -> String {
        let bytes = try decodeBytes(ids, skippingSpecialTokens: skippingSpecialTokens)
        let text = String(decoding: bytes, as: UTF8.self)
        if addPrefixSpace, text.hasPrefix(" ") { return String(text.dropFirst()) }
        return text
    }

    private func specialMatch(_ s: [Unicode.Scalar], at i: Int) -> (Int, Int32)? {
        guard let candidates = specialByFirstScalar[s[i]] else { return nil }
        for candidate in candidates where i + candidate.count <= s.count {
            if s[i..<(i + candidate.count)].elementsEqual(candidate) {
                var view = String.UnicodeScalarView()
                view.append(contentsOf: candidate)
                if let id = specialIDs[String(view)] { return (candidate.count, id) }
            }
        }
        return nil
    }

    /// Encodes text between special tokens; with `addPrefixSpace` each such stretch that does
    /// not start with a space gets one, as the Hugging Face ByteLevel pre-tokenizer does.
    private func encodeOrdinary(_ segment: ArraySlice<Unicode.Scalar>, into result: inout [Int32]) {
        guard !segment.isEmpty else { return }
        var scalars = Array(segment)
        if addPrefixSpace, scalars.first != " " {
            scalars.insert(" ", at: 0)
        }
        for range in preTokenization.pieceRanges(scalars) {
            var view = String.UnicodeScalarView()
            view.append(contentsOf: scalars[range])
            result.append(contentsOf: encodePiece(String(view)))
        }
    }

    /// Ids of one pre-tokenized piece, cached.
    func encodePiece(_ piece: String) -> [Int32] {
        let bytes = Array(piece.utf8)
        if let cached = cache.withLock({ $0[bytes] }) { return cached }
        var symbols: [Int32] = []
        symbols.reserveCapacity(bytes.count)
        for byte in bytes where byteIDs[Int(byte)] >= 0 { symbols.append(byteIDs[Int(byte)]) }
        mergeSymbols(&symbols)
        cache.withLock { table in
            if table.count > 100_000 { table.removeAll(keepingCapacity: true) }
            table[bytes] = symbols
        }
        return symbols
    }

    /// Applies merges to `symbols`, always the lowest-ranked adjacent pair first (leftmost on ties).
    private func mergeSymbols(_ symbols: inout [Int32]) {
        while symbols.count > 1 {
            var best: MergeResult?
            var bestIndex = 0
            for index in 0..<(symbols.count - 1) {
                if let merge = mergeTable[SymbolPair(left: symbols[index], right: symbols[index + 1])],
                    merge.rank < (best?.rank ?? .max)
                {
                    best = merge
                    bestIndex = index
                }
            }
            guard let best else { return }
            // Merge every non-overlapping occurrence of the pair, left to right.
            let left = symbols[bestIndex], right = symbols[bestIndex + 1]
            var merged: [Int32] = []
            merged.reserveCapacity(symbols.count)
            merged.append(contentsOf: symbols[..<bestIndex])
            var index = bestIndex
            while index < symbols.count {
                if index + 1 < symbols.count && symbols[index] == left && symbols[index + 1] == right {
                    merged.append(best.id)
                    index += 2
                } else {
                    merged.append(symbols[index])
                    index += 1
                }
            }
            symbols = merged
        }
    }
}
