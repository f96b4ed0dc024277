import Foundation
import Testing
@testable import CURecPipeline

/// Reference values from scipy (`Fixtures/make_significance_reference.py`).
private struct SignificanceReference: Decodable {
    struct Case: Decodable {
        let name: String
        let differences: [Double]
        let method: String
        let statistic: Double
        let rank_sum_positive: Double
        let rank_sum_negative: Double
        let p_value: Double
        let mean: Double
        let std_error: Double
        let bootstrap_low: Double
        let bootstrap_high: Double
    }
    let scipy: String
    let cases: [Case]

    static func load() throws -> SignificanceReference {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/significance_reference.json").path
        return try JSONDecoder().decode(SignificanceReference.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }
}

@Suite struct SignificanceTests {
    @Test func wilcoxonMatchesScipy() throws {
        let reference = try SignificanceReference.load()
        #expect(reference.cases.count >= 8)
        for reference in reference.cases {
            let test = try WilcoxonSignedRank(differences: reference.differences)
            #expect(test.method.rawValue == reference.method, "\(reference.name)")
            #expect(test.statistic == reference.statistic, "\(reference.name)")
            #expect(test.rankSumPositive == reference.rank_sum_positive, "\(reference.name)")
            #expect(test.rankSumNegative == reference.rank_sum_negative, "\(reference.name)")
            let error = abs(test.pValue - reference.p_value)
            #expect(error <= 1e-12 + 1e-9 * reference.p_value, "\(reference.name): \(test.pValue) vs scipy \(reference.p_value)")
        }
    }

    @Test func bootstrapIntervalSitsWhereScipysDoes() throws {
        let reference = try SignificanceReference.load()
        for reference in reference.cases {
            let interval = try PairedBootstrap(differences: reference.differences, seed: 3)
            #expect(abs(interval.mean - reference.mean) < 1e-12)
            #expect(interval.lower <= interval.mean && interval.mean <= interval.upper)
            // Different random streams: the bounds agree to a tenth of the interval's width.
            let width = reference.bootstrap_high - reference.bootstrap_low
            #expect(abs(interval.lower - reference.bootstrap_low) <= 0.1 * width, "\(reference.name) lower")
            #expect(abs(interval.upper - reference.bootstrap_high) <= 0.1 * width, "\(reference.name) upper")
        }
    }

    @Test func bootstrapIsSeeded() throws {
        let differences = (0..<200).map { Double(($0 * 7919) % 97) / 97 - 0.4 }
        let a = try PairedBootstrap(differences: differences, seed: 11)
        let b = try PairedBootstrap(differences: differences, seed: 11)
        let c = try PairedBootstrap(differences: differences, seed: 12)
        #expect(a == b)
        #expect(a.lower != c.lower || a.upper != c.upper)
        let constant = try PairedBootstrap(differences: [0.25, 0.25, 0.25])
        #expect(constant.lower == 0.25 && constant.upper == 0.25)
    }

    @Test func exactDistributionSumsToOne() {
        for n in [1, 5, 20, 50] {
            let distribution = WilcoxonSignedRank.exactDistribution(count: n)
            #expect(distribution.count == n * (n + 1) / 2 + 1)
            #expect(abs(distribution.reduce(0, +) - 1) < 1e-12)
            // Symmetric around n(n+1)/4.
            #expect(abs(distribution[0] - distribution[distribution.count - 1]) < 1e-15)
        }
    }

    @Test func edgeCases() throws {
        let zeros = try WilcoxonSignedRank(differences: [0, 0, 0])
        #expect(zeros.pValue == 1 && zeros.count == 0 && zeros.zeros == 3)
        #expect(throws: SignificanceError.empty) { try WilcoxonSignedRank(differences: []) }
        #expect(throws: SignificanceError.notFinite(index: 1)) { try WilcoxonSignedRank(differences: [1, .nan]) }
        #expect(throws: SignificanceError.lengthMismatch(2, 1)) {
            try PairedComparison(variant: "a", baseline: "b", variantValues: [1, 2], baselineValues: [1])
        }
    }

    @Test func comparisonSentenceSaysWhetherTheGainIsSignificant() throws {
        let baseline = (0..<400).map { Double($0 % 10) / 8 }  // dyadic: differences are exact
        let better = baseline.enumerated().map { $0.offset % 3 == 0 ? $0.element : $0.element + 0.125 }
        let significant = try PairedComparison(variant: "curec", baseline: "id", variantValues: better, baselineValues: baseline)
        #expect(significant.isSignificant())
        #expect(significant.sentence(variantName: "Full CURec", baselineName: "ID-only", metric: "NDCG@10")
            .contains("The gain is significant at 0.05"))
        let noisy = baseline.enumerated().map { $0.element + ($0.offset % 2 == 0 ? 0.125 : -0.125) }
        let unclear = try PairedComparison(variant: "curec", baseline: "id", variantValues: noisy, baselineValues: baseline)
        #expect(!unclear.isSignificant())
        #expect(unclear.sentence(variantName: "Full CURec", baselineName: "ID-only", metric: "NDCG@10")
            .contains("not significant"))
    }
}

@Suite struct DownstreamSignificanceTests {
    private func run(_ variant: String, _ seed: UInt64, _ values: [Double]) -> DownstreamResult {
        DownstreamResult(variant: variant, seed: seed, validationNDCG10: 0, test: ["ndcg@10": values.reduce(0, +) / Double(values.count)],
                         seconds: 0, testNDCG10ByUser: values)
    }

    @Test func averagesSeedsPerUserAndComparesWithEachBaseline() throws {
        let users = (0..<60).map { "u\($0)" }
        let id = users.indices.map { Double($0 % 4) / 8 }
        let content = users.indices.map { Double(($0 + 1) % 4) / 8 }
        // Seed 1 and seed 2 average to id + 0.25 for every user.
        let curec1 = id.map { $0 + 0.125 }, curec2 = id.map { $0 + 0.375 }
        let results = [run("id", 1, id), run("id", 2, id), run("content", 1, content), run("curec", 1, curec1), run("curec", 2, curec2)]
        let significance = DownstreamSignificance(downstream: results, testUsers: users)
        #expect(significance.missing.isEmpty)
        #expect(significance.seeds["curec"] == [1, 2])
        #expect(significance.comparisons.map(\.baseline) == ["content", "id"])
        let versusID = try #require(significance.comparisons.last)
        #expect(abs(versusID.interval.mean - 0.25) < 1e-12)
        #expect(versusID.wilcoxon.pValue < 1e-6)
        let expected = try WilcoxonSignedRank(differences: zip(id, content).map { $0 + 0.25 - $1 })
        #expect(significance.comparisons[0].wilcoxon == expected)
        let text = significance.markdown(labels: ["content": "+ raw content", "id": "SASRec, item IDs only"])
        #expect(text.contains("## Significance"))
        #expect(text.contains("| + raw content |"))
        #expect(text.contains("Full CURec vs ID-only variant"))
        #expect(text.contains("The gain is significant at 0.05."))
    }

    @Test func saysWhatIsMissing() {
        let users = ["a", "b"]
        var old = run("id", 1, [0, 1])
        old.testNDCG10ByUser = nil
        let significance = DownstreamSignificance(downstream: [run("curec", 1, [1, 1]), old], testUsers: users)
        #expect(significance.comparisons.isEmpty)
        #expect(significance.missing.contains("content: no runs"))
        #expect(significance.missing.contains("id: runs without per-user results"))
        #expect(significance.markdown(labels: [:]).contains("No comparison could be made"))
    }
}
