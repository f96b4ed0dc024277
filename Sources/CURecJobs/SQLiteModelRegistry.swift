import Foundation
import GRDB

/// The model registry in the SQLite job database (`<data_dir>/jobs.sqlite`, table
/// `model_version`): one daemon's registry. Announcements reach this registry's handler only.
public final class SQLiteModelRegistry: ModelRegistry {
    private let database: DatabaseQueue
    private let relay = ModelChangeRelay()

    public var sharedByDaemons: Bool { false }

    /// Opens (creating and migrating if needed) the job database at `path`.
    public init(path: String) throws(JobError) {
        database = try SQLiteJobStore.open(path: path)
    }

    public func onChange(_ handler: @escaping @Sendable (ModelRegistryChange) -> Void) {
        relay.set(handler)
    }

    public func close() {}

    private static func version(_ row: Row) -> ModelVersion {
        ModelVersion(
            name: row["name"], version: row["version"], kind: row["kind"], plugin: row["plugin"],
            files: ModelVersion.files(row["files"]), manifest: row["manifest"], serve: (row["serve"] as Int64) != 0,
            publisher: row["publisher"], createdMS: row["created_ms"])
    }

    @discardableResult
    public func record(_ version: ModelVersion) throws(JobError) -> Bool {
        let added: Bool
        do {
            added = try database.write { db -> Bool in
                try db.execute(sql: """
                    INSERT INTO model_version (name, version, kind, plugin, files, manifest, serve, publisher, created_ms)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name, version) DO NOTHING
                    """, arguments: [
                        version.name, version.version, version.kind, version.plugin, version.filesText,
                        version.manifest, version.serve ? 1 : 0, version.publisher, version.createdMS,
                    ])
                return db.changesCount == 1
            }
        } catch {
            throw .storage("\(error)")
        }
        if added { relay.announce(.published(version)) }
        return added
    }

    @discardableResult
    public func markServed(name: String, version: Int) throws(JobError) -> Bool {
        let marked: ModelVersion?
        do {
            marked = try database.write { db -> ModelVersion? in
                try db.execute(sql: "UPDATE model_version SET serve = 1 WHERE name = ? AND version = ?", arguments: [name, version])
                guard db.changesCount == 1 else { return nil }
                return try Row.fetchOne(db, sql: "SELECT * FROM model_version WHERE name = ? AND version = ?",
                                        arguments: [name, version]).map(Self.version)
            }
        } catch {
            throw .storage("\(error)")
        }
        guard let marked else { return false }
        relay.announce(.published(marked))
        return true
    }

    public func versions(of name: String?) throws(JobError) -> [ModelVersion] {
        do {
            return try database.read { db in
                if let name {
                    return try Row.fetchAll(db, sql: "SELECT * FROM model_version WHERE name = ? ORDER BY version",
                                            arguments: [name]).map(Self.version)
                }
                return try Row.fetchAll(db, sql: "SELECT * FROM model_version ORDER BY name, version").map(Self.version)
            }
        } catch {
            throw .storage("\(error)")
        }
    }

    public func newestServed() throws(JobError) -> [ModelVersion] {
        do {
            return try database.read { db in
                try Row.fetchAll(db, sql: """
                    SELECT * FROM model_version AS m WHERE serve = 1
                    AND version = (SELECT MAX(version) FROM model_version WHERE name = m.name AND serve = 1)
                    ORDER BY name
                    """).map(Self.version)
            }
        } catch {
            throw .storage("\(error)")
        }
    }
}
