import Foundation
import Synchronization

/// Which model versions exist, recorded in the job store's database so that every daemon
/// using it agrees on what is newest.
///
/// A version's files live in the models directory every daemon mounts
/// (`<data_dir>/models/<name>/vN/`); its row is recorded only once they are complete and
/// synced, so a daemon that sees a row finds every file (and checks their sizes and
/// SHA-256 before loading them). Two implementations: ``SQLiteModelRegistry`` (one daemon,
/// the SQLite job store's file) and ``PostgresModelRegistry`` (daemons sharing one
/// database, each told of new versions through LISTEN/NOTIFY).
///
/// The files sit behind the daemon's artifact store; a registry row names them relative to
/// the version directory only, so another storage (an S3-compatible bucket) can hold them
/// without the rows changing.
public protocol ModelRegistry: Sendable {
    /// Whether other daemons may publish into the same registry (PostgreSQL).
    var sharedByDaemons: Bool { get }

    /// Records `version`. False, with nothing written, when that name and version are already
    /// recorded (a version is immutable: its first row stays).
    @discardableResult
    func record(_ version: ModelVersion) throws(JobError) -> Bool

    /// Marks a recorded version as published to be served (its files were recorded before the
    /// job that made it had published everything it serves with), and announces it. False
    /// when no such version is recorded.
    @discardableResult
    func markServed(name: String, version: Int) throws(JobError) -> Bool

    /// The recorded versions, by name then version; of `name` only when given.
    func versions(of name: String?) throws(JobError) -> [ModelVersion]

    /// For each name, its newest version published to be served (``ModelVersion/serve``).
    func newestServed() throws(JobError) -> [ModelVersion]

    /// Sets the handler of versions recorded by any daemon on the same registry (this one's
    /// included). Set once, before the first record.
    func onChange(_ handler: @escaping @Sendable (ModelRegistryChange) -> Void)

    /// Releases connections; later calls fail.
    func close()
}

/// What a registry announces.
public enum ModelRegistryChange: Sendable {
    /// A version was recorded.
    case published(ModelVersion)
    /// Announcements may have been missed (the connection was lost and is back).
    case resynchronize
}

/// One file of a model version: where it is inside the version directory, its size and its
/// SHA-256 (lowercase hex).
public struct ModelFile: Sendable, Equatable, Codable {
    public var path: String
    public var size: Int64
    public var sha256: String

    public init(path: String, size: Int64, sha256: String) {
        self.path = path
        self.size = size
        self.sha256 = sha256
    }
}

/// A published model version: its manifest and files, who published it, and when.
public struct ModelVersion: Sendable, Equatable {
    /// The model's name, the folder under `models/`.
    public var name: String
    /// N of the version directory `vN`.
    public var version: Int
    /// What it holds (`plugin-state`, `language-model`, ...).
    public var kind: String
    /// The plugin that made it (plugin states), else empty.
    public var plugin: String
    /// Every file of the version directory (the manifest file included), sorted by path.
    public var files: [ModelFile]
    /// The version's manifest, as stored beside its files (JSON).
    public var manifest: String
    /// Whether it was published to be served (a `train` job with `serve`, a Load that trained,
    /// the pipeline's reason-aware recommender): daemons that follow the registry load it.
    public var serve: Bool
    /// The daemon that published it (host, process id, a random part).
    public var publisher: String
    /// When it was recorded, milliseconds since 1970.
    public var createdMS: Int64

    public init(name: String, version: Int, kind: String, plugin: String = "", files: [ModelFile], manifest: String,
                serve: Bool = false, publisher: String, createdMS: Int64) {
        self.name = name
        self.version = version
        self.kind = kind
        self.plugin = plugin
        self.files = files
        self.manifest = manifest
        self.serve = serve
        self.publisher = publisher
        self.createdMS = createdMS
    }

    /// The version directory's name, `vN`.
    public var label: String { "v\(version)" }

    /// The files as stored in a row (a JSON list).
    var filesText: String {
        (try? String(decoding: JSONEncoder().encode(files), as: UTF8.self)) ?? "[]"
    }

    /// The files of a row; a list that cannot be read is empty (verification then refuses it).
    static func files(_ text: String) -> [ModelFile] {
        (try? JSONDecoder().decode([ModelFile].self, from: Data(text.utf8))) ?? []
    }
}

/// Where a registry sends its announcements.
final class ModelChangeRelay: Sendable {
    private let handler = Mutex<(@Sendable (ModelRegistryChange) -> Void)?>(nil)

    func set(_ handler: @escaping @Sendable (ModelRegistryChange) -> Void) {
        self.handler.withLock { $0 = handler }
    }

    func announce(_ change: ModelRegistryChange) {
        handler.withLock { $0 }?(change)
    }
}
