import Foundation
import Testing
import CURecData
@testable import CURecPipeline

/// Stage 1 on MovieLens-100K (var/data/ml-100k; `scripts/fetch-data` fetches it).
@Suite struct MovieLensCorpusTests {
    static let directory: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.appendingPathComponent("var/data/ml-100k").path
    }()
    static var available: Bool { FileManager.default.fileExists(atPath: directory + "/ml-100k.inter") }

    @Test(.enabled(if: available, "MovieLens-100K not found in var/data/ml-100k: run scripts/fetch-data to enable this test"))
    func fullCorpusPassesTheVerifier() throws {
        let dataset = try RecDataset.load(directory: Self.directory, name: "ml-100k")
        let split = LeaveOneOutSplit(dataset)
        let clock = ContinuousClock()
        let start = clock.now
        let builder = try CorpusBuilder(dataset: dataset, split: split)
        var reports = 0
        let examples = builder.build { _ in reports += 1 }
        let elapsed = clock.now - start
        #expect(reports > 4)
        let counts = Dictionary(grouping: examples, by: \.task).mapValues(\.count)
        #expect(counts[.userPreference] == dataset.userCount)
        #expect((counts[.itemAudience] ?? 0) > 1000)
        #expect(counts[.pair] == dataset.userCount && counts[.nextItem] == dataset.userCount)

        // No validation or test interaction is used: no fact names a held-out (user, item) pair.
        let heldOut = Set((split.validation + split.test).map { "\($0.user)-\($0.item)" })
        for example in examples {
            for fact in example.facts {
                switch fact {
                case .watched(let user, let item, _), .nextItem(let user, let item, _):
                    #expect(!heldOut.contains("\(user)-\(item)"))
                default: break
                }
            }
        }

        let verifier = ReasonVerifier(dataset: dataset)
        var failures = 0
        for example in examples {
            for failure in verifyExample(example, verifier) {
                failures += 1
                if failures <= 10 {
                    Issue.record("\(example.task) \(failure.check.rawValue): '\(failure.text)' \(failure.detail)\n\(example.completionText)")
                }
            }
        }
        #expect(failures == 0)
        let reasons = Set(examples.filter { $0.task == .userPreference }.map(\.reason))
        #expect(reasons.count > dataset.userCount / 2)
        print("ml-100k corpus: \(examples.count) examples \(counts.map { "\($0.key.rawValue)=\($0.value)" }.sorted()) in \(elapsed)")
    }

    @Test(.enabled(if: available, "MovieLens-100K not found in var/data/ml-100k: run scripts/fetch-data to enable this test"))
    func factsAreTrueOnASample() throws {
        let dataset = try RecDataset.load(directory: Self.directory, name: "ml-100k")
        let split = LeaveOneOutSplit(dataset)
        var configuration = CorpusConfiguration()
        configuration.users = Array(0..<40)
        configuration.items = Array(0..<60)
        configuration.pairsPerUser = 2
        let examples = try CorpusBuilder(dataset: dataset, split: split, configuration: configuration).build()
        try FactAudit(dataset: dataset, split: split).check(examples)
    }
}
