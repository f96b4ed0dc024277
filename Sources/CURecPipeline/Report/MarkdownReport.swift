import Foundation

/// A small builder for a Markdown document: blocks are appended in order and separated by a
/// blank line. Text is written as given (it may contain Markdown), except where a block's
/// syntax needs escaping: table cells escape `|`, image alt texts escape brackets.
public struct MarkdownReport: Sendable, Equatable {
    /// Horizontal alignment of a table column.
    public enum Alignment: Sendable, Equatable {
        /// Left-aligned (`:---`).
        case left
        /// Centred (`:---:`).
        case center
        /// Right-aligned (`---:`), for numbers.
        case right
    }

    private var blocks: [String] = []

    /// An empty document.
    public init() {}

    /// A heading of `level` 1...6 (clamped); line breaks in `text` become spaces.
    public mutating func heading(_ text: String, level: Int = 1) {
        let hashes = String(repeating: "#", count: min(max(level, 1), 6))
        blocks.append(hashes + " " + Self.singleLine(text))
    }

    /// A paragraph; surrounding blank lines and whitespace are trimmed, empty paragraphs are skipped.
    public mutating func paragraph(_ text: String) {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { return }
        blocks.append(trimmed)
    }

    /// A bullet list; an item spanning several lines continues indented under its bullet.
    public mutating func bullets(_ items: [String]) {
        guard !items.isEmpty else { return }
        blocks.append(items.map { item in
            "- " + item.trimmingCharacters(in: .whitespacesAndNewlines)
                .split(separator: "\n", omittingEmptySubsequences: false)
                .joined(separator: "\n  ")
        }.joined(separator: "\n"))
    }

    /// A table with `header` and `rows`; short rows are padded with empty cells, `|` in a cell
    /// is escaped and line breaks become spaces. `alignments` applies per column (default left).
    public mutating func table(header: [String], rows: [[String]], alignments: [Alignment] = []) {
        let text = Self.tableText(header: header, rows: rows, alignments: alignments)
        if !text.isEmpty { blocks.append(text) }
    }

    /// An image link `![alt](file)` to a file next to the report; `file` is percent-encoded
    /// where Markdown needs it (spaces, parentheses, angle brackets, `%`).
    public mutating func image(alt: String, file: String) {
        blocks.append("![" + Self.escapeAlt(alt) + "](" + Self.encodeLink(file) + ")")
    }

    /// A fenced code block, fenced with more backticks than `code` contains in a row.
    public mutating func code(_ code: String, language: String = "") {
        var longestRun = 0
        var run = 0
        for character in code {
            run = character == "`" ? run + 1 : 0
            longestRun = max(longestRun, run)
        }
        let fence = String(repeating: "`", count: max(3, longestRun + 1))
        let body = code.hasSuffix("\n") ? String(code.dropLast()) : code
        blocks.append(fence + Self.singleLine(language) + "\n" + body + "\n" + fence)
    }

    /// A block of Markdown inserted verbatim, e.g. ``AblationTable/markdown(metrics:headers:lowerIsBetter:decimals:variantHeader:)``.
    public mutating func markdown(_ block: String) {
        let trimmed = block.trimmingCharacters(in: .newlines)
        guard !trimmed.isEmpty else { return }
        blocks.append(trimmed)
    }

    /// The document: blocks separated by blank lines, ending with a newline.
    public func render() -> String {
        blocks.isEmpty ? "" : blocks.joined(separator: "\n\n") + "\n"
    }

    // MARK: - Escaping

    /// `text` safe inside a table cell: `|` becomes `\|`, line breaks become spaces.
    public static func escapeTableCell(_ text: String) -> String {
        singleLine(text).replacingOccurrences(of: "|", with: "\\|")
    }

    /// The lines of a table (no trailing newline); empty when there is neither a header nor a row.
    static func tableText(header: [String], rows: [[String]], alignments: [Alignment]) -> String {
        let columns = max(header.count, rows.map(\.count).max() ?? 0)
        guard columns > 0 else { return "" }
        func line(_ cells: [String]) -> String {
            let padded = cells + Array(repeating: "", count: columns - cells.count)
            return "| " + padded.map(escapeTableCell).joined(separator: " | ") + " |"
        }
        let separator = (0..<columns).map { column -> String in
            switch column < alignments.count ? alignments[column] : .left {
            case .left: return ":---"
            case .center: return ":---:"
            case .right: return "---:"
            }
        }
        return ([line(header), "| " + separator.joined(separator: " | ") + " |"] + rows.map(line)).joined(separator: "\n")
    }

    private static func singleLine(_ text: String) -> String {
        text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).joined(separator: " ")
            .trimmingCharacters(in: .whitespaces)
    }

    private static func escapeAlt(_ text: String) -> String {
        var out = ""
        for character in singleLine(text) {
            if character == "\\" || character == "[" || character == "]" { out.append("\\") }
            out.append(character)
        }
        return out
    }

    private static func encodeLink(_ file: String) -> String {
        var out = ""
        for scalar in singleLine(file).unicodeScalars {
            switch scalar {
            case " ": out += "%20"
            case "(": out += "%28"
            case ")": out += "%29"
            case "<": out += "%3C"
            case ">": out += "%3E"
            case "%": out += "%25"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
