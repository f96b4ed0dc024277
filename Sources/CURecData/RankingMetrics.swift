import Foundation

/// Full-ranking top-K metrics for leave-one-out evaluation (one held-out item per user).
///
/// For each evaluated user every item is scored; the user's excluded items (their training
/// items, and for test also their validation item) are removed; the held-out item's rank is
/// the number of remaining items scored strictly higher. Recall@K is then 1 if rank < K;
/// NDCG@K is 1/log2(rank + 2) if rank < K; MRR@K is 1/(rank + 1) if rank < K. Reported
/// values are means over evaluated users.
public struct RankingMetrics: Sendable, Hashable, CustomStringConvertible {
    /// Cut-offs the metrics were computed at.
    public let cutoffs: [Int]
    public private(set) var recall: [Int: Double] = [:]
    public private(set) var ndcg: [Int: Double] = [:]
    public private(set) var mrr: [Int: Double] = [:]
    /// Number of users evaluated.
    public private(set) var userCount = 0
    /// The held-out item's rank for every evaluated user, in evaluation order.
    public private(set) var ranks: [Int] = []
    /// The evaluated users (dataset indices) aligned with ``ranks``, when known (``evaluate``
    /// records them; ``add(rank:)`` alone does not).
    public private(set) var users: [Int32] = []

    public init(cutoffs: [Int] = [10, 20]) {
        self.cutoffs = cutoffs
        for k in cutoffs { recall[k] = 0; ndcg[k] = 0; mrr[k] = 0 }
    }

    /// The 0-based rank of `target` among `scores`, skipping `excluded` items.
    public static func rank(of target: Int, scores: UnsafeBufferPointer<Float>, excluded: Set<Int32>) -> Int {
        let targetScore = scores[target]
        var rank = 0
        for index in 0..<scores.count where scores[index] > targetScore {
            if !excluded.contains(Int32(index)) { rank += 1 }
        }
        return rank
    }

    /// Adds one user's result given the held-out item's rank.
    public mutating func add(rank: Int) {
        userCount += 1
        ranks.append(rank)
        for k in cutoffs where rank < k {
            recall[k, default: 0] += 1
            ndcg[k, default: 0] += 1 / log2(Double(rank) + 2)
            mrr[k, default: 0] += 1 / Double(rank + 1)
        }
    }

    /// Means over users (the accumulated sums divided by `userCount`).
    public func averaged() -> (recall: [Int: Double], ndcg: [Int: Double], mrr: [Int: Double]) {
        let n = Double(max(userCount, 1))
        return (recall.mapValues { $0 / n }, ndcg.mapValues { $0 / n }, mrr.mapValues { $0 / n })
    }

    /// NDCG@`k` of every evaluated user, in evaluation order (aligned with ``users``); for a
    /// paired significance test between two models evaluated on the same split.
    public func ndcgPerUser(at k: Int) -> [Double] {
        ranks.map { $0 < k ? 1 / log2(Double($0) + 2) : 0 }
    }

    public var description: String {
        let means = averaged()
        return cutoffs.map { k in
            String(format: "Recall@%d %.4f  NDCG@%d %.4f  MRR@%d %.4f", k, means.recall[k] ?? 0, k, means.ndcg[k] ?? 0, k, means.mrr[k] ?? 0)
        }.joined(separator: "\n") + "  (\(userCount) users)"
    }

    /// Which held-out interaction to evaluate.
    public enum Phase: Sendable { case validation, test }

    /// Evaluates a scorer on a split: `scoreAll(user, into)` fills one score per item. Users
    /// are evaluated in the split's order (ascending dataset index).
    public static func evaluate(
        split: LeaveOneOutSplit, itemCount: Int, phase: Phase, cutoffs: [Int] = [10, 20],
        scoreAll: (Int32, UnsafeMutableBufferPointer<Float>) throws -> Void
    ) rethrows -> RankingMetrics {
        var metrics = RankingMetrics(cutoffs: cutoffs)
        let targets = phase == .test ? split.test : split.validation
        var validationItem: [Int32: Int32] = [:]
        if phase == .test { for interaction in split.validation { validationItem[interaction.user] = interaction.item } }
        var scores = [Float](repeating: 0, count: itemCount)
        for target in targets {
            var excluded = Set(split.trainItemsByUser[Int(target.user)])
            if let validation = validationItem[target.user], validation != target.item { excluded.insert(validation) }
            excluded.remove(target.item)
            try scores.withUnsafeMutableBufferPointer { try scoreAll(target.user, $0) }
            let targetRank = scores.withUnsafeBufferPointer { buffer -> Int in
                Self.rank(of: Int(target.item), scores: buffer, excluded: excluded)
            }
            metrics.add(rank: targetRank)
            metrics.users.append(target.user)
        }
        return metrics
    }
}
