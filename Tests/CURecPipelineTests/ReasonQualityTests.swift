import CURecData
import CURecModels
import CURecTensor
import Foundation
import Testing
@testable import CURecPipeline

@Suite struct ReasonQualityTests {
    let dataset = Synthetic.dataset()

    /// A tiny random GPT over bytes: a real causal LM, small enough for a unit test.
    static func tinyJudge() throws -> LanguageModelJudge<GPTModel> {
        let model = try GPTModel(config: GPTConfig(layers: 1, heads: 2, width: 16, context: 128, vocab: 256), seed: 5)
        return LanguageModelJudge(model: model, prefix: [10], encode: { $0.utf8.map(Int.init) })
    }

    @Test func samplesDistinctServedPairsWithAFixedSeed() {
        let served: [(user: Int32, items: [Int32])] = (0..<12).map { user in (Int32(user), (0..<5).map { Int32(($0 + user) % 18) }) }
        let a = ReasonQualityMeter.samplePairs(from: served, count: 20, seed: 3)
        let b = ReasonQualityMeter.samplePairs(from: served, count: 20, seed: 3)
        let c = ReasonQualityMeter.samplePairs(from: served, count: 20, seed: 4)
        #expect(a == b)
        #expect(a != c)
        #expect(Set(a).count == 20)
        let servedPairs = Set(served.flatMap { entry in entry.items.map { ReasonPair(user: entry.user, item: $0) } })
        #expect(a.allSatisfy { servedPairs.contains($0) })
        #expect(ReasonQualityMeter.samplePairs(from: served, count: 500, seed: 3).count == 60)
    }

    @Test func measuresChecksDiversityLengthAndPerplexity() throws {
        let split = LeaveOneOutSplit(dataset)
        let meter = ReasonQualityMeter(verifier: ReasonVerifier(dataset: dataset), split: split, judge: try Self.tinyJudge())
        // User 0 watched comedies; item 0 is "Laughing Matters" (1991), a comedy.
        let pairs = [ReasonPair(user: 0, item: 0), ReasonPair(user: 0, item: 2), ReasonPair(user: 2, item: 4), ReasonPair(user: 2, item: 0)]
        let texts = [
            "It is a comedy you will enjoy.",
            "It is a comedy you will enjoy.",
            "Fans of \"Nonexistent Film Title\" (1990) will love it.",   // unknown title: fails
            "",
        ]
        let row = try meter.measure(source: "test", pairs: pairs, texts: texts)
        #expect(row.pairs == 4 && row.nonEmpty == 3)
        #expect(row.passRate == 0.5)
        #expect(row.distinctShare == 0.5)
        // Bigrams: "it is","is a","a comedy","comedy you","you will","will enjoy" (twice) and 8 from the third.
        #expect(row.distinctBigrams == 6 + 8)
        #expect(abs(row.distinctBigramRatio - 14.0 / 20.0) < 1e-12)
        #expect(abs(row.meanWords - (7 + 7 + 9) / 3.0) < 1e-12)
        let perplexity = try #require(row.perplexity)
        #expect(perplexity.isFinite && perplexity > 1)
        // Pooled over tokens: the same as the judge on the non-empty texts, and identical texts do not change it.
        let judged = try #require(try Self.tinyJudge().perplexity(of: Array(texts.prefix(3))))
        #expect(abs(judged - perplexity) < 1e-9 * perplexity)
        let once = try #require(try Self.tinyJudge().perplexity(of: [texts[0]]))
        let twice = try #require(try Self.tinyJudge().perplexity(of: [texts[0], texts[0]]))
        #expect(abs(once - twice) < 1e-9 * once)
        #expect(try Self.tinyJudge().perplexity(of: ["", ""]) == nil)
    }

    @Test func perplexityFollowsTheModel() throws {
        // Train nothing: a text the model finds likelier has lower perplexity; compare against
        // the judge's own log-probabilities computed one token at a time.
        let judge = try Self.tinyJudge()
        let text = "A quiet drama."
        let tokens = text.utf8.map(Int.init)
        var total = 0.0
        for position in 0..<tokens.count {
            let row = try judge.scorer.logProbabilities(prompts: [[10] + Array(tokens[..<position])],
                                                        continuations: [[tokens[position]]])
            total -= Double(row[0][0])
        }
        let expected = exp(total / Double(tokens.count))
        let measured = try #require(try judge.perplexity(of: [text]))
        #expect(abs(measured - expected) < 1e-4 * expected)
    }

    @Test func reportHasTableAndVerbatimExamples() throws {
        let split = LeaveOneOutSplit(dataset)
        let meter = ReasonQualityMeter(verifier: ReasonVerifier(dataset: dataset), split: split, judge: nil)
        let served: [(user: Int32, items: [Int32])] = (0..<12).map { (Int32($0), [0, 3, 6, 9]) }
        let pairs = ReasonQualityMeter.samplePairs(from: served, count: 12, seed: 1)
        let templates = pairs.map { "It is a \(dataset.items[Int($0.item)].genres[0].lowercased()) title." }
        let generated = pairs.map { "Because you watched \"\(dataset.items[Int(split.trainItemsByUser[Int($0.user)][0])].title)\"." }
        let report = try ReasonQualityReport(meter: meter, dataset: dataset, pairs: pairs,
                                             sources: [("templates", templates), ("corrected", generated)], examples: 10, seed: 1)
        #expect(report.rows.map(\.source) == ["templates", "corrected"])
        #expect(report.examples.count == 10)
        #expect(report.rows[1].passRate == 1)
        let text = report.markdown()
        #expect(text.contains("## Reason quality"))
        #expect(text.contains("| templates |"))
        #expect(text.contains(generated[0]))
        #expect(text.contains("12 (user, item) pairs drawn with seed 1"))
    }
}

@Suite struct ReasonQualityServingTests {
    @Test func servedListsAreEachUsersTopKWithoutTheirHistory() throws {
        let dataset = Synthetic.dataset()
        let split = LeaveOneOutSplit(dataset)
        let histories = split.trainItemsByUser.map { $0.map { UInt32(bitPattern: $0) } }
        // Scores by item index: the best unseen items are the highest indices.
        struct ByIndex: RecommenderScoring {
            func score(user: UInt32, history: [UInt32], candidates: UnsafeBufferPointer<UInt32>,
                       scores: UnsafeMutableBufferPointer<Float>) throws {
                for (slot, item) in candidates.enumerated() { scores[slot] = Float(item) }
            }
        }
        let served = try ReasonQualityMeter.servedLists(model: ByIndex(), histories: histories, itemCount: dataset.itemCount,
                                                        users: [0, 1], k: 3)
        #expect(served.map(\.user) == [0, 1])
        for (user, items) in served {
            let seen = Set(histories[Int(user)].map { Int32(bitPattern: $0) })
            let expected = (0..<Int32(dataset.itemCount)).reversed().filter { !seen.contains($0) }.prefix(3)
            #expect(items == Array(expected))
        }
    }

    @Test func smolLM2JudgesAFluentSentenceMoreLikelyThanItsWordsShuffled() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("var/models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf").path
        guard FileManager.default.fileExists(atPath: path) else {
            print("skipped: no SmolLM2 file (scripts/fetch-lm)")
            return
        }
        let file = try GGUFFile.read(path: path)
        let judge = try LanguageModelJudge.chat(model: LlamaModel.load(gguf: file, weights: .quantized),
                                                tokenizer: PretrainedTokenizer(gguf: file))
        let fluent = "You enjoy light comedies from the nineties, and this one is a warm romantic comedy."
        let shuffled = "comedy romantic nineties the warm one comedies You from this a and light, is enjoy."
        let good = try #require(try judge.perplexity(of: [fluent]))
        let bad = try #require(try judge.perplexity(of: [shuffled]))
        #expect(good < bad)
        #expect(good > 1 && good < 100)
    }
}

@Suite struct TemplatePairReasonTests {
    @Test func servedPairsGetTemplateReasonsThatPassTheVerifier() throws {
        let (dataset, split, builder, _) = try Synthetic.corpus()
        let histories = split.trainItemsByUser.map { $0.map { UInt32(bitPattern: $0) } }
        struct ByIndex: RecommenderScoring {
            func score(user: UInt32, history: [UInt32], candidates: UnsafeBufferPointer<UInt32>,
                       scores: UnsafeMutableBufferPointer<Float>) throws {
                for (slot, item) in candidates.enumerated() { scores[slot] = Float((item * 7 + user) % 19) }
            }
        }
        let served = try ReasonQualityMeter.servedLists(model: ByIndex(), histories: histories, itemCount: dataset.itemCount,
                                                        users: (0..<Int32(dataset.userCount)).map { $0 }, k: 5)
        let pairs = ReasonQualityMeter.samplePairs(from: served, count: 30, seed: 2)
        let texts = pairs.map { builder.templatePairReason(user: $0.user, item: $0.item) ?? "" }
        #expect(texts.allSatisfy { !$0.isEmpty })
        let meter = ReasonQualityMeter(verifier: ReasonVerifier(dataset: dataset), split: split, judge: nil)
        let row = try meter.measure(source: "templates", pairs: pairs, texts: texts)
        #expect(row.passRate == 1, "template reasons failing the verifier among \(texts.prefix(3))")
        #expect(builder.templatePairReason(user: 999, item: 0) == nil)
    }
}
