import CURecTensor
import Foundation
import Testing

@testable import CURecModels

private func cosine(_ a: [Float], _ b: [Float]) -> Double {
    var dot = 0.0, na = 0.0, nb = 0.0
    for (x, y) in zip(a, b) {
        dot += Double(x) * Double(y)
        na += Double(x) * Double(x)
        nb += Double(y) * Double(y)
    }
    return dot / (na.squareRoot() * nb.squareRoot())
}

@Suite("MiniLM encoder (all-MiniLM-L6-v2)", .enabled(if: MiniLMAssets.available, "all-MiniLM-L6-v2 weights unavailable (no pip)"))
struct MiniLMEncoderTests {
    static let encoder: Result<MiniLMEncoder, MiniLMError> = Result { () throws(MiniLMError) in
        try MiniLMEncoder(directory: MiniLMAssets.directory)
    }

    @Test("embeddings of the 20 fixture sentences agree with sentence-transformers (cosine ≥ 0.999)")
    func matchesSentenceTransformers() throws {
        let encoder = try Self.encoder.get()
        let reference = try MiniLMReference.load()
        #expect(reference.sentences.count == 20)
        let vectors = encoder.encode(reference.sentences.map(\.text), batchSize: 8)
        for (sentence, vector) in zip(reference.sentences, vectors) {
            #expect(vector.count == 384)
            let similarity = cosine(vector, sentence.embedding)
            #expect(similarity >= 0.999, "cosine \(similarity) for \(sentence.text.prefix(40).debugDescription)")
            let norm = vector.reduce(0) { $0 + $1 * $1 }.squareRoot()
            #expect(abs(norm - 1) < 1e-4)
        }
        let worst = zip(reference.sentences, vectors).map { cosine($1, $0.embedding) }.min() ?? 0
        print("MiniLM: lowest cosine to sentence-transformers over 20 sentences: \(worst)")
    }

    @Test("a text's embedding does not depend on its batch, its position or the batch size")
    func batchingDoesNotChangeResults() throws {
        let encoder = try Self.encoder.get()
        let texts = ["short", "a somewhat longer sentence about movies and the people who watch them", "mid length text"]
        let together = encoder.encode(texts, batchSize: 3)
        let alone = texts.map { encoder.encode([$0])[0] }
        let reversed = Array(encoder.encode(texts.reversed(), batchSize: 2).reversed())
        for i in texts.indices {
            #expect(cosine(together[i], alone[i]) > 0.99999)
            #expect(cosine(reversed[i], alone[i]) > 0.99999)
        }
        #expect(encoder.encode([]).isEmpty)
    }

    @Test("encode(tokenIDs:) rejects ids outside the vocabulary and over-long rows")
    func tokenIDValidation() throws {
        let encoder = try Self.encoder.get()
        #expect(throws: MiniLMError.self) { try encoder.encode(tokenIDs: [[101, 40000, 102]]) }
        #expect(throws: MiniLMError.self) { try encoder.encode(tokenIDs: [[101, -1, 102]]) }
        #expect(throws: MiniLMError.self) { try encoder.encode(tokenIDs: [[]]) }
        #expect(throws: MiniLMError.self) { try encoder.encode(tokenIDs: [[Int32](repeating: 1000, count: 513)]) }
        let batch = encoder.tokenizer.encodeBatch(["hello world", "hi"])
        let fromBatch = try encoder.encode(batch: batch)
        let fromText = encoder.encode(["hello world", "hi"])
        #expect(zip(fromBatch, fromText).allSatisfy { cosine($0, $1) > 0.99999 })
    }
}

/// A tiny random BERT written to disk, to test loading without the real weights.
private struct TinyBert {
    static let configuration = MiniLMConfiguration(
        vocabularySize: 12, hiddenSize: 8, layers: 2, heads: 2, intermediateSize: 16, maxPositions: 16,
        tokenTypes: 2, layerNormEpsilon: 1e-12, maxSequenceLength: 16)
    static let vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "on", "mat", ".", "a", "dog"]

    static func tensors(prefix: String, seed: UInt64) -> [(name: String, shape: [Int], data: [Float])] {
        let c = configuration
        var state = seed
        func random(_ shape: [Int]) -> [Float] {
            (0..<shape.reduce(1, *)).map { _ in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return Float(Int64(bitPattern: state >> 11) % 2000) / 10000
            }
        }
        let h = c.hiddenSize, f = c.intermediateSize
        var list: [(name: String, shape: [Int], data: [Float])] = []
        func add(_ name: String, _ shape: [Int]) { list.append((name: prefix + name, shape: shape, data: random(shape))) }
        add("embeddings.word_embeddings.weight", [c.vocabularySize, h])
        add("embeddings.position_embeddings.weight", [c.maxPositions, h])
        add("embeddings.token_type_embeddings.weight", [c.tokenTypes, h])
        add("embeddings.LayerNorm.weight", [h])
        add("embeddings.LayerNorm.bias", [h])
        for l in 0..<c.layers {
            let p = "encoder.layer.\(l)."
            for part in ["query", "key", "value"] {
                add(p + "attention.self.\(part).weight", [h, h])
                add(p + "attention.self.\(part).bias", [h])
            }
            add(p + "attention.output.dense.weight", [h, h])
            add(p + "attention.output.dense.bias", [h])
            add(p + "attention.output.LayerNorm.weight", [h])
            add(p + "attention.output.LayerNorm.bias", [h])
            add(p + "intermediate.dense.weight", [f, h])
            add(p + "intermediate.dense.bias", [f])
            add(p + "output.dense.weight", [h, f])
            add(p + "output.dense.bias", [h])
            add(p + "output.LayerNorm.weight", [h])
            add(p + "output.LayerNorm.bias", [h])
        }
        return list
    }
}

@Suite("MiniLM weight loading")
struct MiniLMLoadingTests {
    let directory = NSTemporaryDirectory() + "minilm-tests-\(UUID().uuidString)"

    init() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try TinyBert.vocabulary.joined(separator: "\n").write(toFile: directory + "/vocab.txt", atomically: true, encoding: .utf8)
    }

    func encoder(_ tensors: [(name: String, shape: [Int], data: [Float])]) throws(MiniLMError) -> MiniLMEncoder {
        let path = directory + "/model-\(UUID().uuidString).safetensors"
        do {
            try SafeTensorsFile.write(path: path, tensors: tensors, metadata: [:])
        } catch {
            throw .weights(error)
        }
        return try MiniLMEncoder(modelPath: path, vocabPath: directory + "/vocab.txt", configuration: TinyBert.configuration)
    }

    @Test("weights with and without the bert. prefix load and give the same embeddings")
    func prefixHandling() throws {
        let plain = try encoder(TinyBert.tensors(prefix: "", seed: 1))
        let prefixed = try encoder(TinyBert.tensors(prefix: "bert.", seed: 1))
        let texts = ["the cat sat on the mat.", "a dog"]
        let a = plain.encode(texts), b = prefixed.encode(texts)
        #expect(a == b)
        #expect(a.allSatisfy { $0.count == 8 })
    }

    @Test("a missing tensor or a wrong shape is reported by name")
    func validation() throws {
        var missing = TinyBert.tensors(prefix: "", seed: 2)
        missing.removeAll { $0.name == "encoder.layer.1.output.dense.bias" }
        do {
            _ = try encoder(missing)
            Issue.record("expected a missing tensor")
        } catch {
            guard case let .missingTensor(_, name) = error else { throw error }
            #expect(name == "encoder.layer.1.output.dense.bias")
        }

        var wrong = TinyBert.tensors(prefix: "", seed: 3)
        if let index = wrong.firstIndex(where: { $0.name == "encoder.layer.0.intermediate.dense.weight" }) {
            wrong[index] = (name: wrong[index].name, shape: [8, 16], data: wrong[index].data)
        }
        do {
            _ = try encoder(wrong)
            Issue.record("expected a shape mismatch")
        } catch {
            guard case let .shapeMismatch(_, name, expected, actual) = error else { throw error }
            #expect(name == "encoder.layer.0.intermediate.dense.weight")
            #expect(expected == [16, 8] && actual == [8, 16])
            #expect(error.description.contains("intermediate.dense.weight"))
        }
        #expect(throws: MiniLMError.self) {
            try MiniLMEncoder(modelPath: directory + "/none.safetensors", vocabPath: directory + "/vocab.txt", configuration: TinyBert.configuration)
        }
    }
}

@Suite("MiniLM kernels")
struct MiniLMKernelTests {
    @Test("the vectorisable erf used by GELU agrees with libm erf to Float32 precision")
    func erfAccuracy() {
        var worst: Double = 0
        var z: Float = -8
        while z <= 8 {
            worst = max(worst, abs(Double(EncoderKernels.vectorErf(z)) - erf(Double(z))))
            z += 1.0 / 1024
        }
        #expect(worst < 1e-7, "largest |error| \(worst)")
        #expect(EncoderKernels.vectorErf(0) == 0)
        #expect(EncoderKernels.vectorErf(.infinity) == 1 && EncoderKernels.vectorErf(-.infinity) == -1)
    }

    @Test("GELU matches x·Φ(x) computed with libm erf")
    func geluMatchesDefinition() {
        var values = (0..<20000).map { Float($0 - 10000) / 1000 }
        let expected = values.map { v in Double(v) * 0.5 * (1 + erf(Double(v) / 2.0.squareRoot())) }
        values.withUnsafeMutableBufferPointer { buffer in
            if let base = buffer.baseAddress { EncoderKernels.gelu(base, count: buffer.count) }
        }
        let worst = zip(values, expected).map { abs(Double($0) - $1) / max(1, abs($1)) }.max() ?? 0
        #expect(worst < 1e-6, "largest relative error \(worst)")
    }
}
