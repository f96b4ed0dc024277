import CURecData
import Foundation

/// One verifier failure of a scored reason and what it cost.
public struct RewardPenaltyPart: Sendable, Hashable, Codable {
    public var check: ReasonCheck
    /// What failed, e.g. `unknown title "Foo"`.
    public var detail: String
    /// The offending text (the span the check looked at; for whole-text checks the text).
    public var text: String
    /// The check's weight times the reward's penalty weight (before the cap on the total).
    public var penalty: Double
}

/// The reward of a reason about a (user, item) pair, with its parts.
public struct PairReasonScore: Sendable, Hashable, Codable {
    /// `collaborative − penaltyWeight × min(Σ weights, maxPenalty)`, or the missing-reason
    /// reward for empty text.
    public var total: Double
    /// The mean of ``userAgreement`` and ``audienceAgreement``.
    public var collaborative: Double
    /// How well the reason's embedding singles out this user: the rate at which the user's
    /// calibrated score beats those of sampled other users (the pipeline's user-reason part).
    public var userAgreement: Double
    /// How well it singles out the item's audience: the rate at which sampled training users of
    /// the item score above sampled non-audience users (the pipeline's item-reason part).
    public var audienceAgreement: Double
    /// The subtracted penalty (weighted and capped).
    public var penalty: Double
    /// Every failed check with its own penalty.
    public var failures: [RewardPenaltyPart]
    /// Whether every verifier check passed.
    public var checksPassed: Bool { failures.isEmpty }
}

extension ReasonRewarder {
    /// The verifier context of a pair reason: the user's history up to their last training
    /// interaction, and the item.
    public func pairContext(user: Int32, item: Int32) -> ReasonContext {
        ReasonContext(user: user, item: item, cutoff: statistics.timesByUser[Int(user)].last)
    }

    /// Scores reasons about (user, item) pairs with the parts of the pipeline's reward: the
    /// collaborative agreement of the reason's MiniLM embedding (the user part and the item
    /// part of ``score(_:)``, each an ordering rate in [0, 1], averaged; the item's row is the
    /// pair's item for both) and the verifier's penalties in the pair's context.
    public func scorePairs(_ reasons: [(user: Int32, item: Int32, text: String)]) throws(ReasonRewardError)
        -> [(score: PairReasonScore, embedding: [Float]?)] {
        for reason in reasons {
            guard reason.user >= 0, Int(reason.user) < statistics.dataset.userCount else { throw .subjectOutOfRange(.user(reason.user)) }
            guard reason.item >= 0, Int(reason.item) < statistics.dataset.itemCount else { throw .subjectOutOfRange(.item(reason.item)) }
        }
        let present = reasons.indices.filter { !reasons[$0].text.isEmpty }
        let embeddings: [[Float]]
        do {
            embeddings = present.isEmpty ? [] : try embedder.embed(present.map { reasons[$0].text })
        } catch {
            throw .embedding("\(error)")
        }
        guard embeddings.count == present.count else {
            throw .embedding("expected \(present.count) embeddings, got \(embeddings.count)")
        }
        typealias Span = (positives: Range<Int>, negatives: Range<Int>)
        var queries: [CollaborativeQuery] = []
        var spans: [(user: Span, audience: Span)] = []
        func add(_ users: (positives: [UInt32], negatives: [UInt32]), row: UInt32, embedding: [Float]) -> Span {
            let start = queries.count
            for user in users.positives { queries.append(CollaborativeQuery(user: user, item: row, embedding: embedding)) }
            let middle = queries.count
            for user in users.negatives { queries.append(CollaborativeQuery(user: user, item: row, embedding: embedding)) }
            return (start..<middle, middle..<queries.count)
        }
        for (slot, index) in present.enumerated() {
            let reason = reasons[index]
            let row = UInt32(bitPattern: reason.item)
            spans.append((add(comparison(.user(reason.user)), row: row, embedding: embeddings[slot]),
                          add(comparison(.item(reason.item)), row: row, embedding: embeddings[slot])))
        }
        let values: [Float]
        do {
            values = queries.isEmpty ? [] : try scorer.scores(queries)
        } catch {
            throw .scoring("\(error)")
        }
        guard values.count == queries.count else { throw .scoring("expected \(queries.count) scores, got \(values.count)") }
        func rate(_ span: Span) -> Double {
            Self.orderingRate(positives: span.positives.map { comparable(values[$0], user: queries[$0].user) },
                              negatives: span.negatives.map { comparable(values[$0], user: queries[$0].user) })
        }

        var results: [(score: PairReasonScore, embedding: [Float]?)] = []
        var slot = 0
        for reason in reasons {
            let verdict = verifier.verify(reason.text, context: pairContext(user: reason.user, item: reason.item))
            let failures = verdict.failures.map { failure in
                RewardPenaltyPart(check: failure.check, detail: failure.detail, text: failure.text,
                                  penalty: config.penaltyWeight * (verifier.options.weights[failure.check] ?? 0))
            }
            guard !reason.text.isEmpty else {
                results.append((PairReasonScore(total: config.missingReasonReward, collaborative: 0, userAgreement: 0,
                                                audienceAgreement: 0, penalty: 0, failures: failures), nil))
                continue
            }
            let span = spans[slot]
            let embedding = embeddings[slot]
            slot += 1
            let user = rate(span.user), audience = rate(span.audience)
            let collaborative = (user + audience) / 2
            let penalty = config.penaltyWeight * min(verdict.penalty, config.maxPenalty)
            results.append((PairReasonScore(total: collaborative - penalty, collaborative: collaborative, userAgreement: user,
                                            audienceAgreement: audience, penalty: penalty, failures: failures), embedding))
        }
        return results
    }
}
