import CURecJobs
import Foundation

/// Immutable versioned directories on disk: `<root>/<collection>/<name>/<version>/`, versions
/// `v1`, `v2`, ... The daemon keeps trained models in the `models` collection and uploaded
/// datasets in `datasets`.
///
/// A version directory is written under a temporary name (`.staging-*`) and renamed into
/// place when complete, so a crash never leaves a half-written version; an existing version
/// is never overwritten. Before the rename every file and directory of the version is
/// fsynced, and after it the parent directory, so a version that exists after a power loss
/// is complete. A staging directory's name starts with its maker's ``DaemonIdentity`` tag
/// (`.staging-<host>+<pid>+<uuid>`), so ``removeStaleStaging()`` at start removes only what a
/// stopped process on this host left behind, never another live daemon's write on a shared
/// data directory.
///
/// With a ``registration`` (the daemon's `models` collection), each committed version is then
/// recorded in the model registry with its files' sizes and SHA-256: only after the rename and
/// the sync, so a daemon that sees the row finds every file.
public struct ArtifactStore: Sendable {
    public let root: String
    /// The folder under `root` holding the names, e.g. `models`.
    public let collection: String
    /// Where committed versions are recorded, and as which daemon; nil records nothing.
    public var registration: ModelRegistration?
    /// The process that writes through this store, named in its staging directories.
    public var owner: DaemonIdentity

    public init(root: String, collection: String = "models", registration: ModelRegistration? = nil,
                owner: DaemonIdentity = .current) {
        self.root = root
        self.collection = collection
        self.registration = registration
        self.owner = owner
    }

    /// The folder holding every name of the collection.
    public var collectionDirectory: String { (root as NSString).appendingPathComponent(collection) }

    /// The directory holding every version of `name`.
    public func directory(of name: String) -> String {
        (root as NSString).appendingPathComponent("\(collection)/\(name)")
    }

    /// Existing versions of `name`, oldest first.
    public func versions(of name: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory(of: name))) ?? []
        return names.compactMap { entry -> (Int, String)? in
            guard entry.hasPrefix("v"), let number = Int(entry.dropFirst()) else { return nil }
            return (number, entry)
        }.sorted { $0.0 < $1.0 }.map(\.1)
    }

    /// The newest complete version directory of `name`, if any.
    public func latest(of name: String) -> String? {
        versions(of: name).last.map { (directory(of: name) as NSString).appendingPathComponent($0) }
    }

    /// The file beside a version's files holding its ``ArtifactManifest``.
    public static let manifestFileName = "metadata.json"

    /// The directory of version `version` (like "v2") of `name`.
    public func directory(of name: String, version: String) -> String {
        (directory(of: name) as NSString).appendingPathComponent(version)
    }

    /// Writes a new version: `write` fills a fresh directory, which then becomes `vN+1` with
    /// `manifest` stored beside the files. `serve` records it as published to be served
    /// (daemons following the registry load it).
    @discardableResult
    public func addVersion(of name: String, manifest: ArtifactManifest, serve: Bool = false,
                           write: (String) throws -> Void) throws -> String {
        let staging = try beginVersion(of: name)
        do {
            try write(staging)
            return try commitVersion(staging, of: name, manifest: manifest, serve: serve)
        } catch {
            discard(staging)
            throw error
        }
    }

    /// Creates an empty staging directory for a new version of `name`, for writers that fill
    /// it over time (an upload). Finish with ``commitVersion(_:of:manifest:)`` or ``discard(_:)``.
    public func beginVersion(of name: String) throws -> String {
        let base = directory(of: name)
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        let staging = (base as NSString).appendingPathComponent("\(Self.stagingPrefix)\(owner.tag)+\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        return staging
    }

    /// Writes the manifest (stamped with the current layout and time) into a staging directory
    /// and renames it to the next free `vN`, then records it in the registry when there is
    /// one. Returns the version directory.
    public func commitVersion(_ staging: String, of name: String, manifest: ArtifactManifest, serve: Bool = false) throws -> String {
        let base = directory(of: name)
        var stamped = manifest
        stamped.format = ArtifactManifest.currentFormat
        stamped.created = ISO8601DateFormatter().string(from: Date())
        let manifestData = try Self.manifestEncoder.encode(stamped)
        try manifestData.write(to: URL(fileURLWithPath: (staging as NSString).appendingPathComponent(Self.manifestFileName)))
        try DurableFiles.syncTree(staging)
        // Listed before the rename: the version's files never change after it.
        let files = registration == nil ? [] : try ModelFiles.list(in: staging)
        while true {
            let next = (versions(of: name).last.flatMap { Int($0.dropFirst()) } ?? 0) + 1
            let final = (base as NSString).appendingPathComponent("v\(next)")
            if rename(staging, final) == 0 {
                try DurableFiles.sync(base)
                if let registration {
                    let recorded = try registration.registry.record(ModelVersion(
                        name: name, version: next, kind: stamped.kind.rawValue, plugin: stamped.plugin ?? "", files: files,
                        manifest: String(decoding: manifestData, as: UTF8.self), serve: serve,
                        publisher: registration.publisher, createdMS: Int64(Date().timeIntervalSince1970 * 1000)))
                    // A daemon starting meanwhile recorded the new directory first (as found, not to serve).
                    if !recorded, serve { try registration.registry.markServed(name: name, version: next) }
                }
                return final
            }
            if errno != EEXIST && errno != ENOTEMPTY {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: final])
            }
        }
    }

    /// Checks the files of version `version` (like "v2") of `name` against its registry row
    /// (``ModelFiles/verify(_:in:modelsRoot:)``: inside the directory, sizes, SHA-256) before
    /// it is loaded. Nothing to check without a registry or a row for it.
    public func verify(_ name: String, version: String) throws {
        guard let registration, let number = Int(version.dropFirst()) else { return }
        guard let row = try registration.registry.versions(of: name).first(where: { $0.version == number }) else { return }
        try ModelFiles.verify(row, in: directory(of: name, version: version), modelsRoot: collectionDirectory)
    }

    /// Marks version `version` (like "v2") of `name` in the registry as published to be
    /// served; nothing without a registry.
    public func markServed(_ name: String, version: String) throws {
        guard let registration, let number = Int(version.dropFirst()) else { return }
        try registration.registry.markServed(name: name, version: number)
    }

    /// Records every complete version directory of the collection that the registry does not
    /// list yet (published before the registry existed, or by a daemon stopped between the
    /// rename and the record), as published by this daemon and not to be served. Returns
    /// how many it recorded.
    @discardableResult
    public func recordUnregisteredVersions() throws -> Int {
        guard let registration else { return 0 }
        let known = Set(try registration.registry.versions(of: nil).map { "\($0.name)/\($0.label)" })
        var recorded = 0
        let names = (try? FileManager.default.contentsOfDirectory(atPath: collectionDirectory)) ?? []
        for name in names.sorted() where ResourceName.isValid(name) {
            for version in versions(of: name) where !known.contains("\(name)/\(version)") {
                guard let number = Int(version.dropFirst()), number > 0 else { continue }
                let directory = directory(of: name, version: version)
                let manifestText = FileManager.default.contents(atPath: (directory as NSString).appendingPathComponent(Self.manifestFileName))
                    .map { String(decoding: $0, as: UTF8.self) } ?? "{}"
                let manifest = Self.manifest(in: directory)
                let added = try registration.registry.record(ModelVersion(
                    name: name, version: number, kind: (manifest?.kind ?? .unknown).rawValue, plugin: manifest?.plugin ?? "",
                    files: try ModelFiles.list(in: directory), manifest: manifestText, serve: false,
                    publisher: registration.publisher, createdMS: Int64(Date().timeIntervalSince1970 * 1000)))
                if added { recorded += 1 }
            }
        }
        return recorded
    }

    /// The manifest of the version in `directory`; nil when it has none or it cannot be read
    /// (such a version is treated as not matching anything asked for).
    public static func manifest(in directory: String) -> ArtifactManifest? {
        guard let data = FileManager.default.contents(atPath: (directory as NSString).appendingPathComponent(manifestFileName)) else {
            return nil
        }
        return try? manifestDecoder.decode(ArtifactManifest.self, from: data)
    }

    /// The manifest of version `version` of `name`.
    public func manifest(of name: String, version: String) -> ArtifactManifest? {
        Self.manifest(in: directory(of: name, version: version))
    }

    private static var manifestEncoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return encoder
    }

    static var manifestDecoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return decoder
    }

    /// How a staging directory's name starts.
    static let stagingPrefix = ".staging-"

    /// Removes the staging directories (`<collection>/<name>/.staging-*`) that a process
    /// stopped mid-write left behind: those of this host's exited processes or of an earlier
    /// process with the owner's id, and untagged ones (from before the tag); returns how many.
    /// Another live daemon's staging, or another host's, is kept. Call at start, before any
    /// writer of this store runs.
    @discardableResult
    public func removeStaleStaging() -> Int {
        let top = (root as NSString).appendingPathComponent(collection)
        var removed = 0
        for name in (try? FileManager.default.contentsOfDirectory(atPath: top)) ?? [] {
            let base = (top as NSString).appendingPathComponent(name)
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [] where isLeftoverStaging(entry) {
                if (try? FileManager.default.removeItem(atPath: (base as NSString).appendingPathComponent(entry))) != nil {
                    removed += 1
                }
            }
        }
        return removed
    }

    /// Whether `entry` names a staging directory a stopped process left behind.
    private func isLeftoverStaging(_ entry: String) -> Bool {
        guard entry.hasPrefix(Self.stagingPrefix) else { return false }
        let rest = entry.dropFirst(Self.stagingPrefix.count)
        guard let maker = DaemonIdentity(tagPrefixOf: rest) else { return true }
        return owner.findsLeftover(from: maker)
    }

    /// Removes a staging directory that will not become a version.
    public func discard(_ staging: String) {
        try? FileManager.default.removeItem(atPath: staging)
    }
}

/// Where an artifact store records the versions it commits: the model registry, and the
/// daemon recorded as their publisher.
public struct ModelRegistration: Sendable {
    public let registry: any ModelRegistry
    /// This daemon's name in the registry (host, process id, a random part).
    public let publisher: String

    public init(registry: any ModelRegistry, publisher: String) {
        self.registry = registry
        self.publisher = publisher
    }
}
