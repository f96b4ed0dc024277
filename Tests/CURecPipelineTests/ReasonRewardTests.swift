import Foundation
import Testing
@testable import CURecData
@testable import CURecPipeline

@Suite struct ReasonRewardTests {
    static func rewarder() throws -> (RecDataset, ReasonRewarder) {
        let (dataset, split, builder, _) = try Synthetic.corpus()
        let embedder = KeywordEmbedder()
        let content = try embedder.embed((0..<dataset.itemCount).map { builder.contentText(item: Int32($0)) }).flatMap { $0 }
        let scorer = ProfileScorer(dataset: dataset, split: split, content: content, dimension: embedder.dimension)
        var config = ReasonRewardConfig()
        config.comparisonUsers = 5
        return (dataset, ReasonRewarder(statistics: builder.statistics, verifier: ReasonVerifier(dataset: dataset),
                                        embedder: embedder, scorer: scorer, config: config))
    }

    @Test func anItemReasonThatNamesItsAudienceScoresAboveAMismatchedOne() throws {
        let (_, rewarder) = try Self.rewarder()
        // Item 0 is a comedy: its training audience is mostly the comedy-loving users.
        let scores = try rewarder.score([
            (.item(0), "Viewers who love comedy and a good laugh will enjoy this one."),
            (.item(0), "Fans of sci-fi set in deep space will enjoy this one."),
        ])
        #expect(scores[0].collaborative > 0.8)
        #expect(scores[1].collaborative < 0.2)
        #expect(scores[0].total > scores[1].total)
        #expect(scores[0].checksPassed)
        // Calling a comedy sci-fi is also a false genre claim.
        #expect(scores[1].failedChecks.contains(ReasonCheck.itemGenre.rawValue))
    }

    @Test func aUserReasonThatMatchesTheirTasteScoresAboveAMismatchedOne() throws {
        let (_, rewarder) = try Self.rewarder()
        // User 1 watches the sci-fi block; user 0 the comedies.
        let scores = try rewarder.score([
            (.user(1), "You gravitate toward sci-fi and thrillers."),
            (.user(1), "You gravitate toward comedy and romance."),
            (.user(0), "You gravitate toward comedy and romance."),
        ])
        #expect(scores[0].collaborative > scores[1].collaborative)
        #expect(scores[2].collaborative > scores[1].collaborative)
    }

    @Test func falseAndFutureClaimsArePenalised() throws {
        let (_, rewarder) = try Self.rewarder()
        let scores = try rewarder.score([
            (.user(0), "You love comedy."),
            // The planted test item is consumed after user 0's training cut-off.
            (.user(0), "You love comedy, like \"\(Synthetic.testTitle)\" (2002)."),
            (.item(0), "Comedy fans will laugh at \"Laughing Matters\" (1991)."),
            (.item(0), "Comedy fans will laugh at \"Laughing Matters\" (1985)."),
        ])
        #expect(scores[0].checksPassed)
        #expect(scores[1].failedChecks.contains(ReasonCheck.notFromFuture.rawValue))
        #expect(scores[1].total < scores[0].total)
        #expect(scores[2].checksPassed)
        #expect(scores[3].failedChecks.contains(ReasonCheck.itemYear.rawValue))
        #expect(scores[3].total < scores[2].total)
    }

    @Test func aCompletionWithoutAReasonGetsTheMissingReasonReward() throws {
        let (_, rewarder) = try Self.rewarder()
        let scored = try rewarder.scoreAndEmbed([(.user(2), nil), (.item(3), ""), (.item(3), "Drama lovers.")])
        #expect(scored[0].score.total == rewarder.config.missingReasonReward)
        #expect(scored[1].score.total == rewarder.config.missingReasonReward)
        #expect(scored[0].embedding == nil && scored[1].embedding == nil)
        #expect(scored[2].embedding?.count == KeywordEmbedder().dimension)
    }

    @Test func subjectsOutsideTheDatasetAreRefused() throws {
        let (dataset, rewarder) = try Self.rewarder()
        #expect(throws: ReasonRewardError.self) { try rewarder.score([(.item(Int32(dataset.itemCount)), "x")]) }
        #expect(throws: ReasonRewardError.self) { try rewarder.score([(.user(-1), "x")]) }
    }

    @Test func comparisonUsersAreTrueAudienceAgainstOthersAndDeterministic() throws {
        let (_, rewarder) = try Self.rewarder()
        let first = rewarder.comparison(.item(0))
        let again = rewarder.comparison(.item(0))
        #expect(first.positives == again.positives && first.negatives == again.negatives)
        let audience = Set(rewarder.statistics.audienceByItem[0].map { UInt32(bitPattern: $0) })
        #expect(first.positives.allSatisfy { audience.contains($0) })
        #expect(first.negatives.allSatisfy { !audience.contains($0) })
        let user = rewarder.comparison(.user(3))
        #expect(user.positives == [3])
        #expect(!user.negatives.contains(3))
    }

    /// A reward model in which user 0's vector is 10 times longer than everyone else's.
    struct LoudUserScorer: CollaborativeScorer {
        let inner: ProfileScorer
        func scores(_ queries: [CollaborativeQuery]) throws -> [Float] {
            let base = try inner.scores(queries)
            return zip(queries, base).map { query, p in
                let x = log(p / (1 - p)) * (query.user == 0 ? 10 : 1)
                return 1 / (1 + exp(-x))
            }
        }
    }

    @Test func calibrationStopsALoudUserFromDecidingTheOrdering() throws {
        let (dataset, split, builder, _) = try Synthetic.corpus()
        let embedder = KeywordEmbedder()
        let content = try embedder.embed((0..<dataset.itemCount).map { builder.contentText(item: Int32($0)) }).flatMap { $0 }
        let loud = LoudUserScorer(inner: ProfileScorer(dataset: dataset, split: split, content: content, dimension: embedder.dimension))
        var config = ReasonRewardConfig()
        config.comparisonUsers = 11
        let raw = ReasonRewarder(statistics: builder.statistics, verifier: ReasonVerifier(dataset: dataset),
                                 embedder: embedder, scorer: loud, config: config)
        let calibrated = try raw.calibrated(itemFeatures: content, dimension: embedder.dimension)
        let scales = try #require(calibrated.userScales)
        #expect(scales.count == dataset.userCount)
        #expect(scales[0] > 5 * scales[2], "user 0's logits are 10x louder")
        // User 0 likes comedies; raw scores rank them first for a comedy text about user 1 (a
        // sci-fi fan) no matter what; calibrated, user 1's own taste decides.
        let text = "You gravitate toward sci-fi and thrillers."
        let rawScore = try raw.score([(.user(1), text)])[0]
        let calibratedScore = try calibrated.score([(.user(1), text)])[0]
        #expect(calibratedScore.collaborative >= rawScore.collaborative)
        #expect(calibratedScore.collaborative > 0.5)
        #expect(throws: ReasonRewardError.self) { try raw.calibrated(itemFeatures: [1, 2], dimension: embedder.dimension) }
    }

    @Test func orderingRateCountsCorrectlyOrderedPairs() {
        #expect(ReasonRewarder.orderingRate(positives: [3, 2], negatives: [1, 2]) == 0.875)
        #expect(ReasonRewarder.orderingRate(positives: [], negatives: [1]) == 0.5)
        #expect(ReasonRewarder.orderingRate(positives: [0], negatives: [1, 2]) == 0)
    }
}
