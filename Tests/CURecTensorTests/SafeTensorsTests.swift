import Foundation
import Testing

@testable import CURecTensor

/// A fresh temporary directory, removed when the test's scope ends.
private final class TemporaryDirectory {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "safetensors-tests-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func file(_ name: String) -> String { path + "/" + name }
}

private let fixtureDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("Fixtures").path

/// Builds a safetensors file from a raw header string and data bytes.
private func rawFile(header: String, data: [UInt8], declaredLength: UInt64? = nil) -> [UInt8] {
    let headerBytes = Array(header.utf8)
    var bytes = [UInt8]()
    withUnsafeBytes(of: (declaredLength ?? UInt64(headerBytes.count)).littleEndian) { bytes.append(contentsOf: $0) }
    return bytes + headerBytes + data
}

private func write(_ bytes: [UInt8], to path: String) {
    _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
}

@Suite("SafeTensors")
struct SafeTensorsTests {
    @Test("write then read returns the same names, shapes, values and metadata")
    func roundTrip() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("round.safetensors")
        let weights = (0..<24).map { Float($0) * 0.5 - 3 }
        try SafeTensorsFile.write(
            path: path,
            tensors: [
                (name: "b.weight", shape: [2, 3, 4], data: weights),
                (name: "a.bias", shape: [3], data: [1, .infinity, -0.0]),
                (name: "scalar", shape: [], data: [42]),
                (name: "nothing", shape: [0, 5], data: []),
                (name: "odd \"name\"\n", shape: [1], data: [7]),
            ],
            metadata: ["format": "pt", "note": "üñí\"code\""])
        let file = try SafeTensorsFile.read(path: path)
        #expect(file.names == ["b.weight", "a.bias", "scalar", "nothing", "odd \"name\"\n"])
        #expect(file.metadata == ["format": "pt", "note": "üñí\"code\""])
        #expect(file.entry("b.weight")?.shape == [2, 3, 4])
        #expect(file.entry("b.weight")?.dtype == .f32)
        #expect(try file.floats("b.weight") == weights)
        let bias = try file.floats("a.bias")
        #expect(bias[0] == 1 && bias[1] == .infinity && bias[2] == 0 && bias[2].sign == .minus)
        #expect(try file.floats("scalar") == [42])
        #expect(try file.floats("nothing") == [])
        #expect(try file.floats("odd \"name\"\n") == [7])
        #expect(file.entry("missing") == nil)

        // The data buffer starts 8-byte aligned.
        let bytes = try #require(FileManager.default.contents(atPath: path))
        let headerLength = bytes.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        #expect((8 + headerLength) % 8 == 0)
    }

    @Test("a file written by Python safetensors (numpy API) reads back exactly")
    func readsPythonFixture() throws {
        let file = try SafeTensorsFile.read(path: fixtureDirectory + "/python_numpy.safetensors")
        #expect(Set(file.names) == ["layer.weight", "layer.bias", "scale", "positions", "empty"])
        #expect(file.metadata == ["format": "np", "source": "fixture"])
        #expect(file.entry("layer.weight")?.shape == [3, 4])
        #expect(try file.floats("layer.weight") == (0..<12).map { Float($0) * 0.25 - 1 })
        #expect(file.entry("layer.bias")?.dtype == .f16)
        #expect(try file.floats("layer.bias") == [0.5, -2, 65504])
        #expect(file.entry("scale")?.shape == [])
        #expect(try file.floats("scale") == [Float(3.14159265358979)])
        #expect(file.entry("positions")?.dtype == .i64)
        #expect(file.entry("positions")?.shape == [1, 5])
        #expect(try file.floats("empty") == [])
        #expect(throws: SafeTensorsError.unsupportedConversion(
            path: file.path, tensor: "positions", dtype: .i64)) { try file.floats("positions") }
        #expect(throws: SafeTensorsError.tensorNotFound(path: file.path, tensor: "nope")) {
            try file.floats("nope")
        }
    }

    @Test("BF16 and F16 special values convert to Float32")
    func halfPrecisionConversions() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("half.safetensors")
        // BF16: 1.0, -2.5, +inf. F16: smallest subnormal, -0, NaN, 1/3 (rounded).
        let bf16: [UInt16] = [0x3F80, 0xC020, 0x7F80]
        let f16: [UInt16] = [0x0001, 0x8000, 0x7E00, 0x3555]
        var data = [UInt8]()
        for value in bf16 + f16 { data += [UInt8(value & 0xFF), UInt8(value >> 8)] }
        let header = #"{"b":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]},"h":{"dtype":"F16","shape":[4],"data_offsets":[6,14]}}"#
        write(rawFile(header: header, data: data), to: path)
        let file = try SafeTensorsFile.read(path: path)
        #expect(try file.floats("b") == [1, -2.5, .infinity])
        let h = try file.floats("h")
        #expect(h[0] == Float(sign: .plus, exponent: -24, significand: 1))
        #expect(h[1] == 0 && h[1].sign == .minus)
        #expect(h[2].isNaN)
        #expect(abs(h[3] - 1.0 / 3.0) < 1e-3)
    }

    @Test("malformed files throw a descriptive error naming the file and tensor")
    func malformedFiles() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("bad.safetensors")
        let okEntry = #""t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#
        let eight = [UInt8](repeating: 0, count: 8)
        let cases: [(String, [UInt8], (SafeTensorsError) -> Bool)] = [
            ("empty file", [], { if case .truncated = $0 { true } else { false } }),
            ("short length", [1, 0, 0], { if case .truncated = $0 { true } else { false } }),
            ("length past end", rawFile(header: "{}", data: [], declaredLength: 1 << 40),
             { if case .truncated = $0 { true } else { false } }),
            ("bad JSON", rawFile(header: "{\"t\":", data: []),
             { if case .invalidHeader = $0 { true } else { false } }),
            ("not an object", rawFile(header: "[1,2]", data: []),
             { if case .invalidHeader = $0 { true } else { false } }),
            ("metadata not strings", rawFile(header: #"{"__metadata__":{"a":1}}"#, data: []),
             { if case .invalidHeader = $0 { true } else { false } }),
            ("offsets out of range", rawFile(header: "{\(okEntry)}", data: [0, 0, 0, 0]),
             { if case .invalidTensor(_, "t", _) = $0 { true } else { false } }),
            ("reversed offsets", rawFile(header: #"{"t":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#, data: eight),
             { if case .invalidTensor(_, "t", _) = $0 { true } else { false } }),
            ("shape mismatch", rawFile(header: #"{"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: eight),
             { if case .invalidTensor(_, "t", _) = $0 { true } else { false } }),
            ("negative dim", rawFile(header: #"{"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, data: eight),
             { if case .invalidTensor(_, "t", _) = $0 { true } else { false } }),
            ("fractional offset", rawFile(header: #"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8.5]}}"#, data: eight),
             { if case .invalidTensor(_, "t", _) = $0 { true } else { false } }),
            ("huge shape", rawFile(header: #"{"t":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#, data: eight),
             { if case .invalidTensor(_, "t", _) = $0 { true } else { false } }),
            ("unknown dtype", rawFile(header: #"{"t":{"dtype":"F128","shape":[2],"data_offsets":[0,8]}}"#, data: eight),
             { if case .invalidTensor(_, "t", _) = $0 { true } else { false } }),
            ("missing offsets", rawFile(header: #"{"t":{"dtype":"F32","shape":[2]}}"#, data: eight),
             { if case .invalidTensor(_, "t", _) = $0 { true } else { false } }),
            ("overlap", rawFile(header: #"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"u":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: eight),
             { if case .invalidTensor(_, "u", _) = $0 { true } else { false } }),
        ]
        for (label, bytes, matches) in cases {
            write(bytes, to: path)
            do {
                _ = try SafeTensorsFile.read(path: path)
                Issue.record("\(label): expected an error")
            } catch {
                #expect(matches(error), "\(label): unexpected \(error)")
                #expect(error.description.contains(path), "\(label): message lacks the path")
            }
        }
        #expect(throws: SafeTensorsError.self) { try SafeTensorsFile.read(path: dir.file("missing")) }
        #expect(throws: SafeTensorsError.self) { try SafeTensorsFile.read(path: dir.path) }
    }

    @Test("every truncation and random byte corruption of a valid file is handled without crashing")
    func truncationAndCorruption() throws {
        let dir = TemporaryDirectory()
        let original = try #require(FileManager.default.contents(atPath: fixtureDirectory + "/python_numpy.safetensors"))
        let path = dir.file("mutated.safetensors")
        for length in 0..<original.count {
            write(Array(original.prefix(length)), to: path)
            #expect(throws: SafeTensorsError.self) { try SafeTensorsFile.read(path: path) }
        }
        var generator = SplitMix64(seed: 7)
        for _ in 0..<300 {
            var bytes = Array(original)
            for _ in 0..<3 {
                let index = Int(generator.next() % UInt64(bytes.count))
                bytes[index] = UInt8(truncatingIfNeeded: generator.next())
            }
            write(bytes, to: path)
            // Either outcome is fine; reading every tensor must not crash.
            if let file = try? SafeTensorsFile.read(path: path) {
                for name in file.names { _ = try? file.floats(name) }
            }
        }
    }

    @Test("write rejects inconsistent tensors")
    func writeValidation() {
        let dir = TemporaryDirectory()
        let path = dir.file("w.safetensors")
        #expect(throws: SafeTensorsError.self) {
            try SafeTensorsFile.write(path: path, tensors: [(name: "x", shape: [2, 2], data: [1, 2, 3])], metadata: [:])
        }
        #expect(throws: SafeTensorsError.self) {
            try SafeTensorsFile.write(
                path: path, tensors: [(name: "x", shape: [1], data: [1]), (name: "x", shape: [1], data: [2])],
                metadata: [:])
        }
        #expect(throws: SafeTensorsError.self) {
            try SafeTensorsFile.write(path: path, tensors: [(name: "__metadata__", shape: [1], data: [1])], metadata: [:])
        }
        #expect(!FileManager.default.fileExists(atPath: path))
    }
}

/// Small deterministic generator for the corruption test.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
