import Foundation
import Logging
import Testing
@testable import CURecPluginHost

/// The fixture libraries of Package.swift (Tests/PluginFixtures), built by `swift build` into
/// the directory of the test binary; CUREC_TEST_PLUGIN_DIR overrides it.
enum Fixtures {
    static let directory: String = {
        if let directory = ProcessInfo.processInfo.environment["CUREC_TEST_PLUGIN_DIR"] { return directory }
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return executable.deletingLastPathComponent().path
    }()
    static var recommender: String { directory + "/libCURecTestRecommender.so" }
    static var noEntryPoint: String { directory + "/libCURecTestNoEntryPoint.so" }
    static var wrongABI: String { directory + "/libCURecTestWrongABI.so" }
    static var built: Bool {
        [recommender, noEntryPoint, wrongABI].allSatisfy { FileManager.default.fileExists(atPath: $0) }
    }

    /// A fresh directory under the temporary directory.
    static func scratch(_ name: String) -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("curec-\(name)-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Items 0..<4 with 1, 3, 0 and 2 interactions.
    static let data = PluginTrainingData(
        userCount: 2, itemCount: 4,
        users: [0, 0, 0, 1, 1, 1], items: [0, 1, 1, 1, 3, 3],
        ratings: [1, 1, 1, 1, 1, 1], timestamps: [1, 2, 3, 4, 5, 6])

    static func config(version: String = "1.0.0", offset: Float = 0, refuse: Bool = false, marker: String? = nil) -> [UInt8] {
        var fields = ["\"version\": \"\(version)\"", "\"offset\": \(offset)", "\"refuse\": \(refuse)"]
        if let marker { fields.append("\"destroyed_marker\": \"\(marker)\"") }
        return Array("{\(fields.joined(separator: ", "))}".utf8)
    }
}

private func makeHost(searching directories: [String] = [Fixtures.directory]) -> PluginHost {
    PluginHost(searchDirectories: directories, cacheDirectory: Fixtures.scratch("plugin-cache"), logger: Logger(label: "test"))
}

private func scores(_ instance: PluginInstance, _ candidates: [UInt32]) throws -> [Float] {
    var out = [Float](repeating: -1, count: candidates.count)
    try candidates.withUnsafeBufferPointer { candidates in
        try out.withUnsafeMutableBufferPointer { buffer in
            try instance.scoreRecommender(user: 0, history: [], candidates: candidates, scores: buffer)
        }
    }
    return out
}

/// The error `body` throws, as a PluginHostError (nil, recorded as an issue, otherwise).
func hostError(_ body: () throws -> Void) -> PluginHostError? {
    do {
        try body()
        Issue.record("expected a PluginHostError")
    } catch let error as PluginHostError {
        return error
    } catch {
        Issue.record("expected a PluginHostError, got \(error)")
    }
    return nil
}

@Suite(.enabled(if: Fixtures.built, "the fixture plugin libraries are missing: run swift build"))
struct PluginHostTests {
    @Test func loadsTheSwiftTestPluginDescribesTrainsScoresSavesAndLoads() throws {
        let host = makeHost()
        let instance = try host.load(name: "counting", library: "CURecTestRecommender", config: Fixtures.config(version: "1.2.3", offset: 0.5)) {
            try $0.train(Fixtures.data)
        }
        #expect(instance.libraryPath == Fixtures.recommender)
        #expect(instance.generation == 1)
        #expect(instance.servedBy == "counting@1.2.3#1")
        #expect(instance.kind == .recommender)
        let description = instance.describe()
        #expect(description.pluginName == "counting" && description.pluginVersion == "1.2.3")
        #expect(description.kind == .recommender && description.isTrained)
        #expect(try scores(instance, [3, 2, 1, 0]) == [2.5, 0.5, 3.5, 1.5])
        #expect(host.list().map(\.name) == ["counting"])
        #expect(host.config(of: "counting") == Fixtures.config(version: "1.2.3", offset: 0.5))

        // What one instance saves, a fresh one of the same library loads.
        let artifact = Fixtures.scratch("artifact")
        try instance.save(to: artifact)
        let restored = try host.makeInstance(name: "restored", library: "libCURecTestRecommender.so", config: []) {
            try $0.load(from: artifact)
        }
        #expect(try scores(restored, [0, 1, 2, 3]) == [1, 3, 0, 2])
    }

    @Test func progressReachesTheHostAndCancellationStopsTraining() throws {
        let host = makeHost()
        let instance = try host.makeInstance(name: "counting", library: "CURecTestRecommender", config: [])
        var steps: [UInt64] = []
        try instance.train(Fixtures.data, progress: { step, total, metrics in
            #expect(total == 6 && metrics.hasPrefix("{\"items\":"))
            steps.append(step)
        })
        #expect(steps == [1, 2, 3, 4, 5, 6])
        let error = hostError { try instance.train(Fixtures.data, isCancelled: { true }) }
        #expect(error?.isCancellation == true)
        #expect(error?.description.contains("training was cancelled") == true)
    }

    @Test func pluginErrorsKeepTheirStatusAndName() throws {
        let host = makeHost()
        let untrained = try host.makeInstance(name: "untrained", library: "CURecTestRecommender", config: [])
        let notTrained = hostError { _ = try scores(untrained, [0]) }
        #expect(pluginCode(notTrained) == 9)
        #expect(notTrained?.description == "plugin 'untrained' score failed: counting is not trained")
        let refused = hostError { _ = try host.makeInstance(name: "refused", library: "CURecTestRecommender", config: Fixtures.config(refuse: true)) }
        #expect(pluginCode(refused) == 3)
        #expect(refused?.description.contains("asked to refuse its config") == true)
        let badJSON = hostError { _ = try host.makeInstance(name: "bad", library: "CURecTestRecommender", config: Array("{".utf8)) }
        #expect(pluginCode(badJSON) == 3)
        // A recommender is not a reward model, although the Swift library exports both functions.
        let wrongKind = hostError { _ = try untrained.scoreReward([.init(user: 0, item: 0, embedding: [1])]) }
        guard case .wrongKind(let name, let expected, _) = wrongKind else {
            Issue.record("expected wrongKind, got \(String(describing: wrongKind))")
            return
        }
        #expect(name == "untrained" && expected == "reward model")
    }

    @Test func aLibraryWithoutTheEntryPointIsRefused() {
        let error = hostError { _ = try makeHost().load(name: "none", library: "libCURecTestNoEntryPoint.so", config: []) }
        guard case .missingSymbol(let path, let symbol) = error else {
            Issue.record("expected missingSymbol, got \(String(describing: error))")
            return
        }
        #expect(path == Fixtures.noEntryPoint && symbol == "curec_plugin_abi_version")
    }

    @Test func aLibraryForAnotherABIMajorIsRefusedBeforeAnyOtherCall() {
        let host = makeHost()
        let error = hostError { _ = try host.load(name: "future", library: "CURecTestWrongABI", config: []) }
        guard case .incompatibleABI(_, let pluginMajor, let pluginMinor, let hostMajor, _) = error else {
            Issue.record("expected incompatibleABI, got \(String(describing: error))")
            return
        }
        #expect(pluginMajor == PluginLibrary.hostMajor + 1 && pluginMinor == 0 && hostMajor == PluginLibrary.hostMajor)
        #expect(error?.description.contains("major versions must match") == true)
        #expect(host.instance(named: "future") == nil)
    }

    @Test func filesThatAreNotPluginsAreRefusedAndNotListed() throws {
        let directory = Fixtures.scratch("plugin-dir")
        let text = directory + "/libtext.so"
        try "not an ELF file\n".write(toFile: text, atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: Fixtures.recommender, toPath: directory + "/libcounting.so")
        try FileManager.default.copyItem(atPath: Fixtures.noEntryPoint, toPath: directory + "/libnothing.so")
        let host = makeHost(searching: [directory])
        #expect(host.availableLibraries() == ["libcounting.so"])
        let notLibrary = hostError { _ = try host.load(name: "text", library: "text", config: []) }
        guard case .notASharedLibrary(let path, _) = notLibrary else {
            Issue.record("expected notASharedLibrary, got \(String(describing: notLibrary))")
            return
        }
        #expect(path == text)
        let missing = hostError { _ = try host.load(name: "ghost", library: "ghost", config: []) }
        if case .libraryNotFound = missing {} else { Issue.record("expected libraryNotFound, got \(String(describing: missing))") }
        #expect(missing?.description.contains("'ghost' not found in the plugin directories") == true)
        #expect(missing?.description.contains(directory) == false)
        #expect(try host.resolve(library: "counting") == directory + "/libcounting.so")
    }

    @Test func librariesLoadOnlyFromThePluginDirectoriesByPlainName() throws {
        let directory = Fixtures.scratch("plugin-dir")
        let outside = Fixtures.scratch("outside")
        try FileManager.default.copyItem(atPath: Fixtures.recommender, toPath: outside + "/libevil.so")
        try FileManager.default.createSymbolicLink(atPath: directory + "/liblink.so", withDestinationPath: outside + "/libevil.so")
        try FileManager.default.createDirectory(atPath: directory + "/libdir.so", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Fixtures.recommender, toPath: directory + "/libgood.so")
        let cache = Fixtures.scratch("plugin-cache")
        let host = PluginHost(searchDirectories: [directory], cacheDirectory: cache, logger: Logger(label: "test"))

        // Paths and dot names are refused as names, whether or not the file exists.
        for name in [outside + "/libevil.so", "/no/such/lib.so", "../" + (outside as NSString).lastPathComponent + "/libevil.so",
                     "..", ".", ".hidden.so", "", String(repeating: "a", count: 300)] {
            let error = hostError { _ = try host.load(name: "x", library: name, config: []) }
            if case .invalidLibraryName = error {} else { Issue.record("\(name.prefix(40)): expected invalidLibraryName, got \(String(describing: error))") }
        }
        // A link out of the directory and a directory are "not found", like a missing file.
        for name in ["liblink.so", "link", "libdir.so", "dir", "libmissing.so"] {
            let error = hostError { _ = try host.load(name: "x", library: name, config: []) }
            if case .libraryNotFound = error {} else { Issue.record("\(name): expected libraryNotFound, got \(String(describing: error))") }
        }
        // Nothing was copied for any refusal; the good one loads.
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: cache)) ?? []).isEmpty)
        #expect(host.availableLibraries() == ["libgood.so"])
        let loaded = try host.load(name: "good", library: "libgood.so", config: [])
        #expect(loaded.libraryPath == directory + "/libgood.so")
        #expect(host.libraryName(of: "good") == "libgood.so")
    }

    @Test func anInstanceLivesUntilItsLastCallerReleasesIt() throws {
        let host = makeHost()
        let marker = Fixtures.scratch("lifecycle") + "/destroyed"
        var held: PluginInstance? = try host.load(name: "counting", library: "CURecTestRecommender",
                                                  config: Fixtures.config(marker: marker)) { try $0.train(Fixtures.data) }
        #expect(throws: PluginHostError.self) { try host.load(name: "counting", library: "CURecTestRecommender", config: []) }
        try host.unload(name: "counting")
        #expect(host.instance(named: "counting") == nil && host.list().isEmpty)
        #expect(throws: PluginHostError.self) { try host.unload(name: "counting") }
        // Unloaded, but a call in flight still holds it: it keeps working and is not destroyed.
        #expect(!FileManager.default.fileExists(atPath: marker))
        if let instance = held { #expect(try scores(instance, [1]) == [3]) }
        held = nil
        #expect(FileManager.default.fileExists(atPath: marker))
        // The name is free again.
        let again = try host.load(name: "counting", library: "CURecTestRecommender", config: [])
        #expect(again.generation == 2)
    }

    @Test func hotReloadSwitchesAtomicallyAndKeepsTheOldInstanceOnFailure() throws {
        let host = makeHost()
        let markers = Fixtures.scratch("reload")
        var inFlight: PluginInstance? = try host.load(name: "counting", library: "CURecTestRecommender",
                                                      config: Fixtures.config(version: "1.0.0", marker: markers + "/v1")) {
            try $0.train(Fixtures.data)
        }

        // A config the plugin refuses: the old instance keeps serving, generation unchanged.
        #expect(throws: PluginHostError.self) {
            try host.reload(name: "counting", config: Fixtures.config(refuse: true)) { try $0.train(Fixtures.data) }
        }
        #expect(host.instance(named: "counting")?.servedBy == "counting@1.0.0#1")

        // A new config: generation 2 serves new calls; the call in flight finishes on generation 1.
        let second = try host.reload(name: "counting", config: Fixtures.config(version: "2.0.0", offset: 10, marker: markers + "/v2")) {
            try $0.train(Fixtures.data)
        }
        #expect(second.generation == 2 && second.servedBy == "counting@2.0.0#2")
        #expect(host.instance(named: "counting") === second)
        #expect(try scores(second, [1]) == [13])
        if let old = inFlight { #expect(try scores(old, [1]) == [3] && old.servedBy == "counting@1.0.0#1") }
        #expect(!FileManager.default.fileExists(atPath: markers + "/v1"))
        inFlight = nil
        #expect(FileManager.default.fileExists(atPath: markers + "/v1"))
        #expect(host.list().map(\.generation) == [2])
        #expect(host.config(of: "counting") == Fixtures.config(version: "2.0.0", offset: 10, marker: markers + "/v2"))
    }

    @Test func reloadReadsTheLibraryFromDiskAgain() throws {
        // The serving file is replaced by another build, as a deployment would do.
        let directory = Fixtures.scratch("rebuilt")
        let path = directory + "/libswapped.so"
        try FileManager.default.copyItem(atPath: Fixtures.recommender, toPath: path)
        let host = makeHost(searching: [directory])
        try host.load(name: "swapped", library: "libswapped.so", config: []) { try $0.train(Fixtures.data) }

        // An incompatible build: refused, the loaded one keeps serving.
        try FileManager.default.removeItem(atPath: path)
        try FileManager.default.copyItem(atPath: Fixtures.wrongABI, toPath: path)
        let error = hostError { try host.reload(name: "swapped") { try $0.train(Fixtures.data) } }
        if case .incompatibleABI = error {} else { Issue.record("expected incompatibleABI, got \(String(describing: error))") }
        let serving = try #require(host.instance(named: "swapped"))
        #expect(serving.generation == 1)
        #expect(try scores(serving, [3]) == [2])

        // A good build again: loaded beside the old mapping and switched to.
        try FileManager.default.removeItem(atPath: path)
        try FileManager.default.copyItem(atPath: Fixtures.recommender, toPath: path)
        let reloaded = try host.reload(name: "swapped") { try $0.train(Fixtures.data) }
        #expect(reloaded.generation == 2 && reloaded.libraryPath == path)
        #expect(try scores(reloaded, [3]) == [2])
    }

    @Test func anUnchangedLibraryIsMappedOnceAcrossLoadsReloadsAndJobs() throws {
        let directory = Fixtures.scratch("mapped-once")
        let path = directory + "/libshared.so"
        try FileManager.default.copyItem(atPath: Fixtures.recommender, toPath: path)
        let cache = Fixtures.scratch("mapped-once-cache")
        let host = PluginHost(searchDirectories: [directory], cacheDirectory: cache, logger: Logger(label: "test"))

        try host.load(name: "shared", library: "libshared.so", config: []) { try $0.train(Fixtures.data) }
        let baseline = mappedCopies(under: cache)
        #expect(baseline.count == 1)
        for round in 0..<20 {
            try host.reload(name: "shared") { try $0.train(Fixtures.data) }
            // What a train job does: a separate instance, prepared, then served.
            let trained = try host.makeInstance(name: "shared", library: "libshared.so", config: []) { try $0.train(Fixtures.data) }
            host.serve(trained, library: "libshared.so", config: [])
            try host.load(name: "extra-\(round)", library: "libshared.so", config: [])
            try host.unload(name: "extra-\(round)")
        }
        #expect(mappedCopies(under: cache) == baseline)
        #expect(host.openLibraryCount == 1)
        let serving = try #require(host.instance(named: "shared"))
        #expect(try scores(serving, [3]) == [2])

        // A new build at the same path (replaced, as a deployment does) is copied and mapped once more.
        try FileManager.default.removeItem(atPath: path)
        try FileManager.default.copyItem(atPath: Fixtures.recommender, toPath: path)
        try host.reload(name: "shared") { try $0.train(Fixtures.data) }
        try host.reload(name: "shared") { try $0.train(Fixtures.data) }
        let afterRebuild = mappedCopies(under: cache)
        #expect(afterRebuild.count == 2 && afterRebuild.isSuperset(of: baseline))
        #expect(host.openLibraryCount == 1)

        // Written in place (same inode, new contents): a new build too.
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.write(contentsOf: try Data(contentsOf: URL(fileURLWithPath: Fixtures.recommender)))
        try handle.close()
        try host.reload(name: "shared") { try $0.train(Fixtures.data) }
        #expect(mappedCopies(under: cache).count == 3)
    }
}

/// The distinct files under `directory` this process has mapped (from /proc/self/maps).
private func mappedCopies(under directory: String) -> Set<String> {
    // Read to the end: /proc files report a size of 0, so a read by size gets nothing.
    guard let handle = FileHandle(forReadingAtPath: "/proc/self/maps"),
          let bytes = try? handle.readToEnd(), let maps = String(data: bytes, encoding: .utf8) else {
        Issue.record("cannot read /proc/self/maps")
        return []
    }
    try? handle.close()
    var files: Set<String> = []
    for line in maps.split(separator: "\n") {
        guard let start = line.firstIndex(of: "/") else { continue }
        var file = String(line[start...])
        // A copy that was replaced is deleted from disk but stays mapped.
        if file.hasSuffix(" (deleted)") { file.removeLast(" (deleted)".count) }
        if file.hasPrefix(directory + "/") { files.insert(file) }
    }
    return files
}

/// The CUREC_STATUS_* code a plugin reported, nil for errors of the host itself.
private func pluginCode(_ error: PluginHostError?) -> Int32? {
    if case .plugin(let code, _, _, _) = error { return code }
    return nil
}
