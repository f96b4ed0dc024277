import Foundation

/// Why an atomic file could not be read.
public enum DatasetError: Error, CustomStringConvertible, Sendable {
    case missingFile(String)
    case unreadable(String, String)
    case badHeader(file: String, detail: String)
    case badRow(file: String, line: Int, detail: String)
    case missingColumn(file: String, column: String)
    case empty(String)

    public var description: String {
        switch self {
        case .missingFile(let path): return "dataset file \(path) does not exist (run scripts/fetch-data for MovieLens-100K)"
        case .unreadable(let path, let reason): return "cannot read \(path): \(reason)"
        case .badHeader(let file, let detail): return "\(file): bad header: \(detail)"
        case .badRow(let file, let line, let detail): return "\(file):\(line): \(detail)"
        case .missingColumn(let file, let column): return "\(file): required column '\(column)' is missing"
        case .empty(let detail): return "dataset is empty: \(detail)"
        }
    }
}

/// A RecBole atomic file (`.inter`, `.item`, `.user`, ...): a tab-separated table whose
/// header names each column as `name:type` (type one of token, token_seq, float, float_seq).
public struct AtomicFile: Sendable {
    /// A column's declared type.
    public enum ColumnType: String, Sendable {
        case token, tokenSequence = "token_seq", float, floatSequence = "float_seq"
    }

    /// Column names in file order.
    public let columnNames: [String]
    /// Column types in file order.
    public let columnTypes: [ColumnType]
    /// Rows of raw field text, one array per line, aligned with `columnNames`.
    public let rows: [[Substring]]
    /// The file's path, for messages.
    public let path: String

    /// Reads and parses `path`.
    public static func read(path: String) throws(DatasetError) -> AtomicFile {
        guard FileManager.default.fileExists(atPath: path) else { throw .missingFile(path) }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .unreadable(path, "\(error)")
        }
        return try parse(text, path: path)
    }

    /// Parses atomic-file text; `path` is used in messages.
    public static func parse(_ text: String, path: String) throws(DatasetError) -> AtomicFile {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        while let last = lines.last, last.isEmpty { lines.removeLast() }
        guard let header = lines.first else { throw .badHeader(file: path, detail: "the file is empty") }
        var names: [String] = []
        var types: [ColumnType] = []
        for field in header.split(separator: "\t", omittingEmptySubsequences: false) {
            let parts = field.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":")
            guard parts.count == 2, let type = ColumnType(rawValue: String(parts[1])) else {
                throw .badHeader(file: path, detail: "column '\(field)' is not name:type with type token, token_seq, float or float_seq")
            }
            names.append(String(parts[0]))
            types.append(type)
        }
        var rows: [[Substring]] = []
        rows.reserveCapacity(lines.count - 1)
        for (offset, line) in lines.dropFirst().enumerated() {
            let trimmed = line.hasSuffix("\r") ? line.dropLast() : line
            if trimmed.isEmpty { continue }
            let fields = trimmed.split(separator: "\t", omittingEmptySubsequences: false)
            guard fields.count == names.count else {
                throw .badRow(file: path, line: offset + 2,
                              detail: "expected \(names.count) tab-separated fields, found \(fields.count)")
            }
            rows.append(fields)
        }
        return AtomicFile(columnNames: names, columnTypes: types, rows: rows, path: path)
    }

    /// The index of column `name`, or an error naming it.
    public func column(_ name: String) throws(DatasetError) -> Int {
        guard let index = columnNames.firstIndex(of: name) else { throw .missingColumn(file: path, column: name) }
        return index
    }
}
