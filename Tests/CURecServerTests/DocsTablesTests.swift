import Foundation
import Testing
@testable import CURecServer

/// The tables in docs/ and the CLI help made from the declarations (settings, job parameters)
/// must be exactly what the declarations give. `CUREC_UPDATE_DOCS=1 swift test --filter
/// DocsTables` rewrites them.
@Suite struct DocsTablesTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let updating = ProcessInfo.processInfo.environment["CUREC_UPDATE_DOCS"] == "1"

    /// Checks (or rewrites) the text between the line starting `<!-- name` and `<!-- end name -->`.
    func check(_ file: String, section name: String, holds expected: String) throws {
        let path = Self.root.appendingPathComponent(file).path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let lines = text.components(separatedBy: "\n")
        let start = try #require(lines.firstIndex { $0.hasPrefix("<!-- \(name):") }, "\(file) has no \(name) marker")
        let end = try #require(lines.firstIndex { $0 == "<!-- end \(name) -->" }, "\(file) has no end of \(name)")
        let current = lines[(start + 1)..<end].joined(separator: "\n")
        if Self.updating, current != expected {
            let updated = lines[...start] + [expected] + lines[end...]
            try updated.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
            return
        }
        #expect(current == expected, "\(file) is stale: CUREC_UPDATE_DOCS=1 swift test --filter DocsTables rewrites it")
    }

    @Test func configurationTableIsTheSettings() throws {
        try check("docs/configuration.md", section: "settings-table", holds: DaemonConfiguration.markdownTable)
    }

    @Test func jobParameterTablesAreTheDeclarations() throws {
        try check("docs/jobs.md", section: "job-parameters", holds: JobKindParameters.markdown)
    }

    @Test func cliHelpIsTheDeclarations() throws {
        let path = Self.root.appendingPathComponent("Sources/curec/JobKindHelp.swift").path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let open = "    static let text = #\"\"\"\n"
        let close = "\n\"\"\"#"
        let start = try #require(text.range(of: open))
        let end = try #require(text.range(of: close, range: start.upperBound..<text.endIndex))
        let current = String(text[start.upperBound..<end.lowerBound])
        if Self.updating, current != JobKindParameters.help {
            try (String(text[..<start.upperBound]) + JobKindParameters.help + String(text[end.lowerBound...]))
                .write(toFile: path, atomically: true, encoding: .utf8)
            return
        }
        #expect(current == JobKindParameters.help, "Sources/curec/JobKindHelp.swift is stale: CUREC_UPDATE_DOCS=1 swift test --filter DocsTables rewrites it")
    }
}
