import Foundation
import Logging
import Synchronization

/// Finds, loads, hot-swaps and retires plugin instances.
///
/// Each loaded instance is registered under a name. `instance(named:)` hands out a strong
/// reference, so a call in flight keeps its instance (and library) alive even while a reload
/// swaps a new one in; the old instance is destroyed and its library closed when the last
/// such reference is released.
public final class PluginHost: Sendable {
    /// A loaded instance as listed by the host.
    public struct Status: Sendable {
        public var name: String
        public var library: String
        public var generation: UInt64
        public var description: PluginDescription
        /// Where it runs.
        public var isolation: PluginIsolation
        /// Whether it takes calls now.
        public var readiness: PluginReadiness
        /// The dynamic batching it serves with (resolved), or nil.
        public var batching: DynamicBatchingConfiguration?

        public init(name: String, library: String, generation: UInt64, description: PluginDescription,
                    isolation: PluginIsolation = .inProcess, readiness: PluginReadiness = .serving,
                    batching: DynamicBatchingConfiguration? = nil) {
            self.name = name
            self.library = library
            self.generation = generation
            self.description = description
            self.isolation = isolation
            self.readiness = readiness
            self.batching = batching
        }
    }

    /// Directories searched for plugin libraries, in order.
    public let searchDirectories: [String]
    private let cacheDirectory: String
    private let logger: Logger
    private let instances = Mutex<[String: PluginInstance]>([:])
    private let generations = Mutex<[String: UInt64]>([:])
    /// Serializes load/unload/reload so two reloads of one name cannot interleave.
    private let adminLock = Mutex<Void>(())

    /// The `curec-plugin-worker` executable isolated instances run in.
    public let workerExecutable: String

    /// Creates a host. `searchDirectories` are the operator's plugin directories, the only
    /// places libraries load from; `cacheDirectory` holds private copies of loaded libraries
    /// (emptied here, so copies left by a crash do not pile up). `workerExecutable` is the
    /// worker for `isolation: process` instances (default: `curec-plugin-worker` beside this
    /// process's executable); it is never taken from a client.
    public init(searchDirectories: [String], cacheDirectory: String, logger: Logger, workerExecutable: String? = nil) {
        self.searchDirectories = searchDirectories
        self.cacheDirectory = cacheDirectory
        self.logger = logger
        self.workerExecutable = workerExecutable ?? Self.defaultWorkerExecutable()
        try? FileManager.default.removeItem(atPath: cacheDirectory)
    }

    /// `curec-plugin-worker` in the folder of the running executable.
    static func defaultWorkerExecutable() -> String {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return ((executable as NSString).deletingLastPathComponent as NSString).appendingPathComponent("curec-plugin-worker")
    }

    /// Told when an instance's readiness changes: (name, readiness). Only the instance
    /// currently registered under a name reports; a retired generation's worker does not.
    private let readinessObserver = Mutex<(@Sendable (String, PluginReadiness) -> Void)?>(nil)

    /// Sets the readiness observer and tells it the readiness of every loaded instance.
    public func observeReadiness(_ observer: @escaping @Sendable (String, PluginReadiness) -> Void) {
        readinessObserver.withLock { $0 = observer }
        for status in list() { observer(status.name, status.readiness) }
    }

    private func report(_ name: String, _ readiness: PluginReadiness) {
        readinessObserver.withLock { $0 }?(name, readiness)
    }

    /// Resolves a library name to a regular file inside one of the plugin directories.
    ///
    /// `library` is a plain file name as ``availableLibraries()`` lists it (`libCURecBPR.so`)
    /// or a library name (`CURecBPR` finds `libCURecBPR.so` or `CURecBPR.so`); never a path.
    /// Each candidate is resolved with realpath and accepted only when the result is a regular
    /// file that stays inside the (resolved) directory, so neither `..` nor a symbolic link
    /// leads out. Nothing is read, copied or opened before this check passes. A refusal says
    /// the same whether or not something exists elsewhere.
    public func resolve(library: String) throws(PluginHostError) -> String {
        guard PluginLibraryName.isPlain(library) else { throw .invalidLibraryName(library) }
        let candidates = [library, "lib\(library).so", "\(library).so"]
        for directory in searchDirectories {
            guard let root = PluginDirectory.realPath(directory) else { continue }
            for candidate in candidates where PluginLibraryName.isPlain(candidate) {
                if let path = PluginDirectory.regularFile(named: candidate, inside: root) { return path }
            }
        }
        logger.debug("plugin library not found", metadata: [
            "library": "\(library.prefix(64))", "directories": "\(searchDirectories.joined(separator: ":"))"])
        throw .libraryNotFound(name: library)
    }

    /// File names of the shared libraries in the plugin directories that export the CURec
    /// plugin ABI, as ``resolve(library:)`` accepts them. No library is opened: each regular
    /// `.so` file is checked for the ELF magic and the name of the ABI version symbol.
    public func availableLibraries() -> [String] {
        var found: [String] = []
        for directory in searchDirectories {
            guard let root = PluginDirectory.realPath(directory),
                  let names = try? FileManager.default.contentsOfDirectory(atPath: root) else { continue }
            for name in names.sorted() where name.hasSuffix(".so") && PluginLibraryName.isPlain(name) && !found.contains(name) {
                guard let path = PluginDirectory.regularFile(named: name, inside: root) else { continue }
                if looksLikePlugin(path: path) { found.append(name) }
            }
        }
        return found
    }

    /// Creates an instance of `library` with `config` without registering it.
    ///
    /// `prepare` runs before the instance is returned (train it or load an artifact). With
    /// `isolation: .process` the library is opened only in the instance's worker process.
    /// `batching` puts a batch queue in front of its batched entry point (refused when the
    /// plugin declares none); nil takes what ``configureBatching(name:_:)`` set for `name`.
    public func makeInstance(name: String, library: String, config: [UInt8], isolation: PluginIsolation = .inProcess,
                             batching: DynamicBatchingConfiguration? = nil,
                             prepare: (PluginInstance) throws -> Void = { _ in }) throws -> PluginInstance {
        let path = try resolve(library: library)
        let generation = generations.withLock { $0[name, default: 0] + 1 }
        let backend: any PluginBackend
        switch isolation {
        case .inProcess:
            backend = try InProcessPlugin(name: name, library: try openLibrary(at: path), config: config)
        case .process(let limits):
            guard FileManager.default.isExecutableFile(atPath: workerExecutable) else {
                throw PluginHostError.host("the plugin worker \(workerExecutable) is missing or not executable; "
                                           + "install curec-plugin-worker beside curecd to load instances with isolation: process")
            }
            let launch = WorkerSupervisor.Launch(executable: workerExecutable, libraryPath: path,
                                                 cacheDirectory: cacheDirectory, config: config, limits: limits)
            backend = try IsolatedPlugin(name: name, launch: launch) { [weak self] readiness in
                self?.workerReadinessChanged(name: name, generation: generation, readiness)
            }
        }
        let instance = try PluginInstance(name: name, generation: generation, libraryPath: path, isolation: isolation,
                                          backend: backend, batching: batching ?? batchings.withLock { $0[name] })
        try prepare(instance)
        return instance
    }

    /// Forwards a worker's readiness when its instance is the one serving the name.
    private func workerReadinessChanged(name: String, generation: UInt64, _ readiness: PluginReadiness) {
        guard instances.withLock({ $0[name]?.generation }) == generation else { return }
        switch readiness {
        case .serving: logger.notice("plugin worker serving again", metadata: ["name": "\(name)"])
        case .restarting(let reason): logger.warning("plugin worker down", metadata: ["name": "\(name)", "reason": "\(reason)"])
        case .failed(let reason): logger.error("plugin worker marked failed", metadata: ["name": "\(name)", "reason": "\(reason)"])
        }
        report(name, readiness)
    }

    /// Loads and registers a new instance; fails if the name is taken.
    @discardableResult
    public func load(name: String, library: String, config: [UInt8], isolation: PluginIsolation = .inProcess,
                     batching: DynamicBatchingConfiguration? = nil,
                     prepare: (PluginInstance) throws -> Void = { _ in }) throws -> PluginInstance {
        try adminLock.withLock { _ in
            if instances.withLock({ $0[name] }) != nil { throw PluginHostError.instanceExists(name) }
            let instance = try makeInstance(name: name, library: library, config: config, isolation: isolation,
                                            batching: batching, prepare: prepare)
            if let batching { batchings.withLock { $0[name] = batching } }
            generations.withLock { $0[name] = instance.generation }
            instances.withLock { $0[name] = instance }
            configs.withLock { $0[name] = config }
            libraryNames.withLock { $0[name] = library }
            logger.info("plugin loaded", metadata: [
                "name": "\(name)", "library": "\(instance.libraryPath)", "generation": "\(instance.generation)",
                "isolation": "\(instance.isolation.name)"])
            report(name, instance.readiness)
            return instance
        }
    }

    /// The library opened for each resolved path, with the build it was opened from.
    ///
    /// A library stays mapped for the life of the process once opened (see
    /// ``PluginLibrary``), so opening an unchanged file again for every load, reload or
    /// train job would map one more copy each time. The same build is opened once and shared
    /// by every instance made from it (the plugin ABI keeps all state in the instance); a new
    /// build at the same path is opened from a fresh copy and replaces the entry.
    private let opened = Mutex<[String: (build: PluginDirectory.BuildIdentity, library: PluginLibrary)]>([:])

    /// The open library for the build of `path` now on disk, opening it when it is new.
    private func openLibrary(at path: String) throws(PluginHostError) -> PluginLibrary {
        let result: Result<PluginLibrary, PluginHostError> = opened.withLock { opened in
            let before = PluginDirectory.buildIdentity(of: path)
            if let before, let known = opened[path], known.build == before { return .success(known.library) }
            let library: PluginLibrary
            do throws(PluginHostError) {
                library = try PluginLibrary(path: path, cacheDirectory: cacheDirectory)
            } catch {
                return .failure(error)
            }
            // Kept only when the file did not change while it was copied; otherwise the next
            // load opens it again rather than trust a copy of an unknown build.
            if let before, PluginDirectory.buildIdentity(of: path) == before {
                opened[path] = (before, library)
            } else {
                opened[path] = nil
            }
            return .success(library)
        }
        return try result.get()
    }

    /// How many distinct library builds this host has opened and still shares.
    var openLibraryCount: Int { opened.withLock { $0.count } }

    private let configs = Mutex<[String: [UInt8]]>([:])
    /// What ``availableLibraries()`` found in each file, by path, with the file's identity
    /// (size and modification time) then: List runs on the I/O loop, so files are read again
    /// only when they change.
    private let probed = Mutex<[String: (identity: PluginDirectory.FileIdentity, isPlugin: Bool)]>([:])

    private func looksLikePlugin(path: String) -> Bool {
        guard let identity = PluginDirectory.identity(of: path) else { return false }
        if let known = probed.withLock({ $0[path] }), known.identity == identity { return known.isPlugin }
        let isPlugin = PluginDirectory.looksLikePlugin(path: path)
        probed.withLock { $0[path] = (identity, isPlugin) }
        return isPlugin
    }
    /// The library name each instance was loaded from, as given (a reload without a library
    /// resolves it again, so a rebuilt file in the plugin directories is picked up).
    private let libraryNames = Mutex<[String: String]>([:])

    /// Brings up a new instance beside the serving one and switches to it atomically.
    ///
    /// `library` nil reuses the current library path (re-read from disk); `config` nil reuses
    /// the current config; `isolation` nil keeps the current one. The replacement keeps the
    /// current instance's dynamic batching. If anything fails the old instance keeps serving
    /// and the error is thrown. Calls in flight finish on the old instance, which is destroyed
    /// after them (an isolated one's worker then exits).
    @discardableResult
    public func reload(name: String, library: String? = nil, config: [UInt8]? = nil, isolation: PluginIsolation? = nil,
                       prepare: (PluginInstance) throws -> Void = { _ in }) throws -> PluginInstance {
        try adminLock.withLock { _ in
            guard let current = instances.withLock({ $0[name] }) else { throw PluginHostError.instanceNotFound(name) }
            let libraryName = library ?? libraryNames.withLock { $0[name] } ?? (current.libraryPath as NSString).lastPathComponent
            let newConfig = config ?? configs.withLock { $0[name] ?? [] }
            let replacement = try makeInstance(name: name, library: libraryName, config: newConfig,
                                               isolation: isolation ?? current.isolation,
                                               batching: current.requestedBatching, prepare: prepare)
            generations.withLock { $0[name] = replacement.generation }
            instances.withLock { $0[name] = replacement }
            configs.withLock { $0[name] = newConfig }
            libraryNames.withLock { $0[name] = libraryName }
            logger.info("plugin reloaded", metadata: [
                "name": "\(name)", "library": "\(replacement.libraryPath)", "generation": "\(replacement.generation)"])
            report(name, replacement.readiness)
            return replacement
        }
    }

    /// Serves `instance` (made by ``makeInstance(name:library:config:prepare:)`` and prepared,
    /// e.g. trained by a job) under its name, replacing the instance serving it if any (that
    /// one is destroyed after its calls in flight). `library` is the name it was made from.
    public func serve(_ instance: PluginInstance, library: String, config: [UInt8]) {
        adminLock.withLock { _ in
            let name = instance.name
            generations.withLock { $0[name] = max($0[name, default: 0], instance.generation) }
            instances.withLock { $0[name] = instance }
            configs.withLock { $0[name] = config }
            libraryNames.withLock { $0[name] = library }
            logger.info("plugin serving", metadata: [
                "name": "\(name)", "library": "\(instance.libraryPath)", "generation": "\(instance.generation)"])
            report(name, instance.readiness)
        }
    }

    /// Unregisters an instance; it is destroyed once calls in flight release it.
    public func unload(name: String) throws {
        try adminLock.withLock { _ in
            guard instances.withLock({ $0.removeValue(forKey: name) }) != nil else {
                throw PluginHostError.instanceNotFound(name)
            }
            _ = configs.withLock { $0.removeValue(forKey: name) }
            _ = libraryNames.withLock { $0.removeValue(forKey: name) }
            _ = batchings.withLock { $0.removeValue(forKey: name) }
            logger.info("plugin unloaded", metadata: ["name": "\(name)"])
            report(name, .failed(reason: "unloaded"))
        }
    }

    /// The dynamic batching instances named `name` are made with from now on when none is
    /// given (a `train` job that serves a client's Load, a reload); nil forgets it.
    public func configureBatching(name: String, _ batching: DynamicBatchingConfiguration?) {
        batchings.withLock { $0[name] = batching }
    }

    private let batchings = Mutex<[String: DynamicBatchingConfiguration]>([:])

    /// The library name the instance named `name` was loaded from, as given.
    public func libraryName(of name: String) -> String? {
        libraryNames.withLock { $0[name] }
    }

    /// The config the instance named `name` was created with.
    public func config(of name: String) -> [UInt8]? {
        configs.withLock { $0[name] }
    }

    /// The serving instance named `name`, if any. Cheap: one lock and a dictionary lookup.
    public func instance(named name: String) -> PluginInstance? {
        instances.withLock { $0[name] }
    }

    /// Every loaded instance.
    public func list() -> [Status] {
        let current = instances.withLock { Array($0.values) }
        return current.sorted { $0.name < $1.name }.map {
            Status(name: $0.name, library: $0.libraryPath, generation: $0.generation, description: $0.describe(),
                   isolation: $0.isolation, readiness: $0.readiness, batching: $0.batching)
        }
    }
}
