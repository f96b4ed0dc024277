import CURecJobs
import CURecPluginHost
import CURecRPC
import Foundation
import Logging
import Testing
@testable import CURecServer

/// Publishing model versions into the registry and loading, on another daemon, what one
/// publishes: two artifact stores and two plugin hosts sharing one models directory and one
/// registry, as two replicas sharing storage and a database.
@Suite(.serialized) struct ModelRegistryFollowingTests {
    static let bprConfig = Array(#"{"factors": 4, "epochs": 3, "seed": 7}"#.utf8)

    /// One of two replicas: its artifact store (recording as its own publisher), plugin host
    /// and follower.
    struct Replica {
        let artifacts: ArtifactStore
        let plugins: PluginHost
        let follower: ModelFollower
    }

    struct Setup {
        let root: String
        let registry: SQLiteModelRegistry
        let data: ServingData
        let publisher: Replica
        let follower: Replica

        init() throws {
            root = FileManager.default.temporaryDirectory.appendingPathComponent("curec-registry-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            registry = try SQLiteModelRegistry(path: root + "/jobs.sqlite")
            data = try RecommendAndPluginOperationsTests.servingData()
            publisher = Self.replica("first", root: root, registry: registry)
            follower = Self.replica("second", root: root, registry: registry)
        }

        static func replica(_ name: String, root: String, registry: SQLiteModelRegistry) -> Replica {
            let registration = ModelRegistration(registry: registry, publisher: name)
            let artifacts = ArtifactStore(root: root, registration: registration)
            let plugins = PluginHost(searchDirectories: RecommendAndPluginOperationsTests.pluginDirectories,
                                     cacheDirectory: root + "/cache-\(name)", logger: Logger(label: "test"))
            return Replica(artifacts: artifacts, plugins: plugins,
                           follower: ModelFollower(registration: registration, artifacts: artifacts, plugins: plugins,
                                                   logger: Logger(label: "test")))
        }

        /// Trains BPR on the publishing replica and publishes it as `name` (to be served); the
        /// version directory.
        @discardableResult
        func publish(_ name: String = "shared") throws -> String {
            let instance = try publisher.plugins.makeInstance(name: name, library: "CURecBPR", config: ModelRegistryFollowingTests.bprConfig)
            try instance.train(data.trainingData())
            var manifest = ArtifactManifest.pluginState(instance.describe(), library: instance.libraryPath,
                                                        configFingerprint: PluginPreparer.fingerprint(ModelRegistryFollowingTests.bprConfig),
                                                        dataset: data.dataset.name)
            manifest.setConfig(ModelRegistryFollowingTests.bprConfig)
            let directory = try publisher.artifacts.addVersion(of: name, manifest: manifest, serve: true) { staging in
                try instance.save(to: staging)
            }
            publisher.plugins.serve(instance, library: "CURecBPR", config: ModelRegistryFollowingTests.bprConfig)
            return directory
        }
    }

    @Test func aCommittedVersionIsRecordedWithItsFilesSizesAndHashes() throws {
        let setup = try Setup()
        let directory = try setup.publish()
        let recorded = try #require(try setup.registry.versions(of: "shared").first)
        #expect(recorded.version == 1 && recorded.serve && recorded.publisher == "first")
        #expect(recorded.kind == "plugin-state" && recorded.plugin == "bpr")
        #expect(recorded.files.map(\.path).contains(ArtifactStore.manifestFileName))
        #expect(recorded.files == (try ModelFiles.list(in: directory)))
        for file in recorded.files {
            let data = try #require(FileManager.default.contents(atPath: directory + "/" + file.path))
            #expect(Int64(data.count) == file.size)
            #expect(SHA256Digest.hex(of: [UInt8](data)) == file.sha256)
        }
        let manifest = try ArtifactStore.manifestDecoder.decode(ArtifactManifest.self, from: Data(recorded.manifest.utf8))
        #expect(manifest.configBytes == Self.bprConfig)
        // The listing reads the registry, with who published each version.
        let listed = try ModelOperations(artifacts: setup.follower.artifacts).list(.init())
        #expect(listed.models.map(\.name) == ["shared"])
        #expect(listed.models.first?.versions.first?.metadata["publisher"] == "first")
        #expect(listed.models.first?.versions.first?.metadata["plugin"] == "bpr")
    }

    @Test func versionsWrittenBeforeTheRegistryAreRecordedAtStart() throws {
        let setup = try Setup()
        let unregistered = ArtifactStore(root: setup.root)
        try unregistered.addVersion(of: "old", manifest: ArtifactManifest(kind: .report)) { staging in
            try "# old\n".write(toFile: staging + "/report.md", atomically: true, encoding: .utf8)
        }
        #expect(try setup.registry.versions(of: "old").isEmpty)
        #expect(try setup.publisher.artifacts.recordUnregisteredVersions() == 1)
        #expect(try setup.publisher.artifacts.recordUnregisteredVersions() == 0)
        let recorded = try #require(try setup.registry.versions(of: "old").first)
        #expect(recorded.kind == "report" && !recorded.serve && recorded.files.count == 2)
    }

    @Test func anotherReplicaServesWhatOnePublishes() throws {
        let setup = try Setup()
        try setup.publish()
        // The publisher served it itself: its follower has nothing to load.
        #expect(setup.publisher.follower.catchUp().isEmpty)
        #expect(setup.follower.plugins.instance(named: "shared") == nil)
        #expect(setup.follower.follower.catchUp() == [.loaded(name: "shared", version: 1)])
        let served = try #require(setup.follower.plugins.instance(named: "shared"))
        #expect(served.describe().isTrained && served.describe().pluginName == "bpr")
        // Nothing newer: nothing to do.
        #expect(setup.follower.follower.catchUp().isEmpty)
        try setup.publish()
        #expect(setup.follower.follower.catchUp() == [.loaded(name: "shared", version: 2)])
        #expect(try #require(setup.follower.plugins.instance(named: "shared")).generation > served.generation)
    }

    @Test func aTornPublicationIsRefusedAndTheOldVersionKeepsServing() throws {
        let setup = try Setup()
        try setup.publish()
        #expect(setup.follower.follower.catchUp() == [.loaded(name: "shared", version: 1)])
        let before = try #require(setup.follower.plugins.instance(named: "shared")).generation

        // v2: a file cut short after it was recorded.
        let second = try setup.publish()
        let file = try #require(try setup.registry.versions(of: "shared").last?.files.first { $0.path != ArtifactStore.manifestFileName })
        try Data(count: 3).write(to: URL(fileURLWithPath: second + "/" + file.path))
        let outcomes = setup.follower.follower.catchUp()
        guard case .refused(let name, let version, let reason)? = outcomes.first else {
            Issue.record("expected a refusal, got \(outcomes)")
            return
        }
        #expect(name == "shared" && version == 2)
        #expect(reason.contains("has 3 bytes") && reason.contains("torn publication"), "\(reason)")
        #expect(setup.follower.plugins.instance(named: "shared")?.generation == before)
        #expect(setup.follower.follower.refusal(of: "shared")?.version == 2)
        // A refused version is not tried again.
        #expect(setup.follower.follower.catchUp().isEmpty)

        // v3: same size, other bytes.
        let third = try setup.publish()
        let size = try #require(FileManager.default.attributesOfItem(atPath: third + "/" + file.path)[.size] as? Int)
        try Data(repeating: 0x5A, count: size).write(to: URL(fileURLWithPath: third + "/" + file.path))
        guard case .refused(_, 3, let hashReason)? = setup.follower.follower.catchUp().first else {
            Issue.record("expected v3 to be refused")
            return
        }
        #expect(hashReason.contains("SHA-256"), "\(hashReason)")

        // v4: a file missing.
        let fourth = try setup.publish()
        try FileManager.default.removeItem(atPath: fourth + "/" + file.path)
        guard case .refused(_, 4, let missingReason)? = setup.follower.follower.catchUp().first else {
            Issue.record("expected v4 to be refused")
            return
        }
        #expect(missingReason.contains("missing"), "\(missingReason)")
        #expect(setup.follower.plugins.instance(named: "shared")?.generation == before)

        // A complete v5 serves again.
        try setup.publish()
        #expect(setup.follower.follower.catchUp() == [.loaded(name: "shared", version: 5)])
    }

    /// Rows another writer of the database made up: paths outside the version directory, a
    /// name that is a path, a library given as a path. None is loaded, nothing outside the
    /// plugin directories is opened, and the daemon keeps serving.
    @Test func rowsNamingFilesOutsideTheModelsDirectoryAreRefused() throws {
        let setup = try Setup()
        let directory = try setup.publish()
        #expect(setup.follower.follower.catchUp() == [.loaded(name: "shared", version: 1)])
        let genuine = try #require(try setup.registry.versions(of: "shared").first)
        let manifestFile = try #require(genuine.files.first { $0.path == ArtifactStore.manifestFileName })
        try FileManager.default.createDirectory(atPath: setup.root + "/models/shared/v2", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: directory + "/" + manifestFile.path, toPath: setup.root + "/models/shared/v2/" + manifestFile.path)
        let outside = setup.root + "/outside.bin"
        try Data("secret".utf8).write(to: URL(fileURLWithPath: outside))
        let hostile: [(String, [ModelFile])] = [
            ("../../outside.bin", [ModelFile(path: "../../outside.bin", size: 6, sha256: SHA256Digest.hex(of: Array("secret".utf8)))]),
            ("an absolute path", [ModelFile(path: outside, size: 6, sha256: SHA256Digest.hex(of: Array("secret".utf8)))]),
            ("no files", []),
        ]
        for (index, (_, files)) in hostile.enumerated() {
            var row = genuine
            row.version = 2 + index
            row.files = [manifestFile] + files
            if files.isEmpty { row.files = [] }
            row.publisher = "intruder"
            try setup.registry.record(row)
            let outcome = setup.follower.follower.catchUp()
            guard case .refused(_, row.version, let reason)? = outcome.first else {
                Issue.record("row \(index) was not refused: \(outcome)")
                continue
            }
            #expect(reason.contains("outside") || reason.contains("missing") || reason.contains("no files"), "\(reason)")
        }
        // A symbolic link inside the version directory leading out of it.
        try FileManager.default.createSymbolicLink(atPath: setup.root + "/models/shared/v2/link.bin", withDestinationPath: outside)
        var linked = genuine
        linked.version = 5
        linked.files = [ModelFile(path: "link.bin", size: 6, sha256: SHA256Digest.hex(of: Array("secret".utf8)))]
        try FileManager.default.createSymbolicLink(atPath: setup.root + "/models/shared/v5", withDestinationPath: setup.root + "/models/shared/v2")
        try setup.registry.record(linked)
        guard case .refused(_, 5, let linkReason)? = setup.follower.follower.catchUp().first else {
            Issue.record("a symbolic link out of the models directory was followed")
            return
        }
        #expect(linkReason.contains("outside"), "\(linkReason)")
        // A name that is a path.
        var named = genuine
        named.name = "../shared"
        named.version = 1
        try setup.registry.record(named)
        guard case .refused(_, 1, let nameReason)? = setup.follower.follower.catchUp().first else {
            Issue.record("a name that is a path was followed")
            return
        }
        #expect(nameReason.contains("not a valid model name"), "\(nameReason)")
        // A manifest naming a library by path: only the file name is looked up, in the plugin directories.
        var manifest = try ArtifactStore.manifestDecoder.decode(ArtifactManifest.self, from: Data(genuine.manifest.utf8))
        manifest.library = setup.root + "/evil/libCURecEvil.so"
        var library = genuine
        library.version = 6
        library.manifest = String(decoding: try JSONEncoder().encode(manifest), as: UTF8.self)
        try FileManager.default.createDirectory(atPath: setup.root + "/models/shared/v6", withIntermediateDirectories: true)
        for file in genuine.files {
            try FileManager.default.copyItem(atPath: directory + "/" + file.path, toPath: setup.root + "/models/shared/v6/" + file.path)
        }
        try setup.registry.record(library)
        guard case .refused(_, 6, let libraryReason)? = setup.follower.follower.catchUp().first else {
            Issue.record("a library outside the plugin directories was loaded")
            return
        }
        #expect(libraryReason.contains("cannot be served"), "\(libraryReason)")
        #expect(setup.follower.plugins.instance(named: "shared")?.describe().isTrained == true)
    }
}
