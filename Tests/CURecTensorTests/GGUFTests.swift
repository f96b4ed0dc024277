import Foundation
import Testing

@testable import CURecTensor

// MARK: - Writing GGUF files for the tests

/// Little-endian byte assembly of GGUF files, including deliberately broken ones.
struct GGUFBytes {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func string(_ s: String) {
        u64(UInt64(s.utf8.count))
        bytes.append(contentsOf: s.utf8)
    }
    mutating func pad(to alignment: Int) {
        while bytes.count % alignment != 0 { bytes.append(0) }
    }

    /// The GGUF value type id of `value`.
    static func typeID(_ value: GGUFValue) -> UInt32 {
        switch value {
        case .uint8: return 0
        case .int8: return 1
        case .uint16: return 2
        case .int16: return 3
        case .uint32: return 4
        case .int32: return 5
        case .float32: return 6
        case .bool: return 7
        case .string: return 8
        case .array: return 9
        case .uint64: return 10
        case .int64: return 11
        case .float64: return 12
        }
    }

    /// Writes the value without its type id; an empty array is written as an array of int32.
    mutating func payload(_ value: GGUFValue) {
        switch value {
        case let .uint8(v): u8(v)
        case let .int8(v): u8(UInt8(bitPattern: v))
        case let .uint16(v): u16(v)
        case let .int16(v): u16(UInt16(bitPattern: v))
        case let .uint32(v): u32(v)
        case let .int32(v): u32(UInt32(bitPattern: v))
        case let .float32(v): u32(v.bitPattern)
        case let .bool(v): u8(v ? 1 : 0)
        case let .string(v): string(v)
        case let .uint64(v): u64(v)
        case let .int64(v): u64(UInt64(bitPattern: v))
        case let .float64(v): u64(v.bitPattern)
        case let .array(elements):
            u32(elements.first.map(Self.typeID) ?? 5)
            u64(UInt64(elements.count))
            for element in elements { payload(element) }
        }
    }

    mutating func entry(_ key: String, _ value: GGUFValue) {
        string(key)
        u32(Self.typeID(value))
        payload(value)
    }

    mutating func tensorInfo(_ name: String, ne: [UInt64], type: UInt32, offset: UInt64) {
        string(name)
        u32(UInt32(ne.count))
        for d in ne { u64(d) }
        u32(type)
        u64(offset)
    }

    mutating func header(version: UInt32 = 3, tensors: UInt64, metadata: UInt64) {
        bytes.append(contentsOf: Array("GGUF".utf8))
        u32(version)
        u64(tensors)
        u64(metadata)
    }
}

/// One tensor of a test file: its name, row-major shape, type, stored bytes and the values
/// they must dequantize to.
struct TestTensor {
    var name: String
    var shape: [Int]
    var type: GGMLType
    var data: [UInt8]
    var expected: [Float]
}

enum TestBlocks {
    static func half(_ bits: UInt16) -> [UInt8] { [UInt8(bits & 0xFF), UInt8(bits >> 8)] }

    /// Packs 32 4-bit values: byte j holds element j (low nibble) and element j + 16 (high).
    static func nibbles(_ q: [UInt8]) -> [UInt8] {
        (0..<16).map { q[$0] | (q[$0 + 16] << 4) }
    }

    static let f32 = TestTensor(
        name: "plain.f32", shape: [2, 1, 3], type: .f32,
        data: ([1.5, -2, 0.25, 1e-30, .infinity, -0.0] as [Float]).flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian, Array.init) },
        expected: [1.5, -2, 0.25, 1e-30, .infinity, -0.0])

    static let f16 = TestTensor(
        name: "plain.f16", shape: [5], type: .f16,
        data: [0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001].flatMap(half),
        expected: [1, -2, 0.5, 65504, Float(sign: .plus, exponent: -24, significand: 1)])

    static let bf16 = TestTensor(
        name: "plain.bf16", shape: [2], type: .bf16,
        data: [0x3F80, 0xC0A0].flatMap(half), expected: [1, -5])

    /// Two rows of one block each: d = 0.5 then d = -0.25, q = i - 16 then 127 - 8i.
    static let q8_0: TestTensor = {
        var data: [UInt8] = [], expected: [Float] = []
        let first: [Int] = (0..<32).map { $0 - 16 }
        let second: [Int] = (0..<32).map { 127 - 8 * $0 }
        let blocks: [(UInt16, Float, [Int])] = [(0x3800, 0.5, first), (0xB400, -0.25, second)]
        for (dBits, d, q) in blocks {
            data += half(dBits) + q.map { UInt8(bitPattern: Int8($0)) }
            expected += q.map { Float($0) * d }
        }
        return TestTensor(name: "blocks.q8_0", shape: [2, 32], type: .q8_0, data: data, expected: expected)
    }()

    /// One row of two blocks: d = 0.25 then d = 3, q = i % 16 then 15 - 7i % 16 (i over the block).
    static let q4_0: TestTensor = {
        var data: [UInt8] = [], expected: [Float] = []
        let first: [UInt8] = (0..<32).map { UInt8($0 % 16) }
        let second: [UInt8] = (0..<32).map { (i: Int) -> UInt8 in UInt8(15 - (i * 7) % 16) }
        let blocks: [(UInt16, Float, [UInt8])] = [(0x3400, 0.25, first), (0x4200, 3, second)]
        for (dBits, d, q) in blocks {
            data += half(dBits) + nibbles(q)
            expected += q.map { (Float(Int($0)) - 8) * d }
        }
        return TestTensor(name: "blocks.q4_0", shape: [64], type: .q4_0, data: data, expected: expected)
    }()

    /// Three rows of one block: (d, m) = (0.125, -1), (2, 0.5), (-0.5, 3).
    static let q4_1: TestTensor = {
        var data: [UInt8] = [], expected: [Float] = []
        let rows: [(UInt16, Float, UInt16, Float)] = [
            (0x3000, 0.125, 0xBC00, -1), (0x4000, 2, 0x3800, 0.5), (0xB800, -0.5, 0x4200, 3),
        ]
        for (row, (dBits, d, mBits, m)) in rows.enumerated() {
            let q = (0..<32).map { UInt8(($0 * (row + 3) + row) % 16) }
            data += half(dBits) + half(mBits) + nibbles(q)
            expected += q.map { Float($0) * d + m }
        }
        return TestTensor(name: "blocks.q4_1", shape: [3, 32], type: .q4_1, data: data, expected: expected)
    }()

    /// A known type the reader cannot convert: one Q5_K block of zeros.
    static let q5_K = TestTensor(
        name: "blocks.q5_k", shape: [256], type: .q5_K, data: [UInt8](repeating: 0, count: 176), expected: [])

    static let empty = TestTensor(name: "empty", shape: [0, 4], type: .f32, data: [], expected: [])

    /// Every test tensor; the last one's data ends the file.
    static let all = [f32, f16, bf16, empty, q8_0, q4_0, q4_1, q5_K]
}

/// The metadata of the round-trip file: every value type, nested and empty arrays.
let sampleMetadata: [(String, GGUFValue)] = [
    ("general.architecture", .string("test")),
    ("general.alignment", .uint32(64)),
    ("t.uint8", .uint8(250)),
    ("t.int8", .int8(-100)),
    ("t.uint16", .uint16(65000)),
    ("t.int16", .int16(-32000)),
    ("t.uint32", .uint32(4_000_000_000)),
    ("t.int32", .int32(-2_000_000_000)),
    ("t.float32", .float32(0.1)),
    ("t.bool.true", .bool(true)),
    ("t.bool.false", .bool(false)),
    ("t.string", .string("héllo \"wörld\"\n\u{1F600}")),
    ("t.string.empty", .string("")),
    ("t.uint64", .uint64(UInt64.max)),
    ("t.int64", .int64(Int64.min)),
    ("t.float64", .float64(-1.0 / 3.0)),
    ("t.array.strings", .array([.string("a"), .string(""), .string("ü")])),
    ("t.array.int32", .array([.int32(3), .int32(-1), .int32(7)])),
    ("t.array.float32", .array([.float32(1.5), .float32(-0.25)])),
    ("t.array.empty", .array([])),
    ("t.array.nested", .array([.array([.uint16(1), .uint16(2)]), .array([.uint16(3)])])),
    ("t.array.deep", .array([.array([.array([.string("x")]), .array([.string("y"), .string("z")])])])),
    ("t.array.bool", .array([.bool(true), .bool(false)])),
]

/// A complete file holding `tensors` (data at offsets aligned to `alignment`, no padding after
/// the last tensor) and `metadata`.
func ggufFile(
    version: UInt32 = 3, metadata: [(String, GGUFValue)], tensors: [TestTensor], alignment: Int
) -> (bytes: [UInt8], infosEnd: Int, dataStart: Int, offsets: [Int]) {
    var out = GGUFBytes()
    out.header(version: version, tensors: UInt64(tensors.count), metadata: UInt64(metadata.count))
    for (key, value) in metadata { out.entry(key, value) }
    var offsets: [Int] = [], offset = 0
    for tensor in tensors {
        offsets.append(offset)
        out.tensorInfo(
            tensor.name, ne: tensor.shape.reversed().map(UInt64.init), type: tensor.type.rawValue,
            offset: UInt64(offset))
        offset += tensor.data.count
        offset = (offset + alignment - 1) / alignment * alignment
    }
    let infosEnd = out.bytes.count
    out.pad(to: alignment)
    let dataStart = out.bytes.count
    for (tensor, offset) in zip(tensors, offsets) {
        while out.bytes.count < dataStart + offset { out.u8(0) }
        out.bytes += tensor.data
    }
    return (out.bytes, infosEnd, dataStart, offsets)
}

// MARK: - Helpers

/// A fresh temporary directory, removed when the test's scope ends.
private final class TemporaryDirectory {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "gguf-tests-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func file(_ name: String) -> String { path + "/" + name }

    /// Writes `bytes` to a new file and returns its path.
    func write(_ bytes: [UInt8], name: String = "test.gguf") -> String {
        let path = file(name)
        #expect(throws: Never.self) { try Data(bytes).write(to: URL(fileURLWithPath: path)) }
        return path
    }
}

/// The error `read` throws for `bytes`, or nil if it reads them.
private func readError(_ bytes: [UInt8], in dir: TemporaryDirectory) -> GGUFError? {
    let path = dir.write(bytes)
    do {
        _ = try GGUFFile.read(path: path)
        return nil
    } catch {
        #expect(error.description.contains(path), "error does not name the file: \(error)")
        return error
    }
}

/// A minimal valid prefix: header with the given counts and optional metadata.
private func header(tensors: UInt64, metadata: [(String, GGUFValue)] = []) -> GGUFBytes {
    var out = GGUFBytes()
    out.header(tensors: tensors, metadata: UInt64(metadata.count))
    for (key, value) in metadata { out.entry(key, value) }
    return out
}

// MARK: - Tests

@Suite("GGUF")
struct GGUFTests {
    @Test("a file with every metadata type and tensors of each supported type reads back")
    func roundTrip() throws {
        let dir = TemporaryDirectory()
        let written = ggufFile(metadata: sampleMetadata, tensors: TestBlocks.all, alignment: 64)
        let file = try GGUFFile.read(path: dir.write(written.bytes))
        #expect(file.version == 3)
        #expect(file.alignment == 64)
        #expect(file.dataStart == written.dataStart && file.dataStart % 64 == 0)
        #expect(file.metadataKeys == sampleMetadata.map(\.0))
        for (key, value) in sampleMetadata {
            #expect(file.metadata[key] == value, "metadata \(key)")
        }
        #expect(file.metadata.count == sampleMetadata.count)

        // Typed accessors: integers of any width that fit, floats from either width.
        #expect(file.int("t.uint8") == 250)
        #expect(file.int("t.int64") == Int(Int64.min))
        #expect(file.int("t.uint64") == nil)  // does not fit an Int
        #expect(file.int("t.uint32") == 4_000_000_000)
        #expect(file.int("t.string") == nil)
        #expect(file.float("t.float32") == Float(0.1))
        #expect(file.float("t.float64") == Float(-1.0 / 3.0))
        #expect(file.float("t.int16") == -32000)
        #expect(file.bool("t.bool.true") == true && file.bool("t.bool.false") == false)
        #expect(file.bool("t.uint8") == nil)
        #expect(file.string("t.string") == "héllo \"wörld\"\n\u{1F600}")
        #expect(file.string("missing") == nil)
        #expect(file.strings("t.array.strings") == ["a", "", "ü"])
        #expect(file.strings("t.array.int32") == nil)
        #expect(file.ints("t.array.int32") == [3, -1, 7])
        #expect(file.ints("t.array.empty") == [])
        #expect(file.floats(metadata: "t.array.float32") == [1.5, -0.25])
        #expect(file.floats(metadata: "t.array.int32") == [3, -1, 7])
        #expect(file.metadata["t.array.nested"]?.arrayValue?[1].arrayValue?.first?.intValue == 3)

        #expect(file.tensors.map(\.name) == TestBlocks.all.map(\.name))
        for (tensor, offset) in zip(TestBlocks.all, written.offsets) {
            let info = try #require(file.tensor(tensor.name))
            #expect(info.shape == tensor.shape, "\(tensor.name)")
            #expect(info.type == tensor.type)
            #expect(info.offset == offset && offset % 64 == 0)
            #expect(info.byteCount == tensor.data.count)
            #expect(info.elementCount == tensor.shape.reduce(1, *))
            let raw = try file.withRawBytes(tensor.name) { Array($0) }
            #expect(raw == tensor.data, "\(tensor.name) raw bytes")
            #expect(try file.data(tensor.name).withBytes { Array($0) } == tensor.data)
            guard tensor.type.isDequantizable else { continue }
            let values = try file.floats(tensor.name)
            #expect(values.count == tensor.expected.count)
            // Bitwise comparison: also checks -0.0 and infinity.
            #expect(values.map(\.bitPattern) == tensor.expected.map(\.bitPattern), "\(tensor.name) values")

            var viaPointer = [Float](repeating: .nan, count: tensor.expected.count + 1)
            try viaPointer.withUnsafeMutableBufferPointer { buffer throws(GGUFError) in
                try file.dequantize(tensor.name, into: buffer.baseAddress!)
            }
            #expect(viaPointer.dropLast().map(\.bitPattern) == tensor.expected.map(\.bitPattern))
            #expect(viaPointer.last!.isNaN)  // nothing written past the tensor
        }
        #expect(file.tensor("blocks.q4_1")?.rowLength == 32)
        #expect(file.tensor("blocks.q4_1")?.rowCount == 3)
        #expect(file.tensor("blocks.q4_1")?.rowBytes == 20)
        #expect(file.tensor("plain.f32")?.rowCount == 2)
    }

    @Test("conversion errors: unsupported type, missing tensor, wrong destination size")
    func conversionErrors() throws {
        let dir = TemporaryDirectory()
        let path = dir.write(ggufFile(metadata: [], tensors: TestBlocks.all, alignment: 32).bytes)
        let file = try GGUFFile.read(path: path)
        #expect(file.alignment == 32)
        #expect(throws: GGUFError.unsupportedType(path: path, tensor: "blocks.q5_k", type: .q5_K)) {
            try file.floats("blocks.q5_k")
        }
        let unsupported = GGUFError.unsupportedType(path: path, tensor: "blocks.q5_k", type: .q5_K).description
        #expect(unsupported.contains("Q5_K") && unsupported.contains(path) && unsupported.contains("Q4_1"))
        #expect(throws: GGUFError.tensorNotFound(path: path, tensor: "nope")) { try file.floats("nope") }
        #expect(throws: GGUFError.tensorNotFound(path: path, tensor: "nope")) {
            try file.withRawBytes("nope") { _ in 0 }
        }
        #expect(throws: GGUFError.tensorNotFound(path: path, tensor: "nope")) { try file.data("nope") }
        var small = [Float](repeating: 0, count: 5)
        #expect(throws: GGUFError.self) {
            try small.withUnsafeMutableBufferPointer { buffer throws(GGUFError) in
                try file.dequantize("blocks.q4_1", into: buffer)
            }
        }
        var exact = [Float](repeating: 0, count: 96)
        try exact.withUnsafeMutableBufferPointer { buffer throws(GGUFError) in
            try file.dequantize("blocks.q4_1", into: buffer)
        }
        #expect(exact == TestBlocks.q4_1.expected)
        #expect(try file.floats("empty") == [])
    }

    @Test("version 2 files read; versions 1, 4 and big-endian files are refused")
    func versions() throws {
        let dir = TemporaryDirectory()
        let v2 = ggufFile(version: 2, metadata: [("a", .uint8(1))], tensors: [TestBlocks.q4_0], alignment: 32)
        let file = try GGUFFile.read(path: dir.write(v2.bytes))
        #expect(file.version == 2)
        #expect(try file.floats("blocks.q4_0") == TestBlocks.q4_0.expected)
        for version: UInt32 in [0, 1, 4, 0x0300_0000, 0x0200_0000] {
            let bytes = ggufFile(version: version, metadata: [], tensors: [], alignment: 32).bytes
            guard case let .unsupportedVersion(_, found, reason) = readError(bytes, in: dir) else {
                Issue.record("version \(version) was not refused as unsupported")
                continue
            }
            #expect(found == version)
            if version >= 0x0100_0000 { #expect(reason.contains("big-endian")) }
        }
    }

    @Test("a file cut short anywhere is refused with a clear error, never a crash")
    func truncation() throws {
        let dir = TemporaryDirectory()
        let written = ggufFile(metadata: sampleMetadata, tensors: TestBlocks.all, alignment: 64)
        let infosEnd = written.infosEnd
        // One file cut shorter and shorter in place (cheaper than writing a file per length).
        let path = dir.write(written.bytes)
        #expect(throws: Never.self) { try GGUFFile.read(path: path) }
        for length in (0..<written.bytes.count).reversed() {
            #expect(truncate(path, off_t(length)) == 0)
            var error: GGUFError?
            do {
                _ = try GGUFFile.read(path: path)
            } catch let caught {
                error = caught
                #expect(caught.description.contains(path))
            }
            switch error {
            case .truncated?:
                #expect(length < infosEnd, "cut at \(length)")
            case .dataOutOfRange?:
                #expect(length >= infosEnd, "cut at \(length)")
            case .badMagic?:
                Issue.record("cut at \(length): bad magic")
            case nil:
                Issue.record("cut at \(length) of \(written.bytes.count) bytes was accepted")
            case let other?:
                // Cutting inside an entry can leave a shorter but well-formed value, e.g. a
                // string length that now runs past the end: any error is acceptable there.
                #expect(length < infosEnd, "cut at \(length): \(other)")
            }
        }
    }

    @Test("bad magic, non-files and missing files")
    func magicAndIO() throws {
        let dir = TemporaryDirectory()
        var bytes = ggufFile(metadata: [], tensors: [], alignment: 32).bytes
        bytes[3] = UInt8(ascii: "G")
        guard case let .badMagic(_, found)? = readError(bytes, in: dir) else {
            Issue.record("bad magic not reported")
            return
        }
        #expect(found.contains("47 47 55 47"))
        let safetensors = dir.file("model.safetensors")
        try SafeTensorsFile.write(path: safetensors, tensors: [(name: "w", shape: [1], data: [1])], metadata: [:])
        #expect(throws: GGUFError.self) { try GGUFFile.read(path: safetensors) }
        let safetensorsBytes = Array(try Data(contentsOf: URL(fileURLWithPath: safetensors)))
        guard case .badMagic? = readError(safetensorsBytes, in: dir) else {
            Issue.record("a safetensors file was not refused for its magic")
            return
        }
        let missing = dir.file("missing.gguf")
        #expect(throws: GGUFError.self) { try GGUFFile.read(path: missing) }
        do {
            _ = try GGUFFile.read(path: dir.path)
            Issue.record("a directory was read")
        } catch {
            guard case .io = error else { Issue.record("directory: \(error)"); return }
            #expect(error.description.contains(dir.path))
        }
    }

    @Test("absurd counts and lengths are refused before anything is allocated")
    func absurdCounts() throws {
        let dir = TemporaryDirectory()
        var out = GGUFBytes()
        out.header(tensors: 0, metadata: UInt64.max)
        guard case .invalidHeader? = readError(out.bytes, in: dir) else { Issue.record("metadata count"); return }

        out = GGUFBytes()
        out.header(tensors: UInt64.max, metadata: 0)
        guard case .invalidHeader? = readError(out.bytes, in: dir) else { Issue.record("tensor count"); return }

        out = header(tensors: 0)
        out.bytes[16] = 1  // one metadata entry
        out.u64(UInt64.max)  // key length
        out.u64(0)
        guard case .truncated? = readError(out.bytes, in: dir) else { Issue.record("key length"); return }

        out = header(tensors: 0)
        out.bytes[16] = 1
        out.string("k")
        out.u32(9)  // array
        out.u32(4)  // of uint32
        out.u64(1 << 61)
        out.bytes += [UInt8](repeating: 0, count: 64)
        guard case .truncated? = readError(out.bytes, in: dir) else { Issue.record("array length"); return }

        out = header(tensors: 0)
        out.bytes[16] = 1
        out.string("k")
        out.u32(8)  // string
        out.u64(UInt64.max - 3)
        out.bytes += Array("short".utf8)
        guard case .truncated? = readError(out.bytes, in: dir) else { Issue.record("string length"); return }

        // A huge dimension and a product that overflows.
        out = header(tensors: 1)
        out.tensorInfo("big", ne: [UInt64.max, 1], type: 0, offset: 0)
        guard case .invalidTensor(_, "big", _)? = readError(out.bytes, in: dir) else { Issue.record("dimension"); return }
        out = header(tensors: 1)
        out.tensorInfo("big", ne: [1 << 40, 1 << 40], type: 0, offset: 0)
        guard case .invalidTensor(_, "big", _)? = readError(out.bytes, in: dir) else { Issue.record("product"); return }
        out = header(tensors: 1)
        out.tensorInfo("dims", ne: [1, 1, 1, 1, 1], type: 0, offset: 0)
        guard case .invalidTensor(_, "dims", _)? = readError(out.bytes, in: dir) else { Issue.record("n_dims"); return }
        out = header(tensors: 1)
        out.string("dims")
        out.u32(UInt32.max)
        out.bytes += [UInt8](repeating: 0, count: 16)  // enough bytes for the tensor count check
        guard case .invalidTensor(_, "dims", _)? = readError(out.bytes, in: dir) else { Issue.record("n_dims max"); return }
    }

    @Test("malformed metadata: unknown type, bad bool, bad UTF-8, duplicate key, deep nesting, bad alignment")
    func malformedMetadata() throws {
        let dir = TemporaryDirectory()
        func metadataError(_ build: (inout GGUFBytes) -> Void) -> (key: String, reason: String)? {
            var out = GGUFBytes()
            out.header(tensors: 0, metadata: 1)
            build(&out)
            guard case let .invalidMetadata(_, key, reason)? = readError(out.bytes, in: dir) else { return nil }
            return (key, reason)
        }
        #expect(metadataError { $0.string("k"); $0.u32(13); $0.u64(0) }?.reason.contains("unknown value type 13") == true)
        #expect(metadataError { $0.string("k"); $0.u32(9); $0.u32(77); $0.u64(0) }?.key == "k")
        #expect(metadataError { $0.string("b"); $0.u32(7); $0.u8(2) }?.reason.contains("bool") == true)
        #expect(metadataError { $0.string("s"); $0.u32(8); $0.u64(2); $0.u8(0xC3); $0.u8(0x28) }?.key == "s")
        #expect(metadataError { $0.string("a"); $0.u32(9); $0.u32(8); $0.u64(1); $0.u64(1); $0.u8(0xFF) }?.key == "a")
        // Arrays nested 1000 deep.
        let deep = metadataError { out in
            out.string("deep")
            out.u32(9)
            for _ in 0..<1000 { out.u32(9); out.u64(1) }
            out.u32(0)
            out.u64(0)
        }
        #expect(deep?.key == "deep" && deep?.reason.contains("nest") == true)
        // Nesting up to the limit is fine.
        var nested: GGUFValue = .array([.uint8(7)])
        for _ in 0..<10 { nested = .array([nested]) }
        let okay = ggufFile(metadata: [("n", nested)], tensors: [], alignment: 32)
        #expect(try GGUFFile.read(path: dir.write(okay.bytes)).metadata["n"] == nested)

        var out = GGUFBytes()
        out.header(tensors: 0, metadata: 2)
        out.entry("same", .uint8(1))
        out.entry("same", .uint8(2))
        guard case .invalidMetadata(_, "same", _)? = readError(out.bytes, in: dir) else { Issue.record("duplicate"); return }

        for bad: GGUFValue in [.uint32(0), .uint32(48), .string("32"), .int64(-32), .uint64(1 << 40)] {
            let bytes = ggufFile(metadata: [("general.alignment", bad)], tensors: [], alignment: 32).bytes
            guard case .invalidMetadata(_, "general.alignment", _)? = readError(bytes, in: dir) else {
                Issue.record("alignment \(bad) accepted")
                continue
            }
        }
        // An invalid UTF-8 tensor name.
        out = header(tensors: 1)
        out.u64(1)
        out.u8(0xFF)
        out.u32(1); out.u64(1); out.u32(0); out.u64(0)
        guard case .invalidHeader? = readError(out.bytes, in: dir) else { Issue.record("tensor name"); return }
    }

    @Test("malformed tensor infos: unknown type, partial blocks, bad offsets, overlap, duplicates")
    func malformedTensors() throws {
        let dir = TemporaryDirectory()
        func file(_ infos: [(String, [UInt64], UInt32, UInt64)], dataBytes: Int = 256) -> [UInt8] {
            var out = GGUFBytes()
            out.header(tensors: UInt64(infos.count), metadata: 0)
            for (name, ne, type, offset) in infos { out.tensorInfo(name, ne: ne, type: type, offset: offset) }
            out.pad(to: 32)
            out.bytes += [UInt8](repeating: 0, count: dataBytes)
            return out.bytes
        }
        for rawType: UInt32 in [4, 5, 31, 99, UInt32.max] {
            guard case .unknownTensorType(_, "t", rawType)? = readError(file([("t", [4], rawType, 0)]), in: dir) else {
                Issue.record("type \(rawType) accepted")
                continue
            }
        }
        guard case .rowLengthNotBlockMultiple(_, "q", .q4_0, 33, 32)? = readError(file([("q", [33, 2], 2, 0)]), in: dir) else {
            Issue.record("partial block")
            return
        }
        guard case .rowLengthNotBlockMultiple(_, "k", .q4_K, 32, 256)? = readError(file([("k", [32], 12, 0)]), in: dir) else {
            Issue.record("partial K block")
            return
        }
        // 256 bytes of data: 64 floats fit, 65 do not; offsets past the end, near UInt64.max.
        #expect(readError(file([("f", [64], 0, 0)]), in: dir) == nil)
        guard case .dataOutOfRange(_, "f", 0, 260, 256)? = readError(file([("f", [65], 0, 0)]), in: dir) else {
            Issue.record("data past the end")
            return
        }
        guard case .dataOutOfRange? = readError(file([("f", [1], 0, 1 << 40)]), in: dir) else {
            Issue.record("offset past the end")
            return
        }
        guard case .dataOutOfRange? = readError(file([("f", [8], 0, UInt64.max - 31)]), in: dir) else {
            Issue.record("offset near the top")
            return
        }
        guard case .invalidTensor(_, "f", let reason)? = readError(file([("f", [1], 0, 4)]), in: dir),
            reason.contains("alignment")
        else {
            Issue.record("misaligned offset")
            return
        }
        guard case .invalidTensor(_, "b", let overlap)? = readError(file([("a", [16], 0, 0), ("b", [8], 0, 32)]), in: dir),
            overlap.contains("overlaps")
        else {
            Issue.record("overlap")
            return
        }
        guard case .invalidTensor(_, "a", _)? = readError(file([("a", [8], 0, 0), ("a", [8], 0, 32)]), in: dir) else {
            Issue.record("duplicate name")
            return
        }
        // No elements, but a row of 2^62 eight-byte values: its row size cannot be computed.
        guard case .invalidTensor(_, "e", let rowReason)? = readError(file([("e", [1 << 62, 0], 28, 0)]), in: dir),
            rowReason.contains("row of")
        else {
            Issue.record("empty tensor with an unaddressable row")
            return
        }
        // Zero-sized tensors may share an offset; a scalar has shape [].
        let ok = try GGUFFile.read(path: dir.write(file([("e", [0, 3], 0, 0), ("s", [], 0, 0), ("z", [32, 0], 2, 32)])))
        #expect(ok.tensor("e")?.shape == [3, 0])
        #expect(ok.tensor("s")?.shape == [] && ok.tensor("s")?.elementCount == 1)
        #expect(try ok.floats("s") == [0])
        #expect(try ok.floats("z") == [])
    }
}

// MARK: - SmolLM2 against the gguf Python package

/// `gguf_reference.json`, written by `Fixtures/make_gguf_reference.py`.
private struct GGUFReference: Decodable {
    struct Header: Decodable {
        let version: UInt32
        let tensor_count: Int
        let metadata_count: Int
        let alignment: Int
        let data_start: Int
    }
    struct Scalar: Decodable {
        let type: String
        let value: JSONScalar
    }
    struct ArrayInfo: Decodable {
        let element_type: String
        let count: Int
        let head: [JSONScalar]
        let tail: JSONScalar?
    }
    struct Tensor: Decodable {
        let name: String
        let shape: [Int]
        let type: String
        let offset: Int
        let byte_count: Int
        let indices: [Int]
        let values: [Double]
        let sum: Double
        let sum_abs: Double
    }
    let file: String
    let header: Header
    let scalars: [String: Scalar]
    let arrays: [String: ArrayInfo]
    let type_counts: [String: Int]
    let tensors: [Tensor]

    static func load() throws -> GGUFReference {
        let url = URL(fileURLWithPath: TensorFixturePaths.directory + "/gguf_reference.json")
        return try JSONDecoder().decode(GGUFReference.self, from: Data(contentsOf: url))
    }
}

/// A JSON string, number or bool.
private enum JSONScalar: Decodable, Equatable {
    case string(String), number(Double), bool(Bool)

    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let b = try? container.decode(Bool.self) {
            self = .bool(b)
        } else if let d = try? container.decode(Double.self) {
            self = .number(d)
        } else {
            self = .string(try container.decode(String.self))
        }
    }

    /// Whether `value` (of GGUF type `type`) is this JSON value: same type, exact value.
    func matches(_ value: GGUFValue, type: String) -> Bool {
        let typeMatches: Bool
        switch (type, value) {
        case ("uint8", .uint8), ("int8", .int8), ("uint16", .uint16), ("int16", .int16), ("uint32", .uint32),
            ("int32", .int32), ("uint64", .uint64), ("int64", .int64), ("float32", .float32),
            ("float64", .float64), ("bool", .bool), ("string", .string):
            typeMatches = true
        default:
            typeMatches = false
        }
        guard typeMatches else { return false }
        switch (self, value) {
        case let (.string(a), .string(b)): return a == b
        case let (.bool(a), .bool(b)): return a == b
        case let (.number(a), .float32(b)): return Float(a) == b && Double(b) == a
        case let (.number(a), .float64(b)): return a == b
        case let (.number(a), _): return value.intValue.map(Double.init) == a
        default: return false
        }
    }
}

@Suite("GGUF SmolLM2")
struct GGUFSmolLMTests {
    @Test("SmolLM2-135M-Instruct reads as the gguf Python package reads it",
          .enabled(if: SmolLMAssets.available))
    func matchesPythonReader() throws {
        let reference = try GGUFReference.load()
        let file = try GGUFFile.read(path: SmolLMAssets.modelPath)
        #expect(reference.file == "SmolLM2-135M-Instruct.Q4_1.gguf")
        #expect(file.version == reference.header.version)
        #expect(file.tensors.count == reference.header.tensor_count)
        #expect(file.metadata.count == reference.header.metadata_count)
        #expect(file.alignment == reference.header.alignment)
        #expect(file.dataStart == reference.header.data_start)
        #expect(file.metadata.count == reference.scalars.count + reference.arrays.count)

        for (key, scalar) in reference.scalars {
            let value = try #require(file.metadata[key], "metadata \(key) missing")
            #expect(scalar.value.matches(value, type: scalar.type), "metadata \(key): \(value) vs \(scalar.value)")
        }
        for (key, array) in reference.arrays {
            let elements = try #require(file.metadata[key]?.arrayValue, "array \(key) missing")
            #expect(elements.count == array.count, "array \(key) length")
            for (element, expected) in zip(elements, array.head) {
                #expect(expected.matches(element, type: array.element_type), "array \(key): \(element) vs \(expected)")
            }
            if let last = elements.last, let tail = array.tail {
                #expect(tail.matches(last, type: array.element_type), "array \(key) last element")
            }
        }
        #expect(file.int("llama.embedding_length") == 576)
        #expect(file.float("llama.rope.freq_base") == 100_000)
        #expect(file.strings("tokenizer.ggml.tokens")?.count == 49152)
        #expect(file.ints("tokenizer.ggml.token_type")?.count == 49152)

        var counts: [String: Int] = [:]
        for tensor in file.tensors { counts[tensor.type.name, default: 0] += 1 }
        #expect(counts == reference.type_counts)

        for expected in reference.tensors {
            let info = try #require(file.tensor(expected.name), "tensor \(expected.name) missing")
            #expect(info.shape == expected.shape, "\(expected.name) shape")
            #expect(info.type.name == expected.type, "\(expected.name) type")
            #expect(info.offset == expected.offset, "\(expected.name) offset")
            #expect(info.byteCount == expected.byte_count, "\(expected.name) bytes")
            let values = try file.floats(expected.name)
            #expect(values.count == info.elementCount)
            // Both sides widen the f16 scales exactly and round q*d (then + m) in Float32 without
            // fusing, so every value must be bit-identical.
            for (index, value) in zip(expected.indices, expected.values) {
                #expect(values[index] == Float(value), "\(expected.name)[\(index)]")
            }
            // With identical values the float64 sums differ only by summation order (numpy
            // sums pairwise, this loop in sequence): at most n * 2^-53 * sum|x| apart.
            var sum = 0.0
            for value in values { sum += Double(value) }
            let tolerance = Double(values.count) * Double.ulpOfOne / 2 * expected.sum_abs
            #expect(abs(sum - expected.sum) <= tolerance, "\(expected.name) sum \(sum) vs \(expected.sum)")
        }
    }
}
