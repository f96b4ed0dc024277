import CURecModels
import CURecTensor
import Foundation

/// SmolLM2-135M-Instruct (GGUF, Q4_1), fetched by `scripts/fetch-lm` when absent.
enum SmolLM2Assets {
    static let directory = ModelsFixturePaths.repositoryRoot + "/var/models/SmolLM2-135M-Instruct"
    static var modelPath: String { directory + "/SmolLM2-135M-Instruct.Q4_1.gguf" }

    /// True once the file is present. Runs the fetch script at most once per process; false
    /// only when pip is not installed, so the tests that need the model are skipped.
    static let available: Bool = {
        if FileManager.default.fileExists(atPath: modelPath) { return true }
        guard ModelsFixturePaths.run("/usr/bin/env", ["python3", "-m", "pip", "--version"]) == 0 else {
            print("SmolLM2 tests skipped: pip is unavailable, so scripts/fetch-lm cannot fetch the model")
            return false
        }
        let status = ModelsFixturePaths.run(ModelsFixturePaths.repositoryRoot + "/scripts/fetch-lm", [])
        if status != 0 { print("scripts/fetch-lm exited with \(status); the SmolLM2 tests will fail") }
        // Let the tests run (and fail loudly) when pip exists but the fetch did not work.
        return true
    }()

    /// The model's tokenizer description, read from the GGUF file.
    static func tokenizerDescription() throws -> PretrainedTokenizerDescription {
        try PretrainedTokenizerDescription(gguf: GGUFFile.read(path: modelPath))
    }
}

/// `smollm2_tokenizer_reference.json`, written by `Fixtures/make_smollm2_tokenizer_reference.py`.
struct SmolLM2TokenizerReference: Decodable {
    struct Case: Decodable {
        let text: String
        let ids: [Int32]
        let decoded: String
        let ids_without_special_tokens: [Int32]?
        let gguf_conversion_ids: [Int32]?
    }
    struct Message: Decodable {
        let role: String
        let content: String
    }
    struct Chat: Decodable {
        let messages: [Message]
        let add_generation_prompt: Bool
        let text: String
        let ids: [Int32]
    }
    let model_sha256: String
    let bos_token_id: Int32
    let eos_token_id: Int32
    let cases: [Case]
    let chats: [Chat]

    static func load() throws -> SmolLM2TokenizerReference {
        let url = URL(fileURLWithPath: ModelsFixturePaths.directory + "/smollm2_tokenizer_reference.json")
        return try JSONDecoder().decode(SmolLM2TokenizerReference.self, from: Data(contentsOf: url))
    }
}
