import CURecData
import CURecModels
import CURecTensor
import Foundation

/// A (user, item) pair whose reason is judged (dataset indices).
public struct ReasonPair: Sendable, Hashable, Codable {
    public var user: Int32
    public var item: Int32

    public init(user: Int32, item: Int32) {
        self.user = user
        self.item = item
    }
}

/// Fluency judge: the perplexity of texts under a causal language model.
public protocol ReasonFluencyJudge {
    /// exp(mean negative log-likelihood per token) over every token of the non-empty
    /// `texts`; nil when no text has a token.
    func perplexity(of texts: [String]) throws -> Double?
}

/// Perplexity under a causal LM through ``CompletionScorer``: each text is scored as the
/// continuation of a fixed `prefix` (e.g. a chat template's opening of an assistant turn), so
/// the first token of the text is scored too. The per-token log-likelihoods of all texts are
/// pooled, so a longer text weighs more (corpus perplexity).
public struct LanguageModelJudge<Model: CausalLanguageModel>: ReasonFluencyJudge {
    public let scorer: CompletionScorer<Model>
    /// Token ids the texts are scored after (at least one).
    public let prefix: [Int]
    /// The model's tokenizer.
    public let encode: (String) -> [Int]
    /// Texts scored per model step (memory is bounded by the scorer's logits budget anyway).
    public var batch = 16

    public init(model: Model, prefix: [Int], encode: @escaping (String) -> [Int]) {
        self.scorer = CompletionScorer(model: model)
        self.prefix = prefix
        self.encode = encode
    }

    public func perplexity(of texts: [String]) throws -> Double? {
        let room = scorer.model.contextLength - prefix.count
        guard !prefix.isEmpty, room > 0 else {
            throw GenerationError.invalidArgument("the judge's prefix leaves no room in a context of \(scorer.model.contextLength)")
        }
        let encoded = texts.map { Array(encode($0).prefix(room)) }.filter { !$0.isEmpty }
        guard !encoded.isEmpty else { return nil }
        var total = 0.0, tokens = 0
        for start in stride(from: 0, to: encoded.count, by: max(batch, 1)) {
            let chunk = Array(encoded[start..<min(start + max(batch, 1), encoded.count)])
            let rows = try scorer.logProbabilities(prompts: Array(repeating: prefix, count: chunk.count), continuations: chunk)
            for row in rows {
                for value in row { total -= Double(value) }
                tokens += row.count
            }
        }
        return exp(total / Double(max(tokens, 1)))
    }
}

extension LanguageModelJudge where Model == LlamaModel {
    /// The judge for a chat model (the untuned SmolLM2 as an independent judge): each text is
    /// scored as the assistant's answer to `question` in the model's chat template, so the
    /// model judges it as a reply, not as the start of a document. Texts are tokenized
    /// without special tokens.
    public static func chat(model: LlamaModel, tokenizer: PretrainedTokenizer,
                            question: String = "Why would this user enjoy this film?") throws -> LanguageModelJudge<LlamaModel> {
        let prefix = try tokenizer.encode(conversation: [.user(question)], addingGenerationPrompt: true).map(Int.init)
        return LanguageModelJudge(model: model, prefix: prefix, encode: { text in
            tokenizer.encode(text, allowingSpecialTokens: false, addingBOSToken: false).map(Int.init)
        })
    }
}

extension ReasonQualityMeter {
    /// What a recommender serves: for each of `users`, its top `k` items over the whole
    /// catalogue given `histories[user]`, leaving out the items of that history (as
    /// `Recommend` with `exclude_seen`). The input of ``samplePairs(from:count:seed:)``.
    public static func servedLists(model: any RecommenderScoring, histories: [[UInt32]], itemCount: Int,
                                   users: [Int32], k: Int) throws -> [(user: Int32, items: [Int32])] {
        let candidates = (0..<itemCount).map { UInt32($0) }
        var scores = [Float](repeating: 0, count: itemCount)
        var served: [(user: Int32, items: [Int32])] = []
        for user in users {
            let history = histories[Int(user)]
            try candidates.withUnsafeBufferPointer { candidateBuffer in
                try scores.withUnsafeMutableBufferPointer { output in
                    try model.score(user: UInt32(bitPattern: user), history: history, candidates: candidateBuffer, scores: output)
                }
            }
            for item in history where Int(item) < itemCount { scores[Int(item)] = -.infinity }
            let order = scores.indices.filter { scores[$0].isFinite }
                .sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
            served.append((user, order.prefix(max(k, 0)).map { Int32($0) }))
        }
        return served
    }
}

/// The quality of one set of reasons over the same pairs.
public struct ReasonQualityRow: Sendable, Equatable, Codable {
    /// Where the reasons come from (e.g. `base`, `aligned`, `grpo`, `corrected`, `templates`).
    public var source: String
    public var pairs: Int
    /// Non-empty texts.
    public var nonEmpty: Int
    /// Share of pairs whose text is non-empty and passes every verifier check.
    public var passRate: Double
    /// Distinct texts (after trimming) over pairs.
    public var distinctShare: Double
    /// Distinct word bigrams over all texts (lower-cased, punctuation stripped), and that
    /// count over the number of bigrams (distinct-2).
    public var distinctBigrams: Int
    public var distinctBigramRatio: Double
    /// Mean length in words of the non-empty texts.
    public var meanWords: Double
    /// Perplexity under the judge model; nil without a judge or without text.
    public var perplexity: Double?
}

/// Measures reasons for (user, item) pairs: the verifier's verdict in the pair's context
/// (user, item, the user's training cut-off), diversity, length and fluency.
public struct ReasonQualityMeter {
    public let verifier: ReasonVerifier
    /// The last training timestamp of each user (the cut-off of claims about their history).
    public let cutoffs: [Int64?]
    public let judge: (any ReasonFluencyJudge)?

    public init(verifier: ReasonVerifier, split: LeaveOneOutSplit, judge: (any ReasonFluencyJudge)?) {
        self.verifier = verifier
        self.cutoffs = split.trainTimesByUser.map(\.last)
        self.judge = judge
    }

    /// Draws `count` distinct pairs, with a fixed `seed`, from what was served: one list of
    /// items per user (e.g. each user's top 10 from the serving recommender). The pairs come
    /// back in the order drawn; fewer when fewer were served.
    public static func samplePairs(from served: [(user: Int32, items: [Int32])], count: Int, seed: UInt64) -> [ReasonPair] {
        var seen = Set<ReasonPair>()
        var pool: [ReasonPair] = []
        for (user, items) in served {
            for item in items {
                let pair = ReasonPair(user: user, item: item)
                if seen.insert(pair).inserted { pool.append(pair) }
            }
        }
        var generator = Xoshiro256(seed: seed)
        let taken = min(max(count, 0), pool.count)
        pool.shuffleRandomPrefix(taken, using: &generator)
        return Array(pool.prefix(taken))
    }

    /// The words of `text`: lower-cased runs of letters, digits and apostrophes.
    static func words(_ text: String) -> [String] {
        text.lowercased().split { !($0.isLetter || $0.isNumber || $0 == "'") }.map(String.init)
    }

    /// Measures `texts` (one per pair, "" when none was written) as the reasons of `source`.
    public func measure(source: String, pairs: [ReasonPair], texts: [String]) throws -> ReasonQualityRow {
        precondition(pairs.count == texts.count, "one text per pair")
        let trimmed = texts.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        var passing = 0
        for (pair, text) in zip(pairs, trimmed) where !text.isEmpty {
            let cutoff = Int(pair.user) < cutoffs.count ? cutoffs[Int(pair.user)] : nil
            let verdict = verifier.verify(text, context: ReasonContext(user: pair.user, item: pair.item, cutoff: cutoff))
            if verdict.failures.isEmpty { passing += 1 }
        }
        let present = trimmed.filter { !$0.isEmpty }
        var bigrams = Set<String>()
        var bigramCount = 0
        var wordCount = 0
        for text in present {
            let words = Self.words(text)
            wordCount += words.count
            guard words.count >= 2 else { continue }
            for index in 1..<words.count {
                bigrams.insert(words[index - 1] + " " + words[index])
                bigramCount += 1
            }
        }
        let n = Double(max(pairs.count, 1))
        return ReasonQualityRow(
            source: source, pairs: pairs.count, nonEmpty: present.count, passRate: Double(passing) / n,
            distinctShare: Double(Set(present).count) / n, distinctBigrams: bigrams.count,
            distinctBigramRatio: bigramCount == 0 ? 0 : Double(bigrams.count) / Double(bigramCount),
            meanWords: present.isEmpty ? 0 : Double(wordCount) / Double(present.count),
            perplexity: try judge?.perplexity(of: present))
    }
}

/// The reason quality section: a table with one row per source and verbatim examples.
public struct ReasonQualityReport: Sendable, Codable, Equatable {
    public var rows: [ReasonQualityRow]
    /// Examples: the pair (dataset ids and title) and each source's text.
    public var examples: [Example]
    public var seed: UInt64

    public struct Example: Sendable, Codable, Equatable {
        public var user: String
        public var item: String
        public var title: String
        /// (source, text) in row order.
        public var texts: [[String]]
    }

    /// Measures every source on `pairs` and keeps the first `examples` pairs verbatim.
    /// `sources` are (name, one text per pair) in report order.
    public init(meter: ReasonQualityMeter, dataset: RecDataset, pairs: [ReasonPair], sources: [(name: String, texts: [String])],
                examples: Int = 10, seed: UInt64) throws {
        rows = try sources.map { try meter.measure(source: $0.name, pairs: pairs, texts: $0.texts) }
        self.seed = seed
        self.examples = pairs.prefix(max(examples, 0)).enumerated().map { index, pair in
            Example(user: dataset.users[Int(pair.user)].externalID, item: dataset.items[Int(pair.item)].externalID,
                    title: dataset.items[Int(pair.item)].title,
                    texts: sources.map { [$0.name, index < $0.texts.count ? $0.texts[index] : ""] })
        }
    }

    /// The Markdown section.
    public func markdown() -> String {
        var report = MarkdownReport()
        report.heading("Reason quality", level: 2)
        let pairs = rows.first?.pairs ?? 0
        report.paragraph("\(pairs) (user, item) pairs drawn with seed \(seed) from the served recommendations. Pass = the "
            + "text is non-empty and passes every verifier check for that user and item; distinct = distinct texts over "
            + "pairs; distinct-2 = distinct word bigrams over all bigrams; perplexity under the untuned base model.")
        let rowsText = rows.map { row -> [String] in
            [row.source, ReportFormat.fixed(row.passRate * 100, decimals: 1) + "%",
             ReportFormat.fixed(row.distinctShare * 100, decimals: 1) + "%", "\(row.distinctBigrams)",
             ReportFormat.fixed(row.distinctBigramRatio, decimals: 3), ReportFormat.fixed(row.meanWords, decimals: 1),
             row.perplexity.map { ReportFormat.fixed($0, decimals: 2) } ?? "—"]
        }
        report.table(header: ["Reasons", "All checks pass", "Distinct texts", "Distinct bigrams", "Distinct-2", "Words",
                              "Perplexity"],
                     rows: rowsText, alignments: [.left, .right, .right, .right, .right, .right, .right])
        if !examples.isEmpty {
            report.paragraph("\(examples.count) of those pairs, verbatim:")
            report.bullets(examples.map { example in
                "user \(example.user), \(example.title) (\(example.item)):\n"
                    + example.texts.map { "\($0[0]): " + ($0[1].isEmpty ? "(none)" : $0[1]) }.joined(separator: "\n")
            })
        }
        return report.render()
    }
}
