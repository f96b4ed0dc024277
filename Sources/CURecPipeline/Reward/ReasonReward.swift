import CURecData
import CURecModels
import CURecTensor
import Foundation

/// What a reason describes.
public enum ReasonSubject: Sendable, Hashable, Codable, CustomStringConvertible {
    /// A user's taste (user-preference prompt).
    case user(Int32)
    /// An item's audience (item-audience prompt).
    case item(Int32)

    public var description: String {
        switch self {
        case .user(let user): return "user \(user)"
        case .item(let item): return "item \(item)"
        }
    }
}

/// Turns texts into sentence embeddings (MiniLM in the pipeline).
public protocol ReasonEmbedder: Sendable {
    /// Embedding dimension.
    var dimension: Int { get }
    /// One L2-normalised embedding per text, in order.
    func embed(_ texts: [String]) throws -> [[Float]]
}

extension MiniLMEncoder: ReasonEmbedder {
    public func embed(_ texts: [String]) throws -> [[Float]] { encode(texts) }
}

/// One query to the collaborative reward model: how likely `user` is to consume an item
/// described by `embedding` (the item index only names the row the query is about).
public struct CollaborativeQuery: Sendable {
    public var user: UInt32
    public var item: UInt32
    public var embedding: [Float]

    public init(user: UInt32, item: UInt32, embedding: [Float]) {
        self.user = user
        self.item = item
        self.embedding = embedding
    }
}

/// The collaborative reward model (the `collaborative-reward` plugin in the daemon): a score
/// in (0, 1) per query, higher when the embedding points where the user's real consumption
/// points.
public protocol CollaborativeScorer: Sendable {
    func scores(_ queries: [CollaborativeQuery]) throws -> [Float]
}

/// Settings of the reason reward.
public struct ReasonRewardConfig: Sendable, Codable, Equatable {
    /// Users compared against per subject: up to this many true ones (an item's training
    /// audience; for a user reason, the user itself) and this many sampled others.
    public var comparisonUsers = 16
    /// Multiplies the verifier's penalty (false titles, genres, years, future claims, format).
    public var penaltyWeight = 1.0
    /// Largest penalty subtracted.
    public var maxPenalty = 2.0
    /// Reward of a completion without a reason block.
    public var missingReasonReward = -1.0
    /// Seed of the sampled comparison users (fixed per subject).
    public var seed: UInt64 = 11

    public init() {}
}

/// A scored reason.
public struct ReasonScore: Sendable, Hashable, Codable {
    /// `collaborative − penaltyWeight × penalty` (or the missing-reason reward).
    public var total: Double
    /// Fraction of (true, sampled) user pairs the reward model orders correctly, in [0, 1].
    public var collaborative: Double
    /// The verifier's penalty before weighting.
    public var penalty: Double
    /// Names of the failed verifier checks.
    public var failedChecks: [String]
    /// Whether every verifier check passed.
    public var checksPassed: Bool { failedChecks.isEmpty }
}

/// Errors of reward scoring.
public enum ReasonRewardError: Error, CustomStringConvertible, Sendable {
    case embedding(String)
    case scoring(String)
    case subjectOutOfRange(ReasonSubject)

    public var description: String {
        switch self {
        case .embedding(let detail): return "embedding reasons failed: \(detail)"
        case .scoring(let detail): return "the collaborative reward model failed: \(detail)"
        case .subjectOutOfRange(let subject): return "\(subject) is not in the dataset"
        }
    }
}

/// Stage 3: the reward of a reason. Its MiniLM embedding is used in place of content and the
/// collaborative reward model asks whether it predicts the subject's real training
/// interactions: for an item reason, the item's true audience should score above sampled
/// users; for a user reason, the user should score above sampled users. That ordering rate
/// (an AUC) minus the verifier's penalties is the reward.
///
/// Reads the training split only (audiences, cut-offs); the verifier knows the whole dataset
/// so it can recognise claims about the user's future.
public struct ReasonRewarder: Sendable {
    public let statistics: CollaborativeStatistics
    public let verifier: ReasonVerifier
    public let embedder: any ReasonEmbedder
    public let scorer: any CollaborativeScorer
    public let config: ReasonRewardConfig
    /// Per-user scale of the reward model's logits over item content (see
    /// ``calibrated(itemFeatures:dimension:samples:)``); nil compares raw scores.
    public private(set) var userScales: [Float]?

    public init(statistics: CollaborativeStatistics, verifier: ReasonVerifier, embedder: any ReasonEmbedder,
                scorer: any CollaborativeScorer, config: ReasonRewardConfig = ReasonRewardConfig()) {
        self.statistics = statistics
        self.verifier = verifier
        self.embedder = embedder
        self.scorer = scorer
        self.config = config
    }

    /// This rewarder with per-user calibration. The reward model's logit for a user is
    /// `p_u · W (e − f̄)`, so users whose vectors are long give extreme scores to any text:
    /// compared raw, one generic text "wins" for them whatever it says. Calibration divides
    /// each user's logit by its root-mean-square over the content embeddings of `samples`
    /// items (the mean is 0 by construction), so users are compared on how unusual the text
    /// is *for them*.
    ///
    /// - Parameter itemFeatures: row-major `[itemCount x dimension]` content embeddings
    ///   (those the reward model was trained on).
    public func calibrated(itemFeatures: [Float], dimension: Int, samples: Int = 64) throws(ReasonRewardError) -> ReasonRewarder {
        let itemCount = statistics.dataset.itemCount, userCount = statistics.dataset.userCount
        guard dimension > 0, itemFeatures.count == itemCount * dimension, samples >= 2 else {
            throw .scoring("calibration needs [\(itemCount) x dimension] item features and at least 2 samples")
        }
        var generator = Xoshiro256(seed: mixSeed(config.seed, 3))
        let items = (0..<min(samples, itemCount)).map { _ in Int(generator.next() % UInt64(itemCount)) }
        let rows = items.map { Array(itemFeatures[($0 * dimension)..<(($0 + 1) * dimension)]) }
        var scales = [Float](repeating: 1, count: userCount)
        let block = 64
        for first in stride(from: 0, to: userCount, by: block) {
            let users = first..<min(userCount, first + block)
            var queries: [CollaborativeQuery] = []
            queries.reserveCapacity(users.count * rows.count)
            for user in users {
                for (slot, row) in rows.enumerated() {
                    queries.append(CollaborativeQuery(user: UInt32(user), item: UInt32(items[slot]), embedding: row))
                }
            }
            let values: [Float]
            do {
                values = try scorer.scores(queries)
            } catch {
                throw .scoring("\(error)")
            }
            guard values.count == queries.count else { throw .scoring("expected \(queries.count) scores, got \(values.count)") }
            for (offset, user) in users.enumerated() {
                var sum: Float = 0
                for slot in 0..<rows.count {
                    let x = Self.logit(values[offset * rows.count + slot])
                    sum += x * x
                }
                scales[user] = max((sum / Float(rows.count)).squareRoot(), 1e-6)
            }
        }
        var copy = self
        copy.userScales = scales
        return copy
    }

    /// The logit of a probability, clamped away from 0 and 1.
    static func logit(_ p: Float) -> Float {
        let q = min(max(p, 1e-7), 1 - 1e-7)
        return log(q / (1 - q))
    }

    /// A query's score on the comparison scale: the calibrated logit, or the raw score.
    func comparable(_ value: Float, user: UInt32) -> Float {
        guard let userScales, Int(user) < userScales.count else { return value }
        return Self.logit(value) / userScales[Int(user)]
    }

    /// The verifier context of a subject: a user reason is checked against the user's
    /// history up to their last training interaction.
    public func context(_ subject: ReasonSubject) -> ReasonContext {
        switch subject {
        case .user(let user):
            return ReasonContext(user: user, item: nil, cutoff: statistics.timesByUser[Int(user)].last)
        case .item(let item):
            return ReasonContext(user: nil, item: item, cutoff: nil)
        }
    }

    /// (true users, sampled users) a subject's reason is judged on; deterministic per subject.
    public func comparison(_ subject: ReasonSubject) -> (positives: [UInt32], negatives: [UInt32]) {
        let userCount = statistics.dataset.userCount
        let n = config.comparisonUsers
        let positives: [Int32]
        var generator: Xoshiro256
        switch subject {
        case .user(let user):
            positives = [user]
            generator = Xoshiro256(seed: mixSeed(config.seed, 1, UInt64(UInt32(bitPattern: user))))
        case .item(let item):
            generator = Xoshiro256(seed: mixSeed(config.seed, 2, UInt64(UInt32(bitPattern: item))))
            var audience = Array(Set(statistics.audienceByItem[Int(item)])).sorted()
            if audience.count > n {
                audience.shuffleRandomPrefix(n, using: &generator)
                audience = Array(audience.prefix(n))
            }
            positives = audience
        }
        let excluded = Set(positives)
        var negatives: [UInt32] = []
        var attempts = 0
        while negatives.count < n, attempts < n * 20, userCount > excluded.count {
            attempts += 1
            let candidate = Int32(generator.next() % UInt64(userCount))
            if !excluded.contains(candidate) { negatives.append(UInt32(bitPattern: candidate)) }
        }
        return (positives.map { UInt32(bitPattern: $0) }, negatives)
    }

    /// Scores reasons (the extracted reason text, not the whole completion); `nil` or empty
    /// text means the completion had no reason block.
    public func score(_ reasons: [(subject: ReasonSubject, text: String?)]) throws(ReasonRewardError) -> [ReasonScore] {
        try scoreAndEmbed(reasons).map(\.score)
    }

    /// ``score(_:)`` plus each reason's embedding (nil for empty text), for callers that use
    /// the embeddings as features afterwards.
    public func scoreAndEmbed(_ reasons: [(subject: ReasonSubject, text: String?)]) throws(ReasonRewardError)
        -> [(score: ReasonScore, embedding: [Float]?)] {
        for (subject, _) in reasons {
            switch subject {
            case .user(let user): guard user >= 0, Int(user) < statistics.dataset.userCount else { throw .subjectOutOfRange(subject) }
            case .item(let item): guard item >= 0, Int(item) < statistics.dataset.itemCount else { throw .subjectOutOfRange(subject) }
            }
        }
        let present = reasons.indices.filter { !(reasons[$0].text ?? "").isEmpty }
        let embeddings: [[Float]]
        do {
            embeddings = present.isEmpty ? [] : try embedder.embed(present.map { reasons[$0].text ?? "" })
        } catch {
            throw .embedding("\(error)")
        }
        guard embeddings.count == present.count else {
            throw .embedding("expected \(present.count) embeddings, got \(embeddings.count)")
        }
        // One batched scoring call for every (reason, compared user).
        var queries: [CollaborativeQuery] = []
        var spans: [(positives: Range<Int>, negatives: Range<Int>)] = []
        for (slot, index) in present.enumerated() {
            let subject = reasons[index].subject
            let (positives, negatives) = comparison(subject)
            let row: UInt32
            switch subject {
            case .item(let item): row = UInt32(bitPattern: item)
            case .user(let user): row = statistics.historyByUser[Int(user)].last.map { UInt32(bitPattern: $0) } ?? 0
            }
            let start = queries.count
            for user in positives { queries.append(CollaborativeQuery(user: user, item: row, embedding: embeddings[slot])) }
            let middle = queries.count
            for user in negatives { queries.append(CollaborativeQuery(user: user, item: row, embedding: embeddings[slot])) }
            spans.append((start..<middle, middle..<queries.count))
        }
        let values: [Float]
        do {
            values = queries.isEmpty ? [] : try scorer.scores(queries)
        } catch {
            throw .scoring("\(error)")
        }
        guard values.count == queries.count else { throw .scoring("expected \(queries.count) scores, got \(values.count)") }

        var results: [(score: ReasonScore, embedding: [Float]?)] = []
        results.reserveCapacity(reasons.count)
        var slot = 0
        for (subject, text) in reasons {
            guard let text, !text.isEmpty else {
                results.append((ReasonScore(total: config.missingReasonReward, collaborative: 0, penalty: 0,
                                            failedChecks: [ReasonCheck.notEmpty.rawValue]), nil))
                continue
            }
            let embedding = embeddings[slot]
            let span = spans[slot]
            slot += 1
            let positives = span.positives.map { comparable(values[$0], user: queries[$0].user) }
            let negatives = span.negatives.map { comparable(values[$0], user: queries[$0].user) }
            let auc = Self.orderingRate(positives: positives, negatives: negatives)
            let verdict = verifier.verify(text, context: context(subject))
            let penalty = min(verdict.penalty, config.maxPenalty)
            var failed: [String] = []
            for failure in verdict.failures where !failed.contains(failure.check.rawValue) { failed.append(failure.check.rawValue) }
            results.append((ReasonScore(total: auc - config.penaltyWeight * penalty, collaborative: auc,
                                        penalty: verdict.penalty, failedChecks: failed), embedding))
        }
        return results
    }

    /// Fraction of (positive, negative) pairs with the positive scored higher (ties count
    /// half); 0.5 when either side is empty.
    public static func orderingRate(positives: [Float], negatives: [Float]) -> Double {
        guard !positives.isEmpty, !negatives.isEmpty else { return 0.5 }
        var wins = 0.0
        for p in positives {
            for n in negatives {
                if p > n { wins += 1 } else if p == n { wins += 0.5 }
            }
        }
        return wins / Double(positives.count * negatives.count)
    }
}
