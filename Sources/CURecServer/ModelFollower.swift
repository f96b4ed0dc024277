import CURecJobs
import CURecPluginHost
import Foundation
import Logging
import Synchronization

/// Keeps a daemon that shares its model registry with others (PostgreSQL) serving the newest
/// version of every plugin model published to be served, whichever daemon published it.
///
/// It acts on the registry's announcements (a NOTIFY per recorded version) and, as a safety
/// net for announcements lost with a connection, checks the registry at a fixed pace. A
/// version another daemon published is loaded only after its files are verified against the
/// row (inside the models directory, sizes, SHA-256), through the same hot swap as a Reload:
/// calls in flight finish on the instance serving before. A version that fails verification
/// or loading is refused (logged, remembered) and the instance serving before keeps serving.
/// The library is taken from the manifest as a file name only and resolved in the plugin
/// directories, so nothing in the database names a file the daemon would execute.
public final class ModelFollower: Sendable {
    /// What a check did with a version.
    public enum Outcome: Sendable, Equatable {
        /// Now serving `name` from version `version`.
        case loaded(name: String, version: Int)
        /// Version `version` of `name` was not loaded, for `reason`; what served before still does.
        case refused(name: String, version: Int, reason: String)
    }

    private struct State {
        /// The newest version of each name this daemon serves from (or published itself).
        var applied: [String: Int] = [:]
        /// The last refused version of each name, with the reason.
        var refused: [String: (version: Int, reason: String)] = [:]
    }

    private let registry: any ModelRegistry
    private let artifacts: ArtifactStore
    private let plugins: PluginHost
    private let publisher: String
    private let logger: Logger
    private let state = Mutex(State())
    /// Held for a whole check, so two never load the same version at once.
    private let checking = Mutex(())
    /// Wakes the following thread: an announcement, or a stop.
    private let wakeUp = NSCondition()
    private let control = Mutex<(stopped: Bool, announced: Bool)>((false, false))

    /// `artifacts` must record into `registration` (its models collection).
    public init(registration: ModelRegistration, artifacts: ArtifactStore, plugins: PluginHost, logger: Logger) {
        registry = registration.registry
        publisher = registration.publisher
        self.artifacts = artifacts
        self.plugins = plugins
        self.logger = logger
    }

    /// Takes what the daemon serves now as current: each name it already serves is at the
    /// newest version published to be served (it loaded its state at start). Names it does not
    /// serve are loaded by the next check. Call once the start-up loading is done.
    public func adoptServing() {
        let newest: [ModelVersion]
        do {
            newest = try registry.newestServed()
        } catch {
            logger.warning("the model registry could not be read; the first check loads what it lists", metadata: ["error": "\(error)"])
            return
        }
        state.withLock { state in
            for version in newest where plugins.instance(named: version.name) != nil {
                state.applied[version.name] = version.version
            }
        }
    }

    /// Follows announcements, and checks every `interval` seconds, on a thread of its own;
    /// the first check runs at once.
    public func start(checkEvery interval: TimeInterval) {
        registry.onChange { [weak self] change in
            if case .published(let version) = change, !version.serve { return }
            self?.wake(stopping: false)
        }
        let thread = Thread { [weak self] in
            while let follower = self, follower.followOnce(interval: interval) {}
        }
        thread.name = "curec-model-follower"
        thread.start()
    }

    /// Stops following; a check under way finishes.
    public func stop() {
        registry.onChange { _ in }
        wake(stopping: true)
    }

    private func wake(stopping: Bool) {
        control.withLock { control in
            if stopping { control.stopped = true } else { control.announced = true }
        }
        wakeUp.lock()
        wakeUp.broadcast()
        wakeUp.unlock()
    }

    /// One check, then a wait for an announcement, the next check's time or a stop; false
    /// once stopped.
    private func followOnce(interval: TimeInterval) -> Bool {
        if control.withLock({ $0.stopped }) { return false }
        control.withLock { $0.announced = false }
        catchUp()
        let deadline = Date().addingTimeInterval(max(0.1, interval))
        wakeUp.lock()
        defer { wakeUp.unlock() }
        while !control.withLock({ $0.stopped || $0.announced }) {
            if !wakeUp.wait(until: deadline) { break }
        }
        return !control.withLock { $0.stopped }
    }

    /// The reason the newest refused version of `name` was refused, if any.
    public func refusal(of name: String) -> (version: Int, reason: String)? {
        state.withLock { $0.refused[name] }
    }

    /// Reads the newest version of each name published to be served and loads those newer
    /// than what serves here (refused versions are not tried again). Blocking: call it off the
    /// I/O loop.
    @discardableResult
    public func catchUp() -> [Outcome] {
        checking.withLock { _ in
            let newest: [ModelVersion]
            do {
                newest = try registry.newestServed()
            } catch {
                logger.warning("the model registry could not be read; trying again at the next check", metadata: ["error": "\(error)"])
                return []
            }
            var outcomes: [Outcome] = []
            for version in newest {
                let known = state.withLock { state -> Bool in
                    if state.applied[version.name, default: 0] >= version.version { return true }
                    return state.refused[version.name]?.version == version.version
                }
                if known { continue }
                if version.publisher == publisher {
                    // This daemon published it, and served it itself when it did.
                    state.withLock { $0.applied[version.name] = version.version }
                    continue
                }
                do {
                    if try serve(version) {
                        state.withLock { $0.applied[version.name] = version.version }
                        outcomes.append(.loaded(name: version.name, version: version.version))
                        logger.notice("serving a model version another daemon published", metadata: [
                            "name": "\(version.name)", "version": "\(version.label)", "publisher": "\(version.publisher)"])
                    } else {
                        state.withLock { $0.applied[version.name] = version.version }
                    }
                } catch {
                    let reason = "\(error)"
                    state.withLock { $0.refused[version.name] = (version.version, reason) }
                    outcomes.append(.refused(name: version.name, version: version.version, reason: reason))
                    logger.error("model version refused; the version served before keeps serving",
                                 metadata: ["name": "\(version.name.prefix(64))", "version": "\(version.version)", "reason": "\(reason)"])
                }
            }
            return outcomes
        }
    }

    /// Verifies and serves `version`; false when it is not a plugin state (language models,
    /// reason tables and reports are read from the models directory when used).
    private func serve(_ version: ModelVersion) throws(ModelVerificationError) -> Bool {
        let manifest: ArtifactManifest
        do {
            manifest = try ArtifactStore.manifestDecoder.decode(ArtifactManifest.self, from: Data(version.manifest.utf8))
        } catch {
            throw ModelVerificationError("models/\(ResourceName.quoted(version.name))/v\(version.version): its recorded manifest is not readable")
        }
        guard manifest.kind == .pluginState else { return false }
        let label = "models/\(ResourceName.quoted(version.name))/v\(version.version)"
        // The file name only: libraries load from the plugin directories (older manifests hold a path).
        guard let library = manifest.library.map({ ($0 as NSString).lastPathComponent }), PluginLibraryName.isPlain(library) else {
            throw ModelVerificationError("\(label): its manifest names no plugin library file")
        }
        guard let config = manifest.configBytes else {
            throw ModelVerificationError("\(label): its manifest holds no plugin config (published before configs were recorded)")
        }
        let directory = artifacts.directory(of: version.name, version: version.label)
        try ModelFiles.verify(version, in: directory, modelsRoot: artifacts.collectionDirectory)
        do {
            try plugins.loadOrReload(name: version.name, library: library, config: config) { instance in
                try instance.load(from: directory)
            }
        } catch {
            throw ModelVerificationError("\(label): cannot be served: \(String("\(error)".prefix(300)))")
        }
        return true
    }
}
