import ArgumentParser
import CURecProto
import CURecRPC
import Foundation

/// `curec report`: the pipeline's report (ModelService.GetReport).
struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the pipeline's report (report.md), or save all its files with --out.",
        discussion: """
            A pipeline job writes the report (curec jobs submit pipeline profile=quick --watch); \
            before that the daemon answers NOT_FOUND. --json prints the name, version, metadata \
            and the files' names and sizes instead of the Markdown.
            """)
    @OptionGroup var global: GlobalOptions
    @Option(help: "Report artifact name (default: report, the pipeline's).") var name = ""
    @Option(help: "Version, e.g. v2 (default: the newest).") var version = ""
    @Option(help: "Write every file of the report (report.md, charts, results.json) into this directory.") var out: String?

    func run() throws {
        let client = try global.client()
        let response: Curec_V1_GetReportResponse = try CURec.run {
            try Curec_V1_ModelServiceClient(client).getReport(Curec_V1_GetReportRequest.with {
                $0.name = name
                $0.version = version
            }, timeout: global.timeout)
        }
        var written: [String] = []
        if let out {
            written = try write(response.files, into: out)
        }
        if global.json {
            let summary: [String: Any] = [
                "name": response.name,
                "version": response.version,
                "metadata": response.metadata,
                "files": response.files.map { ["name": $0.name, "media_type": $0.mediaType, "bytes": $0.content.count] as [String: Any] },
            ].merging(out == nil ? [:] : ["written": written]) { $1 }
            let data = try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        if out == nil {
            print(response.markdown, terminator: response.markdown.hasSuffix("\n") ? "" : "\n")
            return
        }
        print("report \(response.name)/\(response.version): \(written.count) files")
        for path in written { print(path) }
    }

    /// Writes each file into `directory` (created if needed) and returns the paths written.
    func write(_ files: [Curec_V1_ReportFile], into directory: String) throws -> [String] {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            FileHandle.standardError.write(Data("error: cannot create \(directory): \(error.localizedDescription)\n".utf8))
            throw ExitCode(1)
        }
        var paths: [String] = []
        for file in files {
            // The daemon sends plain file names; refuse anything that would leave the directory.
            guard !file.name.isEmpty, !file.name.contains("/"), file.name != ".", file.name != ".." else {
                FileHandle.standardError.write(Data("error: the report holds a file with an unusable name '\(file.name)'\n".utf8))
                throw ExitCode(1)
            }
            let path = (directory as NSString).appendingPathComponent(file.name)
            do {
                try file.content.write(to: URL(fileURLWithPath: path))
            } catch {
                FileHandle.standardError.write(Data("error: cannot write \(path): \(error.localizedDescription)\n".utf8))
                throw ExitCode(1)
            }
            paths.append(path)
        }
        return paths
    }
}
