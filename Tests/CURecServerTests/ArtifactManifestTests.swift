import Foundation
import Testing
@testable import CURecServer

@Suite struct ArtifactManifestTests {
    func store() -> ArtifactStore {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("curec-artifacts-\(UUID().uuidString)").path
        return ArtifactStore(root: root)
    }

    /// Writes a version the way an earlier release did: `metadata` as a JSON object of strings.
    func writeLegacyVersion(_ store: ArtifactStore, _ name: String, _ metadata: [String: String]) throws -> String {
        let directory = store.directory(of: name, version: "v1")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let data = try JSONSerialization.data(withJSONObject: metadata, options: [.sortedKeys])
        try data.write(to: URL(fileURLWithPath: (directory as NSString).appendingPathComponent("metadata.json")))
        return directory
    }

    @Test func aManifestReadsBackAsItWasWritten() throws {
        let store = store()
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        var manifest = ArtifactManifest(kind: .chatModel)
        manifest.base = "smollm2"
        manifest.dataset = "banana@v1"
        manifest.job = "job-1"
        manifest.method = .lora
        manifest.rank = 8
        manifest.targets = ["q", "v"]
        manifest.steps = 12
        manifest.examples = 40
        manifest.finalLoss = 0.25
        let directory = try store.addVersion(of: "bot", manifest: manifest) { folder in
            try Data("x".utf8).write(to: URL(fileURLWithPath: (folder as NSString).appendingPathComponent("weights")))
        }
        #expect((directory as NSString).lastPathComponent == "v1")
        let read = try #require(store.manifest(of: "bot", version: "v1"))
        #expect(read.format == ArtifactManifest.currentFormat)
        #expect(read.created != nil)
        var expected = manifest
        expected.created = read.created
        #expect(read == expected)
        // On disk: numbers as numbers, the layout named.
        let object = try #require(try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: (directory as NSString).appendingPathComponent(ArtifactStore.manifestFileName)))) as? [String: Any])
        #expect(object["manifest_version"] as? Int == 1 && object["rank"] as? Int == 8 && object["kind"] as? String == "chat-model")
        // As the RPCs return it.
        let fields = read.fields
        #expect(fields["kind"] == "chat-model" && fields["method"] == "lora" && fields["rank"] == "8")
        #expect(fields["targets"] == "q,v" && fields["dataset"] == "banana@v1" && fields["final_loss"] == "0.25")
    }

    @Test func aNaNLossStillWrites() throws {
        let store = store()
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        var manifest = ArtifactManifest(kind: .chatModel)
        manifest.finalLoss = .nan
        try store.addVersion(of: "m", manifest: manifest) { _ in }
        #expect(store.manifest(of: "m", version: "v1")?.finalLoss?.isNaN == true)
    }

    @Test func manifestsOfEarlierReleasesStillLoad() throws {
        let store = store()
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        // A plugin state from the start-up trainer: no kind, every value text.
        _ = try writeLegacyVersion(store, "bpr", [
            "plugin": "bpr", "plugin_version": "1.0.0", "config_fingerprint": "abc", "dataset": "ml-100k",
            "library": "/x/libCURecBPR.so", "training_seconds": "12.50", "created": "2026-01-01T00:00:00Z",
        ])
        let plugin = try #require(store.manifest(of: "bpr", version: "v1"))
        #expect(plugin.format == 0 && plugin.kind == .pluginState)
        #expect(plugin.plugin == "bpr" && plugin.configFingerprint == "abc" && plugin.trainingSeconds == 12.5)
        #expect(plugin.fields["plugin"] == "bpr" && plugin.fields["created"] == "2026-01-01T00:00:00Z")

        // A fine-tuned chat model.
        _ = try writeLegacyVersion(store, "bot", [
            "kind": "chat-model", "method": "full", "rank": "8", "targets": "q,k,v,o", "final_loss": "0.5",
            "steps": "3", "examples": "2", "dataset": "banana@v1",
        ])
        let chat = try #require(store.manifest(of: "bot", version: "v1"))
        #expect(chat.kind == .chatModel && chat.method == .full && chat.rank == 8)
        #expect(chat.targets == ["q", "k", "v", "o"] && chat.finalLoss == 0.5 && chat.steps == 3)

        // A pretrained LM: its description was under `config`.
        _ = try writeLegacyVersion(store, "lm", [
            "kind": "language-model", "config": "GPTConfig(layers: 4)", "held_out_perplexity": "9.1234",
        ])
        let lm = try #require(store.manifest(of: "lm", version: "v1"))
        #expect(lm.modelConfig == "GPTConfig(layers: 4)" && lm.config == nil && lm.heldOutPerplexity == 9.1234)

        // An uploaded dataset.
        let datasets = ArtifactStore(root: store.root, collection: "datasets")
        _ = try writeLegacyVersion(datasets, "chats", [
            "examples": "3", "bytes": "120", "created_unix_ms": "1700000000000", "format": "chat-jsonl",
        ])
        let dataset = try #require(datasets.manifest(of: "chats", version: "v1"))
        #expect(dataset.kind == .dataset && dataset.examples == 3 && dataset.bytes == 120)
        #expect(dataset.createdUnixMilliseconds == 1_700_000_000_000 && dataset.fileFormat == "chat-jsonl")
        let found = try DatasetStore(dataDirectory: store.root, maxUploadBytes: 1000).find("chats")
        #expect(found.examples == 3 && found.bytes == 120 && found.createdUnixMilliseconds == 1_700_000_000_000)

        // A reason table and a served recommender of the pipeline.
        _ = try writeLegacyVersion(store, "curec", [
            "plugin": "sasrec", "library": "CURecSASRec", "config": "{\"seed\":42}", "variant": "curec", "job": "job-2",
        ])
        let served = try #require(store.manifest(of: "curec", version: "v1"))
        #expect(served.kind == .pluginState && served.config == "{\"seed\":42}" && served.variant == "curec")
    }

    @Test func unreadableManifestsAreNone() throws {
        let store = store()
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        let directory = try writeLegacyVersion(store, "x", [:])
        try Data("not json".utf8).write(to: URL(fileURLWithPath: (directory as NSString).appendingPathComponent("metadata.json")))
        #expect(store.manifest(of: "x", version: "v1") == nil)
        #expect(store.manifest(of: "x", version: "v2") == nil)
        _ = try writeLegacyVersion(store, "y", ["rank": "eight"])
        #expect(store.manifest(of: "y", version: "v1") == nil)
    }

    @Test func kindsThisBuildDoesNotKnowAreKept() throws {
        let store = store()
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        _ = try writeLegacyVersion(store, "z", ["kind": "hologram", "manifest_version": "7"])
        let manifest = try #require(store.manifest(of: "z", version: "v1"))
        #expect(manifest.kind.rawValue == "hologram" && manifest.format == 7)
    }
}
