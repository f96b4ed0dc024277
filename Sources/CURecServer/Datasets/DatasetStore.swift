import Foundation

/// Uploaded fine-tuning datasets: `<data_dir>/datasets/<name>/vN/examples.jsonl` plus
/// its manifest (examples, bytes). Versions are immutable; an upload becomes visible only
/// once every line has been checked and the file is complete.
public struct DatasetStore: Sendable {
    /// The file holding a version's examples, one JSON object per line.
    public static let examplesFile = "examples.jsonl"

    /// One stored version.
    public struct Version: Sendable, Equatable {
        public var name: String
        /// e.g. "v2".
        public var version: String
        public var examples: Int
        public var bytes: Int
        public var createdUnixMilliseconds: Int64
        /// The examples file.
        public var path: String
    }

    /// Versions live here, in the `datasets` collection.
    public let versions: ArtifactStore
    /// Largest upload, bytes.
    public let maxUploadBytes: Int

    public init(dataDirectory: String, maxUploadBytes: Int) {
        versions = ArtifactStore(root: dataDirectory, collection: "datasets")
        self.maxUploadBytes = maxUploadBytes
    }

    /// Checks a dataset name: 1 to 64 of letters, digits, `-`, `_`, `.`, starting with a letter
    /// or digit (so a name is never a path).
    public static func checkName(_ name: String) throws(DatasetError) -> String {
        guard ResourceName.isValid(name) else { throw .invalidName }
        return name
    }

    /// Starts an upload of a new version of `name`.
    public func beginUpload(_ name: String) throws(DatasetError) -> DatasetUpload {
        let checked = try Self.checkName(name)
        do {
            let staging = try versions.beginVersion(of: checked)
            return try DatasetUpload(store: self, name: checked, staging: staging)
        } catch let error as DatasetError {
            throw error
        } catch {
            throw .storage("cannot start the upload: \(error.localizedDescription)")
        }
    }

    /// Every stored version of `name` (or of every dataset when nil), oldest first per name.
    public func list(name: String? = nil) -> [Version] {
        let names: [String]
        if let name {
            names = [name]
        } else {
            let root = (versions.root as NSString).appendingPathComponent(versions.collection)
            names = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [])
                .filter { (try? Self.checkName($0)) != nil }.sorted()
        }
        return names.flatMap { name in versions.versions(of: name).compactMap { version(name, $0) } }
    }

    /// A stored version: `version` like "v2", or nil for the newest.
    public func find(_ name: String, version: String? = nil) throws(DatasetError) -> Version {
        let checked = try Self.checkName(name)
        let all = versions.versions(of: checked)
        guard let chosen = version ?? all.last, all.contains(chosen), let found = self.version(checked, chosen) else {
            throw .notFound(version.map { "\(checked)@\($0)" } ?? checked)
        }
        return found
    }

    private func version(_ name: String, _ version: String) -> Version? {
        let directory = versions.directory(of: name, version: version)
        guard let manifest = ArtifactStore.manifest(in: directory), let examples = manifest.examples,
              let bytes = manifest.bytes else { return nil }
        let created = manifest.createdUnixMilliseconds ?? 0
        return Version(name: name, version: version, examples: examples, bytes: bytes,
                       createdUnixMilliseconds: created,
                       path: (directory as NSString).appendingPathComponent(Self.examplesFile))
    }
}

/// An upload in progress: bytes are checked line by line and written to a staging directory;
/// ``commit()`` makes them a version, ``discard()`` (or any error) leaves nothing behind.
public final class DatasetUpload: @unchecked Sendable {
    private let store: DatasetStore
    private let name: String
    private let staging: String
    private let file: FileHandle
    private var validator = ChatExampleValidator()
    private var bytes = 0
    private var finished = false

    fileprivate init(store: DatasetStore, name: String, staging: String) throws(DatasetError) {
        self.store = store
        self.name = name
        self.staging = staging
        let path = (staging as NSString).appendingPathComponent(DatasetStore.examplesFile)
        guard FileManager.default.createFile(atPath: path, contents: nil),
              let handle = FileHandle(forWritingAtPath: path) else {
            store.versions.discard(staging)
            throw .storage("cannot create the staging file")
        }
        file = handle
    }

    /// Checks and stores the next bytes of the file.
    public func append(_ chunk: Data) throws(DatasetError) {
        precondition(!finished, "append after the upload ended")
        bytes += chunk.count
        guard bytes <= store.maxUploadBytes else { throw .tooLarge(limit: store.maxUploadBytes) }
        do {
            try validator.consume(chunk)
        } catch {
            throw .invalidExample(error)
        }
        do {
            try file.write(contentsOf: chunk)
        } catch {
            throw .storage("cannot write the upload: \(error.localizedDescription)")
        }
    }

    /// Checks the end of the file, syncs it and publishes it as the next version.
    public func commit() throws(DatasetError) -> DatasetStore.Version {
        do {
            try validator.finish()
        } catch {
            throw .invalidExample(error)
        }
        finished = true
        let created = Int64(Date().timeIntervalSince1970 * 1000)
        let directory: String
        do {
            try file.synchronize()
            try file.close()
            var manifest = ArtifactManifest(kind: .dataset)
            manifest.examples = validator.examples
            manifest.bytes = bytes
            manifest.createdUnixMilliseconds = created
            manifest.fileFormat = "chat-jsonl"
            directory = try store.versions.commitVersion(staging, of: name, manifest: manifest)
        } catch {
            throw .storage("cannot store the upload: \(error.localizedDescription)")
        }
        return DatasetStore.Version(
            name: name, version: (directory as NSString).lastPathComponent, examples: validator.examples,
            bytes: bytes, createdUnixMilliseconds: created,
            path: (directory as NSString).appendingPathComponent(DatasetStore.examplesFile))
    }

    /// Drops the upload.
    public func discard() {
        guard !finished else { return }
        finished = true
        try? file.close()
        store.versions.discard(staging)
    }
}

/// Why a dataset could not be stored or found.
public enum DatasetError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidName
    case invalidExample(ChatExampleError)
    case tooLarge(limit: Int)
    case notFound(String)
    case storage(String)

    public var description: String {
        switch self {
        case .invalidName:
            return "a dataset name must \(ResourceName.requirement)"
        case .invalidExample(let error): return "dataset \(error.description)"
        case .tooLarge(let limit): return "the upload is larger than the daemon's limit of \(limit) bytes"
        case .notFound(let name): return "no dataset \(name)"
        case .storage(let reason): return reason
        }
    }
}
