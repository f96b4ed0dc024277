import CURecData
import CURecJobs
import CURecPluginHost
import CURecProto
import CURecRPC
import Foundation
import Logging
import Testing
@testable import CURecServer

/// Scoring, recommending and plugin management with the real popularity plugin over a small
/// dataset written for the test, called as the services call them.
@Suite(.serialized) struct RecommendAndPluginOperationsTests {
    /// 6 users, 8 items; item "i1" is the most popular, "i8" never seen.
    static func servingData() throws -> ServingData {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("curec-recops-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let histories: [[Int]] = [[1, 2, 3, 4], [1, 2, 5, 6], [1, 3, 5, 7], [1, 2, 3, 6], [1, 4, 5, 2], [1, 7, 2, 3]]
        var inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        for (user, items) in histories.enumerated() {
            for (step, item) in items.enumerated() { inter += "u\(user + 1)\ti\(item)\t4\t\(1_000 + step)\n" }
        }
        var itemFile = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        for item in 1...8 { itemFile += "i\(item)\tFilm \(item)\t199\(item)\tDrama\n" }
        try inter.write(toFile: directory + "/tiny.inter", atomically: true, encoding: .utf8)
        try itemFile.write(toFile: directory + "/tiny.item", atomically: true, encoding: .utf8)
        return ServingData(dataset: try RecDatasetLoader.load(directory: directory, name: "tiny"))
    }

    /// The directories the test binary's plugins were built into.
    static var pluginDirectories: [String] {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return [binary.path, binary.deletingLastPathComponent().path, repository.appendingPathComponent(".build/debug").path]
    }

    /// Plugin operations over the test's plugins, with a started job manager that runs the
    /// `train` jobs Load(train=true) submits. Call `operations.jobs.stop(timeout:)` when done,
    /// so no worker outlives the test.
    static func plugins() throws -> (PluginOperations, PluginHost, ServingData) {
        let data = try servingData()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("curec-plugins-\(UUID().uuidString)").path
        let host = PluginHost(searchDirectories: pluginDirectories, cacheDirectory: root + "/cache", logger: Logger(label: "test"))
        let artifacts = ArtifactStore(root: root)
        let preparer = PluginPreparer(artifacts: artifacts, data: data, logger: Logger(label: "test"))
        let jobs = try JobManager(dataDirectory: root, kinds: [
            TrainPluginJob(plugins: host, data: data, artifacts: artifacts, preparer: preparer),
        ], logger: Logger(label: "test"))
        jobs.start()
        return (PluginOperations(plugins: host, preparer: preparer, jobs: jobs), host, data)
    }

    private func code(_ body: () async throws -> Void) async -> StatusCode? {
        do {
            try await body()
            return nil
        } catch {
            return RPCError(converting: error).status.code
        }
    }

    @Test func pluginsLoadListAndUnload() async throws {
        let (operations, _, _) = try Self.plugins()
        defer { operations.jobs.stop(timeout: 5) }
        #expect(await code { _ = try await operations.load(.with { $0.name = ""; $0.library = "CURecPopularity" }) } == .invalidArgument)
        #expect(await code { _ = try await operations.load(.with { $0.name = "p"; $0.library = "" }) } == .invalidArgument)
        #expect(await code { _ = try await operations.load(.with { $0.name = "p"; $0.library = "CURecNoSuchPlugin" }) } == .notFound)
        #expect(await code { _ = try await operations.load(.with { $0.name = "lm"; $0.library = "CURecPopularity" }) } == .invalidArgument)
        #expect(await code { _ = try await operations.load(.with { $0.name = "../x"; $0.library = "CURecPopularity" }) } == .invalidArgument)
        #expect(await code { _ = try await operations.load(.with { $0.name = "p"; $0.library = "/tmp/libx.so" }) } == .invalidArgument)
        let status = try await operations.load(.with { $0.name = "pop"; $0.library = "CURecPopularity"; $0.train = true })
        #expect(status.name == "pop")
        #expect(status.trained)
        #expect(!status.jobID.isEmpty)
        #expect(try operations.jobs.get(status.jobID).state == .succeeded)
        #expect(status.kind == .recommender)
        #expect(await code { _ = try await operations.load(.with { $0.name = "pop"; $0.library = "CURecPopularity" }) } == .alreadyExists)
        #expect(operations.list(.init()).plugins.map(\.name) == ["pop"])
        // The saved state of the job's training loads: no second job.
        let reloaded = try await operations.reload(.with { $0.name = "pop" })
        #expect(reloaded.generation > status.generation)
        #expect(reloaded.trained && reloaded.jobID.isEmpty)
        #expect(await code { _ = try await operations.reload(.with { $0.name = "other" }) } == .notFound)
        _ = try operations.unload(.with { $0.name = "pop" })
        #expect(operations.list(.init()).plugins.isEmpty)
        #expect(await code { _ = try operations.unload(.with { $0.name = "pop" }) } == .notFound)
    }

    @Test func scoreAndRecommendAgree() async throws {
        let (plugins, host, data) = try Self.plugins()
        defer { plugins.jobs.stop(timeout: 5) }
        _ = try await plugins.load(.with { $0.name = "pop"; $0.library = "CURecPopularity"; $0.train = true })
        let operations = RecommendOperations(data: data, plugins: host, defaultRecommender: "pop")
        let top = try await operations.recommend(.with { $0.userID = "u2"; $0.k = 3; $0.excludeSeen = true }, shouldStop: { false })
        #expect(top.items.count == 3)
        #expect(top.servedBy.hasPrefix("pop@"))
        let seen = Set(data.histories[Int(try data.user("u2"))].map { data.dataset.items[Int($0)].externalID })
        #expect(top.items.allSatisfy { !seen.contains($0.itemID) })
        #expect(top.items.map(\.score) == top.items.map(\.score).sorted(by: >))
        #expect(top.items.first?.title.hasPrefix("Film ") == true)
        let scored = try operations.score(.with { $0.userID = "u2"; $0.itemIds = top.items.map(\.itemID) })
        #expect(scored.scores == top.items.map(\.score))
    }

    @Test func badRequestsAreRefusedWithTheirStatus() async throws {
        let (plugins, host, data) = try Self.plugins()
        defer { plugins.jobs.stop(timeout: 5) }
        _ = try await plugins.load(.with { $0.name = "pop"; $0.library = "CURecPopularity"; $0.train = true })
        let operations = RecommendOperations(data: data, plugins: host, defaultRecommender: "pop")
        #expect(await code { _ = try operations.score(.with { $0.userID = ""; $0.itemIds = ["i1"] }) } == .invalidArgument)
        #expect(await code { _ = try operations.score(.with { $0.userID = "nobody"; $0.itemIds = ["i1"] }) } == .notFound)
        #expect(await code { _ = try operations.score(.with { $0.userID = "u1" }) } == .invalidArgument)
        #expect(await code { _ = try operations.score(.with { $0.userID = "u1"; $0.itemIds = ["i99"] }) } == .notFound)
        #expect(await code {
            _ = try operations.score(.with { $0.userID = "u1"; $0.itemIds = Array(repeating: "i1", count: RecommendOperations.maxCandidates + 1) })
        } == .invalidArgument)
        #expect(await code { _ = try operations.score(.with { $0.userID = "u1"; $0.itemIds = ["i1"]; $0.plugin = "gone" }) } == .notFound)
        #expect(await code { _ = try operations.rank(.with { $0.userID = "u1"; $0.k = 0 }) } == .invalidArgument)
        #expect(await code { _ = try operations.rank(.with { $0.userID = "u1"; $0.k = 1001 }) } == .invalidArgument)
        // No reason table and no generator: asking for table reasons says what is missing.
        #expect(await code {
            _ = try await operations.recommend(.with { $0.userID = "u1"; $0.k = 2; $0.withReasons = true; $0.reasonSource = .table },
                                               shouldStop: { false })
        } == .failedPrecondition)
        let rewards = RewardOperations(data: data, plugins: host, defaultRewardModel: "reward")
        #expect(await code { _ = try rewards.score(.init()) } == .invalidArgument)
        #expect(await code { _ = try rewards.score(.with { $0.triples = [.with { $0.userID = "u1"; $0.itemID = "i1" }] }) } == .notFound)
    }
}

/// Loads a dataset from RecBole atomic files.
enum RecDatasetLoader {
    static func load(directory: String, name: String) throws -> CURecData.RecDataset {
        try CURecData.RecDataset.load(directory: directory, name: name)
    }
}
