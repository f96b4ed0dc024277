import Foundation

/// One row of a reason table: the reason kept for a subject and how it scored.
public struct ReasonTableEntry: Sendable, Hashable, Codable {
    /// Who or what the reason describes.
    public var subject: ReasonSubject
    /// The reason text (empty when no candidate survived).
    public var text: String
    /// Its reward (collaborative ordering rate minus weighted verifier penalties).
    public var reward: Double
    /// Its collaborative part alone, in [0, 1].
    public var collaborative: Double
    /// Whether every verifier check passed on the kept text.
    public var checksPassed: Bool
    /// Names of the checks that failed on the kept text.
    public var failedChecks: [String]
    /// Sentences removed from the chosen candidate because their claims failed.
    public var removedSentences: Int
    /// Candidates written for this subject (including regenerations).
    public var candidates: Int

    public init(subject: ReasonSubject, text: String, reward: Double, collaborative: Double, checksPassed: Bool,
                failedChecks: [String], removedSentences: Int, candidates: Int) {
        self.subject = subject
        self.text = text
        self.reward = reward
        self.collaborative = collaborative
        self.checksPassed = checksPassed
        self.failedChecks = failedChecks
        self.removedSentences = removedSentences
        self.candidates = candidates
    }
}

/// Summary numbers of a reason table, for logs and the report.
public struct ReasonTableSummary: Sendable, Hashable, Codable {
    public var entries: Int
    public var nonEmpty: Int
    public var meanReward: Double
    public var meanCollaborative: Double
    /// Fraction of entries whose kept text passes every check.
    public var passRate: Double
    public var meanWords: Double
}

/// Errors reading or writing a reason table.
public enum ReasonTableError: Error, CustomStringConvertible, Sendable {
    case unreadable(path: String, detail: String)
    case unwritable(path: String, detail: String)

    public var description: String {
        switch self {
        case .unreadable(let path, let detail): return "cannot read the reason table \(path): \(detail)"
        case .unwritable(let path, let detail): return "cannot write the reason table \(path): \(detail)"
        }
    }
}

/// The reasons of one pipeline variant for every user and item, with their embeddings
/// (the downstream recommender's features). Stored as JSON Lines (one entry per line) plus
/// two little-endian float32 matrices.
public struct ReasonTable: Sendable {
    /// Entries, users first (ascending), then items (ascending).
    public var entries: [ReasonTableEntry]
    /// Row-major `[userCount x dimension]` reason embeddings (zero rows for empty reasons).
    public var userEmbeddings: [Float]
    /// Row-major `[itemCount x dimension]` reason embeddings.
    public var itemEmbeddings: [Float]
    /// Embedding dimension.
    public var dimension: Int

    public init(entries: [ReasonTableEntry], userEmbeddings: [Float], itemEmbeddings: [Float], dimension: Int) {
        self.entries = entries
        self.userEmbeddings = userEmbeddings
        self.itemEmbeddings = itemEmbeddings
        self.dimension = dimension
    }

    /// The entry for `subject`, if present (a linear search; use ``entriesBySubject()`` for many lookups).
    public func entry(for subject: ReasonSubject) -> ReasonTableEntry? {
        entries.first { $0.subject == subject }
    }

    /// Every entry keyed by its subject (the first one wins if a subject repeats).
    public func entriesBySubject() -> [ReasonSubject: ReasonTableEntry] {
        Dictionary(entries.map { ($0.subject, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Summary over all entries.
    public var summary: ReasonTableSummary {
        let n = Double(max(entries.count, 1))
        let words = entries.reduce(0) { $0 + $1.text.split(whereSeparator: \.isWhitespace).count }
        return ReasonTableSummary(
            entries: entries.count, nonEmpty: entries.filter { !$0.text.isEmpty }.count,
            meanReward: entries.reduce(0) { $0 + $1.reward } / n,
            meanCollaborative: entries.reduce(0) { $0 + $1.collaborative } / n,
            passRate: Double(entries.filter(\.checksPassed).count) / n,
            meanWords: Double(words) / n)
    }

    /// Writes `reasons.jsonl`, `user_embeddings.f32`, `item_embeddings.f32` and `table.json`
    /// (dimension and counts) into `directory`, each atomically.
    public func write(to directory: String) throws(ReasonTableError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var lines = Data()
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for entry in entries {
                lines.append(try encoder.encode(entry))
                lines.append(0x0A)
            }
            let meta = ["dimension": dimension, "users": userEmbeddings.count / max(dimension, 1),
                        "items": itemEmbeddings.count / max(dimension, 1), "entries": entries.count]
            try (lines).write(to: URL(fileURLWithPath: directory + "/reasons.jsonl"), options: .atomic)
            try (try encoder.encode(meta)).write(to: URL(fileURLWithPath: directory + "/table.json"), options: .atomic)
            try (Self.bytes(userEmbeddings)).write(to: URL(fileURLWithPath: directory + "/user_embeddings.f32"), options: .atomic)
            try (Self.bytes(itemEmbeddings)).write(to: URL(fileURLWithPath: directory + "/item_embeddings.f32"), options: .atomic)
        } catch {
            throw .unwritable(path: directory, detail: "\(error)")
        }
    }

    /// Reads a table written by ``write(to:)``.
    public static func read(from directory: String) throws(ReasonTableError) -> ReasonTable {
        do {
            let meta = try JSONDecoder().decode([String: Int].self,
                                                from: Data(contentsOf: URL(fileURLWithPath: directory + "/table.json")))
            let dimension = meta["dimension"] ?? 0
            let text = try String(contentsOfFile: directory + "/reasons.jsonl", encoding: .utf8)
            let decoder = JSONDecoder()
            let entries = try text.split(separator: "\n").map {
                try decoder.decode(ReasonTableEntry.self, from: Data($0.utf8))
            }
            let users = try floats(directory + "/user_embeddings.f32")
            let items = try floats(directory + "/item_embeddings.f32")
            guard users.count == (meta["users"] ?? -1) * dimension, items.count == (meta["items"] ?? -1) * dimension else {
                throw ReasonTableError.unreadable(path: directory, detail: "embedding files do not match table.json")
            }
            return ReasonTable(entries: entries, userEmbeddings: users, itemEmbeddings: items, dimension: dimension)
        } catch let error as ReasonTableError {
            throw error
        } catch {
            throw .unreadable(path: directory, detail: "\(error)")
        }
    }

    static func bytes(_ values: [Float]) -> Data {
        values.withUnsafeBufferPointer { Data(buffer: $0) }
    }

    static func floats(_ path: String) throws -> [Float] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard data.count % 4 == 0 else {
            throw ReasonTableError.unreadable(path: path, detail: "\(data.count) bytes is not a whole number of float32 values")
        }
        var values = [Float](repeating: 0, count: data.count / 4)
        _ = values.withUnsafeMutableBytes { data.copyBytes(to: $0) }
        return values
    }
}
