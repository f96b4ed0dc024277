import Foundation
import Logging
import Testing
@testable import CURecPluginHost

private func host() -> PluginHost {
    PluginHost(searchDirectories: [Fixtures.directory], cacheDirectory: Fixtures.scratch("batch-cache"), logger: Logger(label: "test"))
}

private func counting(maxBatchSize: Int) -> [UInt8] { Array(#"{"offset": 0.5, "max_batch_size": \#(maxBatchSize)}"#.utf8) }

/// The batched entry point of plugin ABI 1.2, through the host: the Swift test plugin, and
/// SASRec's real batched forward pass against its one-user-at-a-time scores.
@Suite(.enabled(if: Fixtures.built, "the fixture plugin libraries are missing: run swift build"))
struct BatchedScoringTests {
    @Test func aBatchedCallAnswersEachRequestAndFailsOnlyTheBadOne() throws {
        let instance = try host().load(name: "counting", library: "CURecTestRecommender", config: counting(maxBatchSize: 4)) {
            try $0.train(Fixtures.data)
        }
        #expect(instance.maxBatchSize == 4 && instance.describe().maxBatchSize == 4)
        let requests = [
            RecommenderRequest(user: 0, history: [], candidates: [3, 2, 1, 0]),
            RecommenderRequest(user: 1, history: [1], candidates: [9]),  // unknown item
            RecommenderRequest(user: 1, history: [], candidates: [1]),
            RecommenderRequest(user: 0, history: [], candidates: []),
            RecommenderRequest(user: 0, history: [], candidates: [0, 0]),  // a second call: more than 4
        ]
        let results = instance.scoreRecommenderBatch(requests)
        #expect(try results[0].get() == [2.5, 0.5, 3.5, 1.5])
        #expect(try results[2].get() == [3.5])
        #expect(try results[3].get() == [])
        #expect(try results[4].get() == [1.5, 1.5])
        guard case .failure(.plugin(let code, let message, _, let name)) = results[1] else {
            Issue.record("expected the unknown item to fail alone, got \(results[1])")
            return
        }
        #expect(code == 3 && message == "item 9 is out of range" && name == "counting")
    }

    @Test func batchingNeedsAPluginThatDeclaresIt() throws {
        let plugins = host()
        #expect(throws: PluginHostError.self) {
            try plugins.load(name: "plain", library: "CURecTestRecommender", config: counting(maxBatchSize: 0),
                             batching: DynamicBatchingConfiguration())
        }
        do {
            _ = try plugins.load(name: "plain", library: "CURecTestRecommender", config: counting(maxBatchSize: 0),
                                 batching: DynamicBatchingConfiguration())
        } catch {
            #expect("\(error)".contains("does not declare a batched scoring entry point"))
        }
        // Beyond the plugin's own maximum: refused naming the field.
        do {
            _ = try plugins.load(name: "small", library: "CURecTestRecommender", config: counting(maxBatchSize: 2),
                                 batching: DynamicBatchingConfiguration(maxBatchSize: 3))
            Issue.record("a max_batch_size above the plugin's was accepted")
        } catch {
            #expect("\(error)".contains("max_batch_size is 3 but the plugin accepts at most 2"))
        }
        #expect(plugins.list().isEmpty)
        // Without a batched plugin queued scoring still works, one call per request.
        let plain = try plugins.load(name: "plain", library: "CURecTestRecommender", config: counting(maxBatchSize: 0)) {
            try $0.train(Fixtures.data)
        }
        #expect(plain.batcher == nil)
    }

    @Test func queuedCallsOfABatchedInstanceShareExecutionsAndReloadKeepsTheBatching() async throws {
        let plugins = host()
        let batching = DynamicBatchingConfiguration(maxQueueDelayMicroseconds: 1_000_000, preferredBatchSizes: [3], maxBatchSize: 0)
        let instance = try plugins.load(name: "counting", library: "CURecTestRecommender", config: counting(maxBatchSize: 8),
                                        batching: batching) { try $0.train(Fixtures.data) }
        #expect(instance.batching?.maxBatchSize == 8)
        let scores = try await withThrowingTaskGroup(of: [Float].self) { group in
            for item in UInt32(0)..<3 {
                group.addTask { try await instance.scoreQueued(RecommenderRequest(user: 0, history: [], candidates: [item])).value }
            }
            return try await group.reduce(into: []) { $0.append(contentsOf: $1) }
        }
        #expect(scores.sorted() == [0.5, 1.5, 3.5])
        #expect(instance.batcher?.executionCount == 1)
        let reloaded = try plugins.reload(name: "counting") { try $0.train(Fixtures.data) }
        #expect(reloaded.batching == instance.batching)
    }

    /// SASRec trained for a few epochs on a small synthetic log: scoring a batch of users in
    /// one call (one forward pass) gives each user the scores scoring them alone gives.
    @Test func sasrecBatchedScoresEqualOneAtATimeScores() throws {
        guard FileManager.default.fileExists(atPath: Fixtures.directory + "/libCURecSASRec.so") else {
            Issue.record("libCURecSASRec.so is not built beside the tests")
            return
        }
        let users = 12, items = 30
        var userColumn: [UInt32] = [], itemColumn: [UInt32] = [], times: [Int64] = []
        for user in 0..<users {
            for step in 0..<(4 + user % 5) {
                userColumn.append(UInt32(user))
                itemColumn.append(UInt32((user * 7 + step * 3) % items))
                times.append(Int64(step))
            }
        }
        let data = PluginTrainingData(userCount: users, itemCount: items, users: userColumn, items: itemColumn,
                                      ratings: [Float](repeating: 1, count: userColumn.count), timestamps: times)
        let config = Array(#"{"width": 16, "blocks": 2, "heads": 2, "max_length": 8, "epochs": 3, "checkpoint_every": 0}"#.utf8)
        let instance = try host().load(name: "sasrec", library: "CURecSASRec", config: config) { try $0.train(data) }
        #expect(instance.maxBatchSize > 0)
        let catalogue = (0..<UInt32(items)).map { $0 }
        var requests: [RecommenderRequest] = []
        for user in 0..<UInt32(users) {
            // Whole-catalogue requests (one matrix product), candidate lists, explicit histories.
            switch user % 3 {
            case 0: requests.append(RecommenderRequest(user: user, history: [], candidates: catalogue))
            case 1: requests.append(RecommenderRequest(user: user, history: [], candidates: [5, 1, 29, 5]))
            default: requests.append(RecommenderRequest(user: user, history: [2, 4, 6], candidates: catalogue))
            }
        }
        requests.append(RecommenderRequest(user: 99, history: [], candidates: [1]))  // unknown user, no history
        let batched = instance.scoreRecommenderBatch(requests)
        for (request, result) in zip(requests.dropLast(), batched) {
            let alone = try instance.score(request)
            let together = try result.get()
            #expect(together.count == alone.count)
            for (a, b) in zip(alone, together) {
                #expect(abs(a - b) <= 1e-4 * max(1, abs(a)), "user \(request.user): \(a) alone, \(b) batched")
            }
        }
        guard case .failure(.plugin(let code, _, _, _)) = batched.last! else {
            Issue.record("the unknown user did not fail alone")
            return
        }
        #expect(code == 5)
    }
}
