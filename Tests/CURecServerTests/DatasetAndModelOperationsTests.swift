import CURecProto
import CURecRPC
import Foundation
import Testing
@testable import CURecServer

/// Dataset uploads and the artifact store's listings, called as the services call them.
@Suite struct DatasetAndModelOperationsTests {
    private func temporaryDirectory() -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("curec-ops-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    private func code(_ body: () async throws -> Void) async -> StatusCode? {
        do {
            try await body()
            return nil
        } catch {
            return RPCError(converting: error).status.code
        }
    }

    private func messages(_ parts: [Curec_V1_UploadDatasetRequest]) -> AsyncStream<Curec_V1_UploadDatasetRequest> {
        AsyncStream { continuation in
            for part in parts { continuation.yield(part) }
            continuation.finish()
        }
    }

    private func header(_ name: String) -> Curec_V1_UploadDatasetRequest { .with { $0.header.name = name } }
    private func chunk(_ text: String) -> Curec_V1_UploadDatasetRequest { .with { $0.chunk = Data(text.utf8) } }
    private let example = #"{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}"# + "\n"

    @Test func anUploadBecomesAVersionThatListsBack() async throws {
        let operations = DatasetOperations(datasets: DatasetStore(dataDirectory: temporaryDirectory(), maxUploadBytes: 1 << 20))
        let stored = try await operations.upload(messages([header("films"), chunk(example), chunk(example + example)]))
        #expect(stored.name == "films")
        #expect(stored.examples == 3)
        let listed = try operations.list(.with { $0.name = "films" })
        #expect(listed.datasets.map(\.version) == [stored.version])
        #expect(await code { _ = try operations.list(.with { $0.name = "other" }) } == .notFound)
        #expect(await code { _ = try operations.list(.with { $0.name = "../x" }) } == .invalidArgument)
    }

    @Test func malformedUploadsLeaveNothingBehind() async throws {
        let operations = DatasetOperations(datasets: DatasetStore(dataDirectory: temporaryDirectory(), maxUploadBytes: 1 << 20))
        #expect(await code { _ = try await operations.upload(messages([])) } == .invalidArgument)
        #expect(await code { _ = try await operations.upload(messages([chunk(example)])) } == .invalidArgument)
        #expect(await code { _ = try await operations.upload(messages([header("a"), header("a")])) } == .invalidArgument)
        #expect(await code { _ = try await operations.upload(messages([header("a"), chunk("not json\n")])) } == .invalidArgument)
        #expect(await code { _ = try await operations.upload(messages([header("bad/name")])) } == .invalidArgument)
        let tooBig = Data(count: DatasetOperations.maxChunkBytes + 1)
        #expect(await code { _ = try await operations.upload(messages([header("a"), .with { $0.chunk = tooBig }])) } == .invalidArgument)
        #expect(try operations.list(.init()).datasets.isEmpty)
    }

    @Test func theSizeLimitIsResourceExhausted() async throws {
        let operations = DatasetOperations(datasets: DatasetStore(dataDirectory: temporaryDirectory(), maxUploadBytes: 64))
        #expect(await code { _ = try await operations.upload(messages([header("a"), chunk(example + example)])) } == .resourceExhausted)
    }

    @Test func reportsAndModelsByName() async throws {
        let root = temporaryDirectory()
        let artifacts = ArtifactStore(root: root)
        let operations = ModelOperations(artifacts: artifacts)
        #expect(try operations.list(.init()).models.isEmpty)
        #expect(await code { _ = try operations.list(.with { $0.name = "bpr" }) } == .notFound)
        #expect(await code { _ = try operations.report(.init()) } == .notFound)
        #expect(await code { _ = try operations.report(.with { $0.name = "../etc" }) } == .invalidArgument)
        var manifest = ArtifactManifest(kind: .report)
        manifest.profile = "quick"
        let directory = try artifacts.addVersion(of: "report", manifest: manifest) { staging in
            try "# Report\n".write(toFile: staging + "/report.md", atomically: true, encoding: .utf8)
            try "<svg/>".write(toFile: staging + "/chart.svg", atomically: true, encoding: .utf8)
        }
        let version = (directory as NSString).lastPathComponent
        let report = try operations.report(.init())
        #expect(report.version == version)
        #expect(report.markdown == "# Report\n")
        #expect(report.metadata["profile"] == "quick")
        #expect(report.files.map(\.name) == ["chart.svg", "report.md"])
        #expect(report.files.first?.mediaType == "image/svg+xml")
        #expect(await code { _ = try operations.report(.with { $0.version = "v999" }) } == .notFound)
        let models = try operations.list(.with { $0.name = "report" })
        #expect(models.models.first?.versions.map(\.version) == [version])
    }
}
