import Foundation
import CURecRPC
import Synchronization
import Testing
@testable import CURecServer

@Suite struct LRUDictionaryTests {
    @Test func keepsAtMostCapacityDroppingTheLeastRecentlyUsed() {
        var lru = LRUDictionary<Int, String>(capacity: 3)
        for key in 1...3 { lru.set("v\(key)", for: key) }
        #expect(lru.value(for: 1) == "v1")          // 1 becomes the most recent
        lru.set("v4", for: 4)                      // evicts 2, the least recently used
        #expect(lru.count == 3)
        #expect(lru.peek(2) == nil)
        #expect(lru.keysByRecency == [4, 1, 3])
        lru.set("v3'", for: 3)                     // an update does not grow it
        #expect(lru.count == 3 && lru.keysByRecency == [3, 4, 1])
        for key in 5...100 { lru.set("v\(key)", for: key) }
        #expect(lru.count == 3 && lru.keysByRecency == [100, 99, 98])
    }
}

/// Counts calls of a generator and, when gated, holds them until released.
private final class FakeWriter: Sendable {
    let calls = Mutex<[[PairReasonCache.Key]]>([])
    /// The stop check the last generation got.
    let stop = Mutex<(@Sendable () -> Bool)?>(nil)
    let gate: AsyncStream<Void>?
    let release: AsyncStream<Void>.Continuation?

    init(gated: Bool) {
        if gated {
            let (stream, continuation) = AsyncStream<Void>.makeStream()
            gate = stream
            release = continuation
        } else {
            gate = nil
            release = nil
        }
    }

    var callCount: Int { calls.withLock { $0.count } }

    func write(_ keys: [PairReasonCache.Key], _ shouldStop: @escaping @Sendable () -> Bool) async throws -> [String] {
        calls.withLock { $0.append(keys) }
        stop.withLock { $0 = shouldStop }
        if let gate { for await _ in gate { break } }
        return keys.map { "reason for \($0.user)/\($0.item) by \($0.model)" }
    }
}

@Suite struct PairReasonCacheTests {
    typealias Key = PairReasonCache.Key

    @Test func isBoundedAndKeyedByModelVersion() async throws {
        let cache = PairReasonCache(capacity: 4)
        let writer = FakeWriter(gated: false)
        let v1 = (0..<3).map { Key(user: 7, item: UInt32($0), model: "models/curec-reasons/v1") }
        let first = try await cache.reasons(for: v1, generate: writer.write)
        #expect(first == v1.map { "reason for 7/\($0.item) by models/curec-reasons/v1" })
        #expect(writer.callCount == 1 && cache.count == 3)
        // Cached: no new generation.
        _ = try await cache.reasons(for: v1, generate: writer.write)
        #expect(writer.callCount == 1)
        // Another model version of the same pairs is another entry: written again.
        let v2 = v1.map { Key(user: $0.user, item: $0.item, model: "models/curec-reasons/v2") }
        let second = try await cache.reasons(for: [v2[0]], generate: writer.write)
        #expect(second == ["reason for 7/0 by models/curec-reasons/v2"])
        #expect(writer.callCount == 2)
        #expect(cache.cached(v1[0]) == "reason for 7/0 by models/curec-reasons/v1")
        // Bounded: the fifth entry drops the least recently used (v1 item 0).
        _ = try await cache.reasons(for: [v2[1]], generate: writer.write)
        #expect(cache.count == 4)
        #expect(cache.cached(v1[0]) == nil)
        #expect(cache.cached(v2[1]) != nil)
        // Only the missing pairs of a request are generated, in order.
        _ = try await cache.reasons(for: [v2[0], v2[2], v2[1]], generate: writer.write)
        #expect(writer.calls.withLock { $0.last } == [v2[2]])
    }

    @Test func concurrentRequestsForAPairShareOneGeneration() async throws {
        let cache = PairReasonCache()
        let writer = FakeWriter(gated: true)
        let keys = [Key(user: 1, item: 2, model: "smollm2"), Key(user: 1, item: 3, model: "smollm2")]
        let first = Task { try await cache.reasons(for: keys, generate: writer.write) }
        // Wait for the first generation to start, then ask again for one of its pairs.
        while writer.callCount == 0 { await Task.yield() }
        let second = Task { try await cache.reasons(for: [keys[1]], generate: writer.write) }
        while cache.joinedCount == 0 { await Task.yield() }
        #expect(cache.inFlightCount == 2)
        writer.release?.yield(())
        let a = try await first.value, b = try await second.value
        #expect(writer.callCount == 1)
        #expect(b == [a[1]])
        #expect(cache.inFlightCount == 0 && cache.count == 2)
    }

    @Test func aSharedGenerationStopsOnlyWhenEveryWaiterHasGone() async throws {
        let cache = PairReasonCache()
        let writer = FakeWriter(gated: true)
        let key = Key(user: 4, item: 5, model: "smollm2")
        let firstGone = Mutex(false), secondGone = Mutex(false)
        let first = Task { try await cache.reasons(for: [key], isCancelled: { firstGone.withLock { $0 } }, generate: writer.write) }
        while writer.callCount == 0 { await Task.yield() }
        let second = Task { try await cache.reasons(for: [key], isCancelled: { secondGone.withLock { $0 } }, generate: writer.write) }
        while cache.joinedCount == 0 { await Task.yield() }
        let shouldStop = try #require(writer.stop.withLock { $0 })
        #expect(!shouldStop())
        firstGone.withLock { $0 = true }
        #expect(!shouldStop())      // the second request still waits
        secondGone.withLock { $0 = true }
        #expect(shouldStop())
        writer.release?.yield(())
        _ = try await first.value
        _ = try await second.value
    }

    @Test func aFailedGenerationCachesNothing() async throws {
        struct Broken: Error {}
        let cache = PairReasonCache()
        let key = Key(user: 1, item: 1, model: "smollm2")
        await #expect(throws: Broken.self) {
            try await cache.reasons(for: [key]) { _, _ in throw Broken() }
        }
        #expect(cache.count == 0 && cache.inFlightCount == 0)
        let writer = FakeWriter(gated: false)
        #expect(try await cache.reasons(for: [key], generate: writer.write) == ["reason for 1/1 by smollm2"])
    }
}

@Suite struct PairReasonModelTests {
    /// A data directory with `names` published as chat models (metadata only: resolving a
    /// model does not load it).
    static var chatModelManifest: ArtifactManifest {
        var manifest = ArtifactManifest(kind: .chatModel)
        manifest.method = .lora
        return manifest
    }

    static func store(publishing names: [String]) throws -> (ChatModelStore, ArtifactStore) {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("pair-reasons-\(UUID().uuidString)").path
        let artifacts = ArtifactStore(root: root)
        for name in names {
            try artifacts.addVersion(of: name, manifest: Self.chatModelManifest) { _ in }
        }
        return (ChatModelStore(basePath: root + "/absent.gguf", artifacts: artifacts), artifacts)
    }

    static func pairs(_ chatModels: ChatModelStore, _ artifacts: ArtifactStore) -> PairReasons {
        PairReasons(generator: ReasonGenerator(models: LanguageModelStore(artifacts: artifacts), prompt: { _, _ in "" }),
                    chatModels: chatModels, cache: PairReasonCache(capacity: 8))
    }

    @Test func theNewestTunedModelIsUsedAndTheBaseOtherwise() throws {
        let (bare, bareArtifacts) = try Self.store(publishing: [])
        // No tuned model and no base file: a clear precondition error.
        #expect(throws: ServingError.self) { try Self.pairs(bare, bareArtifacts).resolveModel("") }
        let (chatModels, artifacts) = try Self.store(publishing: [PairReasons.tunedModelName, "support-bot"])
        let pairs = Self.pairs(chatModels, artifacts)
        #expect(try pairs.resolveModel("") == (PairReasons.tunedModelName, "models/curec-reasons/v1"))
        try artifacts.addVersion(of: PairReasons.tunedModelName, manifest: Self.chatModelManifest) { _ in }
        #expect(try pairs.resolveModel("") == (PairReasons.tunedModelName, "models/curec-reasons/v2"))
        // A request may name another chat model; anything else is refused.
        #expect(try pairs.resolveModel("support-bot") == ("support-bot", "models/support-bot/v1"))
        for name in ["lm", "../x", String(repeating: "m", count: 500)] {
            #expect(throws: ServingError.self) { try pairs.resolveModel(name) }
        }
    }

    @Test func generatedReasonsDefaultToTheGPTThenTheTunedModelThenTheBase() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("reason-default-\(UUID().uuidString)").path
        let artifacts = ArtifactStore(root: root)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let basePath = root + "/smollm2.gguf"
        let generator = ReasonGenerator(models: LanguageModelStore(artifacts: artifacts), prompt: { _, _ in "" },
                                        chatModels: ChatModelStore(basePath: basePath, artifacts: artifacts))
        // Nothing published and no base file: the GPT name, whose absence is the error.
        #expect(generator.defaultModelName() == "lm")
        #expect(FileManager.default.createFile(atPath: basePath, contents: Data()))
        #expect(generator.defaultModelName() == ChatModelStore.baseName)
        try artifacts.addVersion(of: PairReasons.tunedModelName, manifest: Self.chatModelManifest) { _ in }
        #expect(generator.defaultModelName() == PairReasons.tunedModelName)
        try artifacts.addVersion(of: "lm", manifest: ArtifactManifest(kind: .languageModel)) { _ in }
        #expect(generator.defaultModelName() == "lm")
    }
}
