import CURecData
import Foundation

/// The paired significance tests of the ablation: per test user, NDCG@10 averaged over the
/// seeds of each variant, then full CURec against each baseline with the Wilcoxon
/// signed-rank test and a paired bootstrap 95% interval of the mean difference
/// (``PairedComparison``). Written to the report as a section and as `significance.json`.
public struct DownstreamSignificance: Sendable, Codable, Equatable {
    /// The metric compared (per-user test NDCG@10).
    public var metric: String
    /// Dataset ids of the test users, in the order of every `testNDCG10ByUser` vector.
    public var users: [String]
    /// Seeds averaged per variant.
    public var seeds: [String: [UInt64]]
    public var comparisons: [PairedComparison]
    /// Comparisons that could not be made, and why.
    public var missing: [String]

    /// The variant tested against the baselines.
    public static let variant = "curec"
    /// The baselines, in report order.
    public static let baselines = ["content", "id"]

    /// Tests `variant` against `baselines` on the per-user vectors in `downstream`.
    /// `testUsers` are the dataset ids of the test users in vector order.
    public init(downstream: [DownstreamResult], testUsers: [String], variant: String = Self.variant,
                baselines: [String] = Self.baselines, seed: UInt64 = 7) {
        metric = "ndcg@10"
        users = testUsers
        seeds = [:]
        comparisons = []
        missing = []
        var averages: [String: [Double]] = [:]
        for key in [variant] + baselines {
            let runs = downstream.filter { $0.variant == key }.sorted { $0.seed < $1.seed }
            let vectors = runs.compactMap(\.testNDCG10ByUser)
            guard !vectors.isEmpty, vectors.count == runs.count else {
                missing.append("\(key): " + (runs.isEmpty ? "no runs" : "runs without per-user results"))
                continue
            }
            guard vectors.allSatisfy({ $0.count == testUsers.count }) else {
                missing.append("\(key): per-user vectors do not have one value per test user (\(testUsers.count))")
                continue
            }
            seeds[key] = runs.map(\.seed)
            averages[key] = (0..<testUsers.count).map { index in
                vectors.reduce(0) { $0 + $1[index] } / Double(vectors.count)
            }
        }
        guard let mine = averages[variant] else { return }
        for baseline in baselines {
            guard let theirs = averages[baseline] else { continue }
            do {
                comparisons.append(try PairedComparison(variant: variant, baseline: baseline, variantValues: mine,
                                                        baselineValues: theirs, seed: seed))
            } catch {
                missing.append("\(variant) vs \(baseline): \(error)")
            }
        }
    }

    /// The test users of `dataset`'s leave-one-out split, in evaluation order.
    public static func testUsers(of dataset: RecDataset) -> [String] {
        LeaveOneOutSplit(dataset).test.map { dataset.users[Int($0.user)].externalID }
    }

    /// The report section: a table per comparison and one plain sentence each.
    public func markdown(labels: [String: String]) -> String {
        var report = MarkdownReport()
        report.heading("Significance", level: 2)
        report.paragraph("Per test user, NDCG@10 averaged over each variant's seeds; differences are full CURec minus the "
            + "baseline, user by user (\(users.count) users, in the order of `significance.json`'s `users`, which is also "
            + "the order of every `testNDCG10ByUser` vector in `results.json`). Two-sided Wilcoxon signed-rank test "
            + "(zero differences dropped; normal approximation with tie correction) and a paired bootstrap 95% "
            + "percentile interval of the mean difference (10,000 resamples, seeded).")
        guard !comparisons.isEmpty else {
            report.paragraph("No comparison could be made: " + (missing.isEmpty ? "no runs." : missing.joined(separator: "; ") + "."))
            return report.render()
        }
        let rows = comparisons.map { comparison -> [String] in
            let p = comparison.wilcoxon.pValue
            return [labels[comparison.baseline] ?? comparison.baseline,
                    ReportFormat.fixed(comparison.variantMean, decimals: 4),
                    ReportFormat.fixed(comparison.baselineMean, decimals: 4),
                    ReportFormat.fixed(comparison.interval.mean, decimals: 4),
                    "[" + ReportFormat.fixed(comparison.interval.lower, decimals: 4) + ", "
                        + ReportFormat.fixed(comparison.interval.upper, decimals: 4) + "]",
                    p < 0.0001 ? "< 0.0001" : ReportFormat.fixed(p, decimals: 4),
                    comparison.interval.mean > 0 && comparison.isSignificant() ? "yes" : "no"]
        }
        report.table(header: ["Full CURec vs", "CURec", "Baseline", "Mean difference", "95% interval", "Wilcoxon p",
                              "Significant gain (0.05)"],
                     rows: rows, alignments: [.left, .right, .right, .right, .right, .right, .left])
        let names = ["content": "raw-content", "id": "ID-only"]
        report.paragraph(comparisons.map {
            $0.sentence(variantName: "Full CURec", baselineName: (names[$0.baseline] ?? $0.baseline) + " variant",
                        metric: "NDCG@10")
        }.joined(separator: " "))
        if !missing.isEmpty { report.paragraph("Not compared: " + missing.joined(separator: "; ") + ".") }
        return report.render()
    }
}
