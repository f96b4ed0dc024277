import Foundation
import Synchronization
import Testing
@testable import CURecJobs

/// The model registry on both stores (PostgreSQL when the run has a server): recording,
/// listing, the newest version to serve, and announcements to every registry on the database.
@Suite(.serialized) struct ModelRegistryTests {
    static func version(_ name: String, _ number: Int, serve: Bool = false, publisher: String = "a") -> ModelVersion {
        ModelVersion(name: name, version: number, kind: "plugin-state", plugin: "bpr",
                     files: [ModelFile(path: "metadata.json", size: 12, sha256: String(repeating: "ab", count: 32)),
                             ModelFile(path: "sub/item_factors.f32", size: 4096, sha256: String(repeating: "0f", count: 32))],
                     manifest: #"{"kind":"plugin-state","plugin":"bpr"}"#, serve: serve, publisher: publisher,
                     createdMS: 1_700_000_000_000 + Int64(number))
    }

    @Test(arguments: StoreBackend.available) func versionsAreRecordedOnceAndListedInOrder(_ backend: StoreBackend) throws {
        let location = try TestStoreLocation(backend)
        let registry = try location.openRegistry()
        defer { registry.close() }
        #expect(try registry.versions(of: nil).isEmpty)
        #expect(try registry.record(Self.version("bpr", 2)))
        #expect(try registry.record(Self.version("bpr", 1)))
        #expect(try registry.record(Self.version("lm", 1)))
        // A version is immutable: a second row for it is not recorded, the first stays.
        var other = Self.version("bpr", 1, publisher: "b")
        other.files = []
        #expect(try !registry.record(other))
        let all = try registry.versions(of: nil)
        #expect(all.map { "\($0.name)/\($0.label)" } == ["bpr/v1", "bpr/v2", "lm/v1"])
        #expect(all.first == Self.version("bpr", 1))
        #expect(try registry.versions(of: "bpr").map(\.version) == [1, 2])
        #expect(try registry.versions(of: "nothing").isEmpty)
        // The job store opens the same database (one list of migrations for both).
        let store = try location.openStore()
        store.close()
        let again = try location.openRegistry()
        defer { again.close() }
        #expect(try again.versions(of: nil).count == 3)
    }

    @Test(arguments: StoreBackend.available) func theNewestVersionToServeIsPerName(_ backend: StoreBackend) throws {
        let location = try TestStoreLocation(backend)
        let registry = try location.openRegistry()
        defer { registry.close() }
        try registry.record(Self.version("bpr", 1, serve: true))
        try registry.record(Self.version("bpr", 2))
        try registry.record(Self.version("bpr", 3, serve: true))
        try registry.record(Self.version("bpr", 4))
        try registry.record(Self.version("lm", 1))
        try registry.record(Self.version("curec", 1))
        #expect(try registry.newestServed().map { "\($0.name)/\($0.label)" } == ["bpr/v3"])
        #expect(try registry.markServed(name: "curec", version: 1))
        #expect(try !registry.markServed(name: "curec", version: 9))
        #expect(try registry.newestServed().map { "\($0.name)/\($0.label)" } == ["bpr/v3", "curec/v1"])
    }

    /// Every registry on the database hears of each version recorded or marked to be served,
    /// its own included (on SQLite, only the registry that wrote it).
    @Test(arguments: StoreBackend.available) func recordsAreAnnounced(_ backend: StoreBackend) async throws {
        let location = try TestStoreLocation(backend)
        let writer = try location.openRegistry()
        let reader = backend == .postgres ? try location.openRegistry() : writer
        defer {
            writer.close()
            reader.close()
        }
        let (stream, continuation) = AsyncStream<ModelVersion>.makeStream()
        reader.onChange { change in
            if case .published(let version) = change { continuation.yield(version) }
        }
        try writer.record(Self.version("bpr", 1))
        try writer.markServed(name: "bpr", version: 1)
        var heard: [ModelVersion] = []
        for await version in stream {
            heard.append(version)
            if heard.count == 2 { break }
        }
        #expect(heard.map(\.label) == ["v1", "v1"])
        // An announcement carries the row as read when it is heard (on PostgreSQL the NOTIFY
        // names the row), so the first may already show the mark; the last always does.
        #expect(heard.last?.serve == true)
        #expect(heard.first?.files == Self.version("bpr", 1).files)
    }
}
