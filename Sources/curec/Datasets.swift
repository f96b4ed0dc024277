import ArgumentParser
import CURecProto
import CURecRPC
import Foundation

/// `curec datasets`: chat datasets for fine-tuning (DatasetService).
struct Datasets: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Upload chat datasets for fine-tuning, and list them.",
        subcommands: [Upload.self, List.self])

    /// Bytes per upload message.
    static let chunkBytes = 256 * 1024

    struct Upload: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upload a JSON Lines chat file as a new version of a dataset.",
            discussion: """
                One example a line: {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]} \
                with 2 to 64 turns, at least one user turn, and an assistant turn last. The file is \
                streamed in chunks of 256 KiB and checked line by line; the first bad line is named \
                and nothing is stored unless every line is valid. Each upload becomes a new version \
                (v1, v2, ...). Fine-tune on it with: curec jobs submit finetune dataset=NAME output=MODEL
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Dataset name: letters, digits, '-', '_' and '.', starting with a letter or digit.") var name: String
        @Argument(help: "The JSON Lines file ('-' reads standard input).") var file: String

        func run() throws {
            let handle = try open()
            defer { if file != "-" { try? handle.close() } }
            let client = try global.client()
            var headerSent = false
            let dataset: Curec_V1_Dataset = try CURec.run {
                try Curec_V1_DatasetServiceClient(client).upload(timeout: max(global.timeout, 600)) {
                    () throws -> Curec_V1_UploadDatasetRequest? in
                    if !headerSent {
                        headerSent = true
                        return .with { $0.header = .with { $0.name = name } }
                    }
                    let chunk: Data?
                    do {
                        chunk = try handle.read(upToCount: Datasets.chunkBytes)
                    } catch {
                        throw RPCError(.cancelled, "cannot read \(file): \(error.localizedDescription)")
                    }
                    guard let chunk, !chunk.isEmpty else { return nil }
                    return .with { $0.chunk = chunk }
                }
            }
            if global.json { printJSON(dataset); return }
            print("uploaded \(dataset.name) \(dataset.version): \(dataset.examples) examples, \(dataset.bytes) bytes")
        }

        /// The file to read, or exit 1 with the reason.
        func open() throws -> FileHandle {
            if file == "-" { return FileHandle.standardInput }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory) else {
                FileHandle.standardError.write(Data("error: no file \(file)\n".utf8))
                throw ExitCode(1)
            }
            guard !isDirectory.boolValue else {
                FileHandle.standardError.write(Data("error: \(file) is a directory\n".utf8))
                throw ExitCode(1)
            }
            do {
                return try FileHandle(forReadingFrom: URL(fileURLWithPath: file))
            } catch {
                FileHandle.standardError.write(Data("error: cannot open \(file): \(error.localizedDescription)\n".utf8))
                throw ExitCode(1)
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List uploaded datasets and their versions, oldest first.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Only this dataset (NOT_FOUND if nothing was uploaded under it).") var name = ""

        func run() throws {
            let client = try global.client()
            let response: Curec_V1_ListDatasetsResponse = try CURec.run {
                try Curec_V1_DatasetServiceClient(client).list(Curec_V1_ListDatasetsRequest.with { $0.name = name },
                                 timeout: global.timeout)
            }
            if global.json { response.datasets.forEach(printJSON); return }
            let formatter = ISO8601DateFormatter()
            print(pad("NAME", 24) + pad("VERSION", 9) + pad("EXAMPLES", 10) + pad("BYTES", 12) + "CREATED")
            for dataset in response.datasets {
                let created = formatter.string(from: Date(timeIntervalSince1970: Double(dataset.createdUnixMs) / 1000))
                print(pad(dataset.name, 24) + pad(dataset.version, 9) + pad("\(dataset.examples)", 10)
                      + pad("\(dataset.bytes)", 12) + created)
            }
        }
    }
}
