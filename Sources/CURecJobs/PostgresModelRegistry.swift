import Foundation
import Logging
import PostgresNIO

/// The model registry in PostgreSQL (`curec_model_version`, migration 2 of the job store's
/// schema), shared by every daemon configured with the same database.
///
/// Each row is announced with `NOTIFY curec_model_versions` (the payload is its `seq`) in
/// the transaction that records it; every registry listens on its own connection, reads the
/// row and hands it to its handler.
public final class PostgresModelRegistry: ModelRegistry {
    static let channel = "curec_model_versions"

    private let connections: PostgresConnections
    private let logger: Logger
    private let relay: ModelChangeRelay
    private let listener: PostgresEventListener

    public var sharedByDaemons: Bool { true }

    /// Connects, applies missing migrations and starts listening. Throws
    /// ``JobError/storeUnavailable(_:)`` when the database cannot be reached.
    public init(settings: PostgresJobStoreSettings, logger: Logger) throws(JobError) {
        let connections = PostgresConnections(settings: settings, logger: logger)
        let relay = ModelChangeRelay()
        do {
            try connections.withConnection { connection throws(JobError) in
                try PostgresJobSchema.migrate(connection, logger: logger)
            }
            listener = try PostgresEventListener(connections: connections, channel: Self.channel, logger: logger) { payload in
                guard let seq = Int64(payload) else { return }
                do {
                    if let version = try Self.version(seq: seq, connections: connections, logger: logger) {
                        relay.announce(.published(version))
                    }
                } catch {
                    logger.warning("a model version could not be read", metadata: ["seq": "\(seq)", "error": "\(error)"])
                    relay.announce(.resynchronize)
                }
            } resynchronize: {
                relay.announce(.resynchronize)
            }
        } catch {
            connections.close()
            throw error
        }
        self.connections = connections
        self.logger = logger
        self.relay = relay
    }

    deinit { close() }

    public func onChange(_ handler: @escaping @Sendable (ModelRegistryChange) -> Void) {
        relay.set(handler)
    }

    public func close() {
        listener.stop()
        connections.close()
    }

    static func version(_ row: PostgresRow) throws -> ModelVersion {
        let row = row.makeRandomAccess()
        return ModelVersion(
            name: try row["name"].decode(String.self), version: Int(try row["version"].decode(Int32.self)),
            kind: try row["kind"].decode(String.self), plugin: try row["plugin"].decode(String.self),
            files: ModelVersion.files(try row["files"].decode(String.self)),
            manifest: try row["manifest"].decode(String.self), serve: try row["serve"].decode(Bool.self),
            publisher: try row["publisher"].decode(String.self), createdMS: try row["created_ms"].decode(Int64.self))
    }

    static func version(seq: Int64, connections: PostgresConnections, logger: Logger) throws(JobError) -> ModelVersion? {
        try connections.withConnection { connection throws(JobError) in
            try PostgresConnections.translating {
                try connection.query("SELECT * FROM curec_model_version WHERE seq = \(seq)", logger: logger).wait()
                    .first.map(Self.version)
            }
        }
    }

    @discardableResult
    public func record(_ version: ModelVersion) throws(JobError) -> Bool {
        guard let number = Int32(exactly: version.version) else {
            throw .storage("model version \(version.version) of '\(version.name)' is out of range")
        }
        return try connections.transaction { connection -> Bool in
            let result = try connection.query("""
                WITH added AS (
                    INSERT INTO curec_model_version (name, version, kind, plugin, files, manifest, serve, publisher, created_ms)
                    VALUES (\(version.name), \(number), \(version.kind), \(version.plugin), \(version.filesText),
                        \(version.manifest), \(version.serve), \(version.publisher), \(version.createdMS))
                    ON CONFLICT (name, version) DO NOTHING
                    RETURNING seq)
                SELECT pg_notify(\(Self.channel), seq::text) FROM added
                """, logger: logger).wait()
            return result.first != nil
        }
    }

    @discardableResult
    public func markServed(name: String, version: Int) throws(JobError) -> Bool {
        guard let number = Int32(exactly: version) else { return false }
        return try connections.transaction { connection -> Bool in
            let result = try connection.query("""
                WITH marked AS (
                    UPDATE curec_model_version SET serve = true WHERE name = \(name) AND version = \(number) RETURNING seq)
                SELECT pg_notify(\(Self.channel), seq::text) FROM marked
                """, logger: logger).wait()
            return result.first != nil
        }
    }

    public func versions(of name: String?) throws(JobError) -> [ModelVersion] {
        try connections.withConnection { connection throws(JobError) in
            try PostgresConnections.translating {
                if let name {
                    return try connection.query("SELECT * FROM curec_model_version WHERE name = \(name) ORDER BY version",
                                                logger: logger).wait().map(Self.version)
                }
                return try connection.query("SELECT * FROM curec_model_version ORDER BY name, version", logger: logger)
                    .wait().map(Self.version)
            }
        }
    }

    public func newestServed() throws(JobError) -> [ModelVersion] {
        try connections.withConnection { connection throws(JobError) in
            try PostgresConnections.translating {
                try connection.query("""
                    SELECT DISTINCT ON (name) * FROM curec_model_version WHERE serve ORDER BY name, version DESC
                    """, logger: logger).wait().map(Self.version)
            }
        }
    }
}
