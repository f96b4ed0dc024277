import CURecCollections
import Foundation

/// Learns byte-level BPE merges from a corpus.
///
/// The vocabulary starts with the special tokens (ids 0, 1, …), then the 256 byte symbols in
/// byte order. Each step merges the most frequent adjacent pair of symbols over all
/// pre-tokenized words (weighted by how often each word occurs); ties go to the pair of
/// smaller ids, i.e. older symbols. Training stops at `vocabularySize` tokens or when no pair
/// occurs `minFrequency` times. The result depends only on the corpus and the settings.
public struct BPETrainer: Sendable {
    /// Target number of tokens, special tokens and the 256 byte symbols included.
    public var vocabularySize: Int
    /// Pairs seen fewer times than this are never merged.
    public var minFrequency: Int
    /// Tokens that are never split; occurrences in the corpus are left out of training.
    public var specialTokens: [String]

    /// Creates a trainer.
    public init(vocabularySize: Int, minFrequency: Int = 2, specialTokens: [String] = ["<|endoftext|>"]) {
        self.vocabularySize = vocabularySize
        self.minFrequency = minFrequency
        self.specialTokens = specialTokens
    }

    /// Trains on `texts` and returns the tokenizer.
    public func train(_ texts: [String]) throws(TokenizerError) -> BPETokenizer {
        let base = specialTokens.count + 256
        guard vocabularySize >= base else {
            throw .invalidConfiguration("vocabularySize \(vocabularySize) is below the \(base) special and byte tokens")
        }
        guard Set(specialTokens).count == specialTokens.count, !specialTokens.contains("") else {
            throw .invalidConfiguration("special tokens must be distinct and non-empty")
        }
        var tokens = specialTokens
        tokens += ByteLevelAlphabet.scalarForByte.map { String(Character($0)) }
        var ids: [String: Int32] = [:]
        for (id, token) in tokens.enumerated() where ids[token] == nil { ids[token] = Int32(id) }
        guard ids.count == tokens.count else {
            throw .invalidConfiguration("a special token equals a byte symbol")
        }

        var state = PairStatistics(words: countWords(texts), firstByteID: Int32(specialTokens.count))
        var merges: [(String, String)] = []
        while tokens.count < vocabularySize, let (pair, count) = state.popMostFrequent(), count >= minFrequency {
            let left = tokens[Int(pair.left)], right = tokens[Int(pair.right)]
            let merged = left + right
            let id: Int32
            if let existing = ids[merged] {
                id = existing
            } else {
                id = Int32(tokens.count)
                tokens.append(merged)
                ids[merged] = id
            }
            merges.append((left, right))
            state.merge(pair, into: id)
        }
        let vocabulary = Dictionary(uniqueKeysWithValues: tokens.enumerated().map { ($1, $0) })
        return try BPETokenizer(vocabulary: vocabulary, merges: merges, specialTokens: specialTokens)
    }

    /// Pre-tokenized pieces of the corpus (special tokens cut out) with their counts, sorted.
    private func countWords(_ texts: [String]) -> [(String, Int)] {
        let preTokenizer = GPT2PreTokenizer()
        var counts: [String: Int] = [:]
        for text in texts {
            var parts = [text]
            for special in specialTokens {
                parts = parts.flatMap { $0.components(separatedBy: special) }
            }
            for part in parts {
                for piece in preTokenizer.split(part) { counts[piece, default: 0] += 1 }
            }
        }
        return counts.sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
    }
}

/// Words as symbol sequences, pair counts, and which words hold each pair; updated
/// incrementally as pairs are merged.
private struct PairStatistics {
    typealias Pair = BPETokenizer.SymbolPair

    var words: [[Int32]]
    var wordCounts: [Int]
    var pairCounts: [Pair: Int] = [:]
    var wordsWithPair: [Pair: Set<Int>] = [:]
    var heap = Heap<PairCount>()

    init(words: [(String, Int)], firstByteID: Int32) {
        self.words = words.map { word in word.0.utf8.map { firstByteID + Int32($0) } }
        self.wordCounts = words.map(\.1)
        for (index, symbols) in self.words.enumerated() {
            for (left, right) in zip(symbols, symbols.dropFirst()) {
                let pair = Pair(left: left, right: right)
                pairCounts[pair, default: 0] += wordCounts[index]
                wordsWithPair[pair, default: []].insert(index)
            }
        }
        for (pair, count) in pairCounts { heap.insert(PairCount(count: count, pair: pair)) }
    }

    /// The most frequent pair with its current count, skipping outdated heap entries.
    mutating func popMostFrequent() -> (Pair, Int)? {
        while let entry = heap.popMin() {
            if entry.count > 0 && pairCounts[entry.pair] == entry.count { return (entry.pair, entry.count) }
        }
        return nil
    }

    /// Replaces every occurrence of `pair` by symbol `id` and updates the counts.
    mutating func merge(_ pair: Pair, into id: Int32) {
        let affected = (wordsWithPair.removeValue(forKey: pair) ?? []).sorted()
        var changed = Set<Pair>()
        for index in affected {
            let old = words[index]
            var new: [Int32] = []
            new.reserveCapacity(old.count)
            var position = 0
            while position < old.count {
                if position + 1 < old.count && old[position] == pair.left && old[position + 1] == pair.right {
                    new.append(id)
                    position += 2
                } else {
                    new.append(old[position])
                    position += 1
                }
            }
            if new.count == old.count { continue }
            let weight = wordCounts[index]
            for (left, right) in zip(old, old.dropFirst()) {
                let p = Pair(left: left, right: right)
                pairCounts[p, default: 0] -= weight
                changed.insert(p)
            }
            for (left, right) in zip(new, new.dropFirst()) {
                let p = Pair(left: left, right: right)
                pairCounts[p, default: 0] += weight
                wordsWithPair[p, default: []].insert(index)
                changed.insert(p)
            }
            words[index] = new
        }
        pairCounts[pair] = 0
        for p in changed.sorted(by: { ($0.left, $0.right) < ($1.left, $1.right) }) {
            if let count = pairCounts[p], count > 0 { heap.insert(PairCount(count: count, pair: p)) }
        }
    }
}

/// A pair with its count as the training heap orders them: the higher count comes out first,
/// then the smaller pair (so merges are deterministic).
private struct PairCount: Comparable {
    let count: Int
    let pair: BPETokenizer.SymbolPair

    static func < (lhs: PairCount, rhs: PairCount) -> Bool {
        if lhs.count != rhs.count { return lhs.count > rhs.count }
        return (lhs.pair.left, lhs.pair.right) < (rhs.pair.left, rhs.pair.right)
    }
}
