import Foundation

/// SmolLM2-135M-Instruct (GGUF, Q4_1), fetched by `scripts/fetch-lm` when absent.
enum LlamaAssets {
    static let directory = ModelsFixturePaths.repositoryRoot + "/var/models/SmolLM2-135M-Instruct"
    static var modelPath: String { directory + "/SmolLM2-135M-Instruct.Q4_1.gguf" }

    /// True once the file is present. Runs the fetch script at most once per process; false
    /// only when pip is not installed, so the tests that need the model are skipped.
    static let available: Bool = {
        if FileManager.default.fileExists(atPath: modelPath) { return true }
        guard run("/usr/bin/env", ["python3", "-m", "pip", "--version"]) == 0 else {
            print("SmolLM2 tests skipped: pip is unavailable, so scripts/fetch-lm cannot fetch the model")
            return false
        }
        let status = run(ModelsFixturePaths.repositoryRoot + "/scripts/fetch-lm", [])
        if status != 0 { print("scripts/fetch-lm exited with \(status); the SmolLM2 tests will fail") }
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

/// `llama_reference.json`, written by `Fixtures/make_llama_reference.py`.
struct LlamaReference: Decodable {
    struct Prompt: Decodable {
        let text: String
        let ids: [Int]
        /// `[T][vocab_ids.count]`
        let logits: [[Double]]
        let argmax: [Int]
        let max_logit: [Double]
        let top2_margin: [Double]
        let logsumexp: [Double]
        let mean_cross_entropy: Double
    }
    struct Greedy: Decodable {
        let prompt: Int
        let tokens: [Int]
        let float32_agrees: Bool
        let min_top2_margin: Double
    }
    struct Rows: Decodable {
        let head_size: Int
        let rows: [Int]
        let columns: Int
        let q_proj: [[Float]]
        let k_proj: [[Float]]
    }
    let vocab_ids: [Int]
    let float32_vs_float64_max_abs_logit: Double
    let float32_vs_float64_max_abs_cross_entropy: Double
    let prompts: [Prompt]
    let greedy: [Greedy]
    let qk_rows: Rows

    static func load() throws -> LlamaReference {
        let url = URL(fileURLWithPath: ModelsFixturePaths.directory + "/llama_reference.json")
        return try JSONDecoder().decode(LlamaReference.self, from: Data(contentsOf: url))
    }
}

/// Minimal GGUF v3 writer for the loader's refusal tests: string, uint32 and float32
/// metadata, float32 tensors.
struct TinyGGUF {
    enum Value { case string(String), u32(UInt32), f32(Float) }
    var metadata: [(String, Value)] = []
    var tensors: [(name: String, shape: [Int], values: [Float])] = []

    var bytes: [UInt8] {
        var out: [UInt8] = []
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func string(_ s: String) { u64(UInt64(s.utf8.count)); out.append(contentsOf: s.utf8) }
        out.append(contentsOf: Array("GGUF".utf8))
        u32(3)
        u64(UInt64(tensors.count))
        u64(UInt64(metadata.count))
        for (key, value) in metadata {
            string(key)
            switch value {
            case .string(let s): u32(8); string(s)
            case .u32(let v): u32(4); u32(v)
            case .f32(let v): u32(6); u32(v.bitPattern)
            }
        }
        var offset = 0
        for t in tensors {
            string(t.name)
            u32(UInt32(t.shape.count))
            for d in t.shape.reversed() { u64(UInt64(d)) }
            u32(0)   // F32
            u64(UInt64(offset))
            offset += (t.values.count * 4 + 31) / 32 * 32
        }
        while out.count % 32 != 0 { out.append(0) }
        for t in tensors {
            for v in t.values { u32(v.bitPattern) }
            while out.count % 32 != 0 { out.append(0) }
        }
        return out
    }

    /// Writes the file to a new temporary path.
    func write() throws -> String {
        let path = NSTemporaryDirectory() + "llama-test-\(UUID().uuidString).gguf"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }
}
