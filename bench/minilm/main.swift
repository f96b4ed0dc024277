// Times MiniLMEncoder.encode over the sentences of a file (one per line) and prints
// `sentences_per_second <rate>`. Used by bench/minilm-encode.
//
//   minilm-bench MODEL_DIR SENTENCES_FILE BATCH_SIZE
import CURecModels
import Foundation

let arguments = CommandLine.arguments
guard arguments.count == 4, let batchSize = Int(arguments[3]) else {
    FileHandle.standardError.write(Data("usage: minilm-bench MODEL_DIR SENTENCES_FILE BATCH_SIZE\n".utf8))
    exit(2)
}
do {
    let encoder = try MiniLMEncoder(directory: arguments[1])
    let sentences = try String(contentsOfFile: arguments[2], encoding: .utf8)
        .split(separator: "\n").map(String.init)
    _ = encoder.encode(Array(sentences.prefix(64)), batchSize: batchSize)  // warm-up
    let clock = ContinuousClock()
    var vectors: [[Float]] = []
    let elapsed = clock.measure { vectors = encoder.encode(sentences, batchSize: batchSize) }
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    precondition(vectors.count == sentences.count)
    print("sentences_per_second \(Double(sentences.count) / seconds)")
} catch {
    FileHandle.standardError.write(Data("minilm-bench: \(error)\n".utf8))
    exit(1)
}
