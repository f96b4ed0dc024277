import Foundation

/// Reading and writing the small text files tokenizers are stored in.
enum TokenizerFiles {
    /// The whole file as UTF-8 text.
    static func readText(_ path: String) throws(TokenizerError) -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .io(path: path, reason: "cannot read the file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw .invalidFile(path: path, line: nil, reason: "not valid UTF-8")
        }
        return text
    }

    /// The whole file parsed as JSON.
    static func readJSON(_ path: String) throws(TokenizerError) -> Any {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .io(path: path, reason: "cannot read the file")
        }
        do {
            return try JSONSerialization.jsonObject(with: data, options: [])
        } catch {
            throw .invalidFile(path: path, line: nil, reason: "not valid JSON (\(error.localizedDescription))")
        }
    }

    /// Writes `text` as UTF-8, replacing the file atomically.
    static func writeText(_ text: String, to path: String) throws(TokenizerError) {
        do {
            try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw .io(path: path, reason: "cannot write: \(error.localizedDescription)")
        }
    }

    /// Serialises `object` as JSON with sorted keys, replacing the file atomically.
    static func writeJSON(_ object: Any, to path: String, pretty: Bool = false) throws(TokenizerError) {
        do {
            var options: JSONSerialization.WritingOptions = [.sortedKeys, .withoutEscapingSlashes]
            if pretty { options.insert(.prettyPrinted) }
            let data = try JSONSerialization.data(withJSONObject: object, options: options)
            try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw .io(path: path, reason: "cannot write JSON: \(error.localizedDescription)")
        }
    }
}
