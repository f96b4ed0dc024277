import Foundation
import Testing
@testable import CURecData
@testable import CURecPipeline

@Suite struct PairReasonRewardTests {
    @Test func aPairReasonMatchingUserAndItemScoresAboveAMismatchedOne() throws {
        let (_, rewarder) = try ReasonRewardTests.rewarder()
        // User 0 watches comedies; item 0 ("Laughing Matters") is a comedy.
        let scored = try rewarder.scorePairs([
            (user: 0, item: 0, text: "You love comedy, and this is a funny one."),
            (user: 0, item: 0, text: "You love sci-fi set in deep space."),
        ])
        let good = scored[0].score, bad = scored[1].score
        #expect(good.userAgreement > bad.userAgreement)
        #expect(good.audienceAgreement > bad.audienceAgreement)
        #expect(abs(good.collaborative - (good.userAgreement + good.audienceAgreement) / 2) < 1e-12)
        #expect(good.checksPassed && good.penalty == 0 && good.total == good.collaborative)
        #expect(scored[0].embedding?.count == KeywordEmbedder().dimension)
        // The parts are those of the pipeline's user and item rewards on the same text.
        let user = try rewarder.score([(.user(0), "You love comedy, and this is a funny one.")])[0]
        let item = try rewarder.score([(.item(0), "You love comedy, and this is a funny one.")])[0]
        #expect(good.audienceAgreement == item.collaborative)
        #expect(user.collaborative >= 0 && good.userAgreement >= 0)
    }

    @Test func failuresComeWithTheirPenalties() throws {
        let (_, rewarder) = try ReasonRewardTests.rewarder()
        let scored = try rewarder.scorePairs([
            // A false year for the item and a title user 0 only consumes after the cut-off.
            (user: 0, item: 0, text: "\"Laughing Matters\" (1985) is like \"\(Synthetic.testTitle)\" (2002), which you loved."),
            (user: 0, item: 0, text: ""),
        ])
        let score = scored[0].score
        let checks = Set(score.failures.map(\.check))
        #expect(checks.contains(.itemYear))
        #expect(checks.contains(.notFromFuture) || checks.contains(.watchedBeforeCutoff))
        let weights = VerifierOptions().weights
        for failure in score.failures { #expect(failure.penalty == weights[failure.check]) }
        let sum = score.failures.reduce(0) { $0 + $1.penalty }
        #expect(abs(score.penalty - min(sum, ReasonRewardConfig().maxPenalty)) < 1e-12)
        #expect(abs(score.total - (score.collaborative - score.penalty)) < 1e-12)
        #expect(scored[1].score.total == ReasonRewardConfig().missingReasonReward)
        #expect(scored[1].score.failures.map(\.check) == [.notEmpty])
        #expect(scored[1].embedding == nil)
        #expect(throws: ReasonRewardError.self) { try rewarder.scorePairs([(user: 99, item: 0, text: "x")]) }
    }
}
