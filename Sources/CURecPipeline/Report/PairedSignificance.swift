import CURecTensor
import Foundation

/// Why a paired test cannot be computed.
public enum SignificanceError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The two samples differ in length.
    case lengthMismatch(Int, Int)
    /// No pairs at all.
    case empty
    /// A value is NaN or infinite.
    case notFinite(index: Int)
    /// A bootstrap setting is out of range.
    case invalidSetting(String)

    public var description: String {
        switch self {
        case .lengthMismatch(let a, let b): return "paired samples must have the same length (got \(a) and \(b))"
        case .empty: return "no pairs to test"
        case .notFinite(let index): return "value \(index) is NaN or infinite"
        case .invalidSetting(let what): return what
        }
    }
}

/// The Wilcoxon signed-rank test of paired differences, two-sided.
///
/// Zeros are dropped before ranking (Wilcoxon's treatment, scipy's `zero_method="wilcox"`);
/// the absolute differences left get average ranks. With at most ``exactLimit`` non-zero
/// differences, no ties among them and no zeros dropped, the p-value comes from the exact
/// null distribution of `W+` (every sign pattern equally likely), as scipy's `method="auto"`
/// does; otherwise from the normal approximation with the tie correction of the variance and
/// no continuity correction (scipy's `method="asymptotic"`, `correction=False`). scipy runs a
/// permutation test for tied or zero-holding samples of at most 13; this code uses the normal
/// approximation there too.
public struct WilcoxonSignedRank: Sendable, Equatable, Codable {
    /// How the p-value was computed.
    public enum Method: String, Sendable, Codable {
        case exact
        case normal
    }

    /// Sum of the ranks of the positive differences.
    public var rankSumPositive: Double
    /// Sum of the ranks of the negative differences.
    public var rankSumNegative: Double
    /// Non-zero differences ranked.
    public var count: Int
    /// Zero differences dropped.
    public var zeros: Int
    /// The normal approximation's z of `W+` (nil for the exact test).
    public var z: Double?
    /// Two-sided p-value (1 when every difference is zero).
    public var pValue: Double
    public var method: Method

    /// scipy's two-sided statistic: the smaller rank sum.
    public var statistic: Double { min(rankSumPositive, rankSumNegative) }

    /// Largest sample (non-zero differences) tested with the exact distribution.
    public static let exactLimit = 50

    /// Tests whether the differences `differences` (e.g. `a[i] − b[i]`) are centred on zero.
    public init(differences: [Double]) throws(SignificanceError) {
        guard !differences.isEmpty else { throw .empty }
        if let bad = differences.firstIndex(where: { !$0.isFinite }) { throw .notFinite(index: bad) }
        let nonZero = differences.filter { $0 != 0 }
        zeros = differences.count - nonZero.count
        count = nonZero.count
        guard count > 0 else {
            rankSumPositive = 0; rankSumNegative = 0; z = nil; pValue = 1; method = .normal
            return
        }
        let (ranks, tieGroups) = Self.averageRanks(nonZero.map(abs))
        var positive = 0.0, negative = 0.0
        for (difference, rank) in zip(nonZero, ranks) {
            if difference > 0 { positive += rank } else { negative += rank }
        }
        rankSumPositive = positive
        rankSumNegative = negative
        let n = Double(count)
        if count <= Self.exactLimit && tieGroups.isEmpty && zeros == 0 {
            method = .exact
            z = nil
            let distribution = Self.exactDistribution(count: count)
            let k = Int(positive.rounded())
            let atMost = distribution[0...k].reduce(0, +)
            let atLeast = distribution[k...].reduce(0, +)
            pValue = min(1, 2 * min(atMost, atLeast))
        } else {
            method = .normal
            let mean = n * (n + 1) / 4
            let tieTerm = tieGroups.reduce(0.0) { $0 + Double($1) * Double($1) * Double($1) - Double($1) }
            let variance = (n * (n + 1) * (2 * n + 1) - tieTerm / 2) / 24
            let score = variance > 0 ? (positive - mean) / variance.squareRoot() : 0
            z = score
            pValue = min(1, erfc(abs(score) / 2.0.squareRoot()))
        }
    }

    /// Average ranks (1-based) of `values` and the sizes of the tie groups of two or more.
    static func averageRanks(_ values: [Double]) -> (ranks: [Double], tieGroups: [Int]) {
        let order = values.indices.sorted { values[$0] < values[$1] }
        var ranks = [Double](repeating: 0, count: values.count)
        var groups: [Int] = []
        var start = 0
        while start < order.count {
            var end = start + 1
            while end < order.count && values[order[end]] == values[order[start]] { end += 1 }
            let rank = Double(start + 1 + end) / 2  // mean of start+1 ... end
            for position in start..<end { ranks[order[position]] = rank }
            if end - start > 1 { groups.append(end - start) }
            start = end
        }
        return (ranks, groups)
    }

    /// P(W+ = k) for k in 0 ... n(n+1)/2 when each of the ranks 1...n is positive with
    /// probability 1/2 independently: the number of subsets of {1...n} summing to k over 2^n.
    static func exactDistribution(count n: Int) -> [Double] {
        let top = n * (n + 1) / 2
        var ways = [Double](repeating: 0, count: top + 1)
        ways[0] = 1
        var reach = 0
        for rank in 1...max(n, 1) where n > 0 {
            reach += rank
            for sum in stride(from: reach, through: rank, by: -1) { ways[sum] += ways[sum - rank] }
        }
        let total = pow(2.0, Double(n))
        return ways.map { $0 / total }
    }
}

/// A seeded paired bootstrap percentile interval of the mean difference: `resamples` times,
/// draw as many differences as there are, with replacement, and take the mean; the interval is
/// the (1 − level)/2 and (1 + level)/2 quantiles of those means (linear interpolation between
/// order statistics, numpy's default).
public struct PairedBootstrap: Sendable, Equatable, Codable {
    /// The observed mean difference.
    public var mean: Double
    public var lower: Double
    public var upper: Double
    /// The coverage, e.g. 0.95.
    public var level: Double
    public var resamples: Int
    public var seed: UInt64

    /// Bootstraps the mean of `differences`.
    public init(differences: [Double], level: Double = 0.95, resamples: Int = 10_000, seed: UInt64 = 7) throws(SignificanceError) {
        guard !differences.isEmpty else { throw .empty }
        if let bad = differences.firstIndex(where: { !$0.isFinite }) { throw .notFinite(index: bad) }
        guard level > 0, level < 1 else { throw .invalidSetting("the interval level must be in (0, 1), got \(level)") }
        guard (100...1_000_000).contains(resamples) else {
            throw .invalidSetting("resamples must be between 100 and 1,000,000, got \(resamples)")
        }
        let n = differences.count
        var generator = Xoshiro256(seed: seed)
        var means = [Double](repeating: 0, count: resamples)
        for sample in 0..<resamples {
            var sum = 0.0
            for _ in 0..<n { sum += differences[Int(generator.next() % UInt64(n))] }
            means[sample] = sum / Double(n)
        }
        means.sort()
        self.mean = differences.reduce(0, +) / Double(n)
        self.lower = Self.quantile(sorted: means, (1 - level) / 2)
        self.upper = Self.quantile(sorted: means, (1 + level) / 2)
        self.level = level
        self.resamples = resamples
        self.seed = seed
    }

    /// The `q` quantile of sorted values, interpolating linearly between neighbours.
    static func quantile(sorted values: [Double], _ q: Double) -> Double {
        let position = q * Double(values.count - 1)
        let below = Int(position.rounded(.down))
        let above = min(below + 1, values.count - 1)
        let fraction = position - Double(below)
        return values[below] + fraction * (values[above] - values[below])
    }
}

/// A paired comparison of two variants on per-user values: `variant − baseline` per user,
/// with the Wilcoxon signed-rank test and the bootstrap interval of the mean difference.
public struct PairedComparison: Sendable, Equatable, Codable {
    public var variant: String
    public var baseline: String
    /// Users compared.
    public var users: Int
    public var variantMean: Double
    public var baselineMean: Double
    public var wilcoxon: WilcoxonSignedRank
    public var interval: PairedBootstrap

    /// Compares `variant` with `baseline`, value by value (the same users in the same order).
    public init(variant: String, baseline: String, variantValues: [Double], baselineValues: [Double],
                seed: UInt64 = 7) throws(SignificanceError) {
        guard variantValues.count == baselineValues.count else {
            throw .lengthMismatch(variantValues.count, baselineValues.count)
        }
        guard !variantValues.isEmpty else { throw .empty }
        let differences = zip(variantValues, baselineValues).map { $0 - $1 }
        self.variant = variant
        self.baseline = baseline
        users = differences.count
        variantMean = variantValues.reduce(0, +) / Double(users)
        baselineMean = baselineValues.reduce(0, +) / Double(users)
        wilcoxon = try WilcoxonSignedRank(differences: differences)
        interval = try PairedBootstrap(differences: differences, seed: seed)
    }

    /// Whether the difference is significant at `alpha` by the Wilcoxon test.
    public func isSignificant(at alpha: Double = 0.05) -> Bool { wilcoxon.pValue < alpha }

    /// A plain sentence: which variant is higher, by how much, the p-value and the interval,
    /// and whether that is a significant gain at `alpha`.
    public func sentence(variantName: String, baselineName: String, metric: String, alpha: Double = 0.05) -> String {
        let difference = interval.mean
        let direction = difference > 0 ? "higher" : (difference < 0 ? "lower" : "equal")
        let p = wilcoxon.pValue < 0.0001 ? "p < 0.0001" : "p = " + ReportFormat.fixed(wilcoxon.pValue, decimals: 4)
        var text = "\(variantName) vs \(baselineName): mean per-user \(metric) difference "
            + ReportFormat.fixed(difference, decimals: 4) + " (95% bootstrap interval "
            + ReportFormat.fixed(interval.lower, decimals: 4) + " to " + ReportFormat.fixed(interval.upper, decimals: 4)
            + "), Wilcoxon signed-rank \(p) over \(users) users (\(wilcoxon.zeros) ties at zero dropped). "
        if difference > 0 && isSignificant(at: alpha) {
            text += "The gain is significant at \(ReportFormat.compact(alpha, maxDecimals: 3))."
        } else if difference > 0 {
            text += "The gain is not significant at \(ReportFormat.compact(alpha, maxDecimals: 3))."
        } else if isSignificant(at: alpha) {
            text += "\(variantName) is significantly \(direction) at \(ReportFormat.compact(alpha, maxDecimals: 3)): no gain."
        } else {
            text += "There is no gain (\(direction), not significant at \(ReportFormat.compact(alpha, maxDecimals: 3)))."
        }
        return text
    }
}
