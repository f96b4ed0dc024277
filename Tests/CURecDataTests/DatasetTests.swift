import Foundation
import Testing
@testable import CURecData

@Suite struct DatasetTests {
    static let inter = """
        user_id:token\titem_id:token\trating:float\ttimestamp:float
        u1\ta\t5\t100
        u1\tb\t3\t300
        u1\tc\t4\t200
        u1\td\t4\t400
        u2\ta\t2\t50
        u2\tc\t1\t60
        u3\tb\t5\t10

        """

    private func makeDirectory() throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("curec-data-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Self.inter.write(toFile: directory + "/toy.inter", atomically: true, encoding: .utf8)
        try "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\na\tAlpha\t1995\tDrama Comedy\nb\tBeta\t1987\tAction\n"
            .write(toFile: directory + "/toy.item", atomically: true, encoding: .utf8)
        return directory
    }

    @Test func loadsAtomicFilesAndMapsIDs() throws {
        let dataset = try RecDataset.load(directory: try makeDirectory(), name: "toy")
        #expect(dataset.userCount == 3)
        #expect(dataset.itemCount == 4)
        #expect(dataset.itemIndex("a") == 0)
        #expect(dataset.items[0].title == "Alpha")
        #expect(dataset.items[0].genres == ["Drama", "Comedy"])
        #expect(dataset.items[1].year == 1987)
        #expect(dataset.items[2].title == "c")
        #expect(dataset.interactions.count == 7)
    }

    @Test func splitIsChronologicalLeaveOneOut() throws {
        let dataset = try RecDataset.load(directory: try makeDirectory(), name: "toy")
        let split = LeaveOneOutSplit(dataset)
        let u1 = try #require(dataset.userIndex("u1"))
        let u2 = try #require(dataset.userIndex("u2"))
        let u3 = try #require(dataset.userIndex("u3"))
        // u1: a(100) c(200) b(300) d(400) -> train a c, valid b, test d.
        #expect(split.trainItemsByUser[Int(u1)] == [dataset.itemIndex("a"), dataset.itemIndex("c")].compactMap { $0 })
        #expect(split.validation.first { $0.user == u1 }?.item == dataset.itemIndex("b"))
        #expect(split.test.first { $0.user == u1 }?.item == dataset.itemIndex("d"))
        // u2 has two: train a, test c, no validation. u3 has one: train only.
        #expect(split.test.first { $0.user == u2 }?.item == dataset.itemIndex("c"))
        #expect(split.validation.first { $0.user == u2 } == nil)
        #expect(split.trainItemsByUser[Int(u3)].count == 1)
        #expect(split.test.first { $0.user == u3 } == nil)
        #expect(split.train.count + split.validation.count + split.test.count == dataset.interactions.count)
    }

    @Test func malformedFilesGiveClearErrors() {
        #expect(throws: DatasetError.self) { try AtomicFile.parse("user_id\titem_id:token\n", path: "x.inter") }
        do {
            _ = try AtomicFile.parse("a:token\tb:token\n1\t2\t3\n", path: "x.inter")
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains("x.inter:2"))
        }
        #expect(throws: DatasetError.self) { try RecDataset.load(directory: "/nonexistent", name: "none") }
    }
}

@Suite struct RankingMetricsTests {
    @Test func rankSkipsExcludedItems() {
        let scores: [Float] = [0.9, 0.1, 0.5, 0.7, 0.3]
        scores.withUnsafeBufferPointer { buffer in
            #expect(RankingMetrics.rank(of: 2, scores: buffer, excluded: []) == 2)
            #expect(RankingMetrics.rank(of: 2, scores: buffer, excluded: [0]) == 1)
            #expect(RankingMetrics.rank(of: 0, scores: buffer, excluded: []) == 0)
        }
    }

    @Test func metricsMatchHandComputedValues() {
        var metrics = RankingMetrics(cutoffs: [1, 3])
        metrics.add(rank: 0)   // hit at 1
        metrics.add(rank: 2)   // hit at 3 only
        metrics.add(rank: 5)   // miss
        let means = metrics.averaged()
        #expect(abs(means.recall[1]! - 1.0 / 3) < 1e-12)
        #expect(abs(means.recall[3]! - 2.0 / 3) < 1e-12)
        #expect(abs(means.ndcg[3]! - (1 + 1 / log2(4.0)) / 3) < 1e-12)
        #expect(abs(means.mrr[3]! - (1 + 1.0 / 3) / 3) < 1e-12)
    }

    @Test func evaluationExcludesTrainingAndValidationItems() throws {
        let items = (0..<4).map { ItemInfo(externalID: "\($0)", title: "", year: nil, genres: []) }
        let users = [UserInfo(externalID: "u", age: nil, gender: "", occupation: "")]
        let dataset = RecDataset(name: "t", users: users, items: items, interactions: [
            Interaction(user: 0, item: 0, rating: 1, timestamp: 1),
            Interaction(user: 0, item: 1, rating: 1, timestamp: 2),
            Interaction(user: 0, item: 2, rating: 1, timestamp: 3),
        ])
        let split = LeaveOneOutSplit(dataset)
        // Item 2 is the test item; 0 (train) and 1 (validation) score higher but are excluded.
        let metrics = RankingMetrics.evaluate(split: split, itemCount: 4, phase: .test, cutoffs: [1]) { _, scores in
            scores[0] = 10; scores[1] = 9; scores[2] = 5; scores[3] = 1
        }
        #expect(metrics.averaged().recall[1] == 1)
    }
}
