#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The GGUF format (versions 2 and 3), little-endian throughout:
//
//   magic "GGUF" | version u32 | tensor_count u64 | metadata_count u64
//   metadata_count x { key: string | value_type u32 | value }
//   tensor_count   x { name: string | n_dims u32 | ne[n_dims] u64 | ggml_type u32 | offset u64 }
//   zero padding up to a multiple of `general.alignment` (32 when absent)
//   tensor data; each tensor at `offset` bytes from the start of this section
//
// A string is a u64 byte length and that many UTF-8 bytes (no terminator). A value is one of
// the 13 metadata types; an array is an element type u32, a u64 element count and the
// elements (arrays may nest). `ne[0]` is the innermost (contiguous) dimension, so the shape
// outermost first is `ne` reversed; quantized types pack each row of `ne[0]` elements into
// blocks.

/// Why a GGUF file could not be read or a tensor could not be converted. Every case names
/// the file and, where one is involved, the metadata key or the tensor.
public enum GGUFError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file could not be opened or mapped.
    case io(path: String, reason: String)
    /// The file ends inside the header, the metadata or the tensor infos.
    case truncated(path: String, reason: String)
    /// The file does not start with the bytes "GGUF"; `found` shows what it starts with.
    case badMagic(path: String, found: String)
    /// The format version is not 2 or 3.
    case unsupportedVersion(path: String, version: UInt32, reason: String)
    /// A header field is impossible (counts that cannot fit in the file, a bad alignment).
    case invalidHeader(path: String, reason: String)
    /// A metadata entry is malformed (unknown value type, bad bool, invalid UTF-8, duplicate).
    case invalidMetadata(path: String, key: String, reason: String)
    /// A tensor info is malformed (dimensions, misaligned or overlapping data, duplicate name).
    case invalidTensor(path: String, tensor: String, reason: String)
    /// A tensor's type id is not a GGML type this reader knows.
    case unknownTensorType(path: String, tensor: String, rawType: UInt32)
    /// A quantized tensor's row length is not a whole number of blocks.
    case rowLengthNotBlockMultiple(path: String, tensor: String, type: GGMLType, rowLength: Int, blockSize: Int)
    /// A tensor's data reaches past the end of the file.
    case dataOutOfRange(path: String, tensor: String, offset: UInt64, byteCount: Int, dataSize: Int)
    /// The tensor's type is known but cannot be converted to Float32 by this reader.
    case unsupportedType(path: String, tensor: String, type: GGMLType)
    /// The file has no tensor of that name.
    case tensorNotFound(path: String, tensor: String)
    /// A caller-provided argument does not fit the tensor (e.g. a destination buffer's size).
    case invalidArgument(path: String, tensor: String, reason: String)

    public var description: String {
        switch self {
        case let .io(path, reason):
            return "gguf \(path): I/O error: \(reason)"
        case let .truncated(path, reason):
            return "gguf \(path): file is truncated: \(reason)"
        case let .badMagic(path, found):
            return "gguf \(path): not a GGUF file (starts with \(found), expected \"GGUF\")"
        case let .unsupportedVersion(path, version, reason):
            return "gguf \(path): unsupported GGUF version \(version): \(reason)"
        case let .invalidHeader(path, reason):
            return "gguf \(path): invalid header: \(reason)"
        case let .invalidMetadata(path, key, reason):
            return "gguf \(path): metadata '\(key)': \(reason)"
        case let .invalidTensor(path, tensor, reason):
            return "gguf \(path): tensor '\(tensor)': \(reason)"
        case let .unknownTensorType(path, tensor, rawType):
            return "gguf \(path): tensor '\(tensor)' has unknown GGML type id \(rawType)"
        case let .rowLengthNotBlockMultiple(path, tensor, type, rowLength, blockSize):
            return "gguf \(path): tensor '\(tensor)': row length \(rowLength) is not a multiple of "
                + "the \(type) block size \(blockSize)"
        case let .dataOutOfRange(path, tensor, offset, byteCount, dataSize):
            return "gguf \(path): tensor '\(tensor)': \(byteCount) bytes at data offset \(offset) run past "
                + "the end of the file (the data section holds \(dataSize) bytes)"
        case let .unsupportedType(path, tensor, type):
            return "gguf \(path): tensor '\(tensor)' has type \(type), which is not supported "
                + "(supported: \(GGMLType.dequantizable.map(\.name).joined(separator: ", ")))"
        case let .tensorNotFound(path, tensor):
            return "gguf \(path): no tensor named '\(tensor)'"
        case let .invalidArgument(path, tensor, reason):
            return "gguf \(path): tensor '\(tensor)': \(reason)"
        }
    }
}

/// One metadata value. Arrays hold values of one element type (possibly arrays themselves).
public indirect enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case uint64(UInt64), int64(Int64), float32(Float), float64(Double), bool(Bool), string(String)
    case array([GGUFValue])

    /// The value as an `Int` if it is an integer of any width that fits, else nil.
    public var intValue: Int? {
        switch self {
        case let .uint8(v): return Int(v)
        case let .int8(v): return Int(v)
        case let .uint16(v): return Int(v)
        case let .int16(v): return Int(v)
        case let .uint32(v): return Int(v)
        case let .int32(v): return Int(v)
        case let .uint64(v): return Int(exactly: v)
        case let .int64(v): return Int(exactly: v)
        default: return nil
        }
    }

    /// The value as a `Float` if it is a float of either width or an integer, else nil.
    public var floatValue: Float? {
        switch self {
        case let .float32(v): return v
        case let .float64(v): return Float(v)
        default: return intValue.map { Float($0) }
        }
    }

    /// The value if it is a bool, else nil.
    public var boolValue: Bool? {
        if case let .bool(v) = self { return v }
        return nil
    }

    /// The value if it is a string, else nil.
    public var stringValue: String? {
        if case let .string(v) = self { return v }
        return nil
    }

    /// The elements if the value is an array, else nil.
    public var arrayValue: [GGUFValue]? {
        if case let .array(v) = self { return v }
        return nil
    }
}

/// GGML tensor element types, with their GGUF type ids. Types marked "removed" in the
/// format's history are absent; ids this enum lacks are rejected as unknown.
public enum GGMLType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case iq2_XXS = 16, iq2_XS = 17, iq3_XXS = 18, iq1_S = 19, iq4_NL = 20, iq3_S = 21, iq2_S = 22, iq4_XS = 23
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_M = 29, bf16 = 30
    case tq1_0 = 34, tq2_0 = 35, mxfp4 = 39, nvfp4 = 40, q1_0 = 41

    /// The types ``GGUFFile/floats(_:)`` can convert to Float32.
    public static let dequantizable: [GGMLType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1]

    /// True if ``GGUFFile/floats(_:)`` can convert this type to Float32.
    public var isDequantizable: Bool { Self.dequantizable.contains(self) }

    /// The name GGML uses, e.g. "Q4_1".
    public var name: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .q4_0: return "Q4_0"
        case .q4_1: return "Q4_1"
        case .q5_0: return "Q5_0"
        case .q5_1: return "Q5_1"
        case .q8_0: return "Q8_0"
        case .q8_1: return "Q8_1"
        case .q2_K: return "Q2_K"
        case .q3_K: return "Q3_K"
        case .q4_K: return "Q4_K"
        case .q5_K: return "Q5_K"
        case .q6_K: return "Q6_K"
        case .q8_K: return "Q8_K"
        case .iq2_XXS: return "IQ2_XXS"
        case .iq2_XS: return "IQ2_XS"
        case .iq3_XXS: return "IQ3_XXS"
        case .iq1_S: return "IQ1_S"
        case .iq4_NL: return "IQ4_NL"
        case .iq3_S: return "IQ3_S"
        case .iq2_S: return "IQ2_S"
        case .iq4_XS: return "IQ4_XS"
        case .i8: return "I8"
        case .i16: return "I16"
        case .i32: return "I32"
        case .i64: return "I64"
        case .f64: return "F64"
        case .iq1_M: return "IQ1_M"
        case .bf16: return "BF16"
        case .tq1_0: return "TQ1_0"
        case .tq2_0: return "TQ2_0"
        case .mxfp4: return "MXFP4"
        case .nvfp4: return "NVFP4"
        case .q1_0: return "Q1_0"
        }
    }

    public var description: String { name }

    /// Elements per block: 1 for plain types, 32 or 256 (or 64, 128) for quantized ones.
    public var blockSize: Int { layout.elements }

    /// Bytes per block.
    public var blockBytes: Int { layout.bytes }

    private var layout: (elements: Int, bytes: Int) {
        switch self {
        case .f32, .i32: return (1, 4)
        case .f16, .bf16, .i16: return (1, 2)
        case .i8: return (1, 1)
        case .i64, .f64: return (1, 8)
        case .q4_0: return (32, 18)
        case .q4_1: return (32, 20)
        case .q5_0: return (32, 22)
        case .q5_1: return (32, 24)
        case .q8_0: return (32, 34)
        case .q8_1: return (32, 40)
        case .q2_K: return (256, 84)
        case .q3_K: return (256, 110)
        case .q4_K: return (256, 144)
        case .q5_K: return (256, 176)
        case .q6_K: return (256, 210)
        case .q8_K: return (256, 292)
        case .iq2_XXS: return (256, 66)
        case .iq2_XS: return (256, 74)
        case .iq3_XXS: return (256, 98)
        case .iq1_S: return (256, 50)
        case .iq4_NL: return (32, 18)
        case .iq3_S: return (256, 110)
        case .iq2_S: return (256, 82)
        case .iq4_XS: return (256, 136)
        case .iq1_M: return (256, 56)
        case .tq1_0: return (256, 54)
        case .tq2_0: return (256, 66)
        case .mxfp4: return (32, 17)
        case .nvfp4: return (64, 36)
        case .q1_0: return (128, 18)
        }
    }
}

/// One tensor as the file's tensor info describes it.
public struct GGUFTensorInfo: Sendable, Equatable {
    /// The tensor's name.
    public let name: String
    /// Dimensions, outermost first (row-major): the file's `ne[]` reversed. The last entry is
    /// the row length, the contiguous (and, for quantized types, blocked) dimension.
    public let shape: [Int]
    /// Element type as stored.
    public let type: GGMLType
    /// Byte offset of the data from the start of the file's data section.
    public let offset: Int
    /// Bytes of stored data (whole blocks for quantized types).
    public let byteCount: Int

    /// Number of elements (product of the shape; 1 for a scalar).
    public var elementCount: Int { shape.reduce(1, *) }
    /// Elements per row: the innermost dimension (1 for a scalar).
    public var rowLength: Int { shape.last ?? 1 }
    /// Number of rows: the product of all dimensions but the last.
    public var rowCount: Int { shape.dropLast().reduce(1, *) }
    /// Bytes of one stored row.
    public var rowBytes: Int { rowLength / type.blockSize * type.blockBytes }
}

/// A read-only view of a GGUF (v2 or v3) file: header, metadata and tensor infos are parsed
/// and validated on ``read(path:)``; tensor data stays in the memory-mapped file until asked
/// for. Immutable, so it may be shared across threads.
public struct GGUFFile: Sendable {
    /// Path the file was read from.
    public let path: String
    /// The format version (2 or 3).
    public let version: UInt32
    /// The alignment of the data section and of every tensor's data (`general.alignment`, 32
    /// when absent).
    public let alignment: Int
    /// All metadata entries, including the big tokenizer arrays.
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    /// Tensor infos in file order.
    public let tensors: [GGUFTensorInfo]
    /// Offset of the data section from the start of the file.
    public let dataStart: Int
    private let tensorIndex: [String: Int]
    private let bytes: MappedFile

    /// Opens, maps and validates `path`: magic, version, every metadata entry, every tensor
    /// info (known type, whole blocks per row, aligned data inside the file, no overlap).
    public static func read(path: String) throws(GGUFError) -> GGUFFile {
        let file: MappedFile
        do {
            file = try MappedFile(path: path)
        } catch {
            switch error {
            case let .io(_, reason): throw .io(path: path, reason: reason)
            default: throw .io(path: path, reason: error.description)
            }
        }
        let header = try file.withBytes { raw in
            Result { () throws(GGUFError) -> GGUFHeader in
                var parser = GGUFParser(path: path, raw: raw)
                return try parser.parse()
            }
        }.get()
        return GGUFFile(
            path: path, version: header.version, alignment: header.alignment, metadata: header.metadata,
            metadataKeys: header.metadataKeys, tensors: header.tensors, dataStart: header.dataStart,
            tensorIndex: Dictionary(header.tensors.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a }),
            bytes: file)
    }

    /// The info of tensor `name`, or nil if the file has none.
    public func tensor(_ name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    // MARK: Metadata accessors

    /// The string value of `key`, or nil if absent or not a string.
    public func string(_ key: String) -> String? { metadata[key]?.stringValue }
    /// The integer value of `key` (any integer width that fits an `Int`), or nil.
    public func int(_ key: String) -> Int? { metadata[key]?.intValue }
    /// The value of `key` as a `Float` (float32, float64 or an integer), or nil.
    public func float(_ key: String) -> Float? { metadata[key]?.floatValue }
    /// The bool value of `key`, or nil.
    public func bool(_ key: String) -> Bool? { metadata[key]?.boolValue }
    /// The array of strings at `key`, or nil if absent or not an array of strings.
    public func strings(_ key: String) -> [String]? { metadata[key]?.arrayValue?.compactAllOrNil(\.stringValue) }
    /// The array of integers at `key` (any integer width), or nil if absent or not all fit.
    public func ints(_ key: String) -> [Int]? { metadata[key]?.arrayValue?.compactAllOrNil(\.intValue) }
    /// The array of numbers at `key` as Floats, or nil if absent or not an array of numbers.
    public func floats(metadata key: String) -> [Float]? { metadata[key]?.arrayValue?.compactAllOrNil(\.floatValue) }

    // MARK: Tensor data

    /// The tensor's elements converted to Float32, row-major (shape ``GGUFTensorInfo/shape``).
    /// Converts the types in ``GGMLType/dequantizable``; others throw `unsupportedType`.
    public func floats(_ name: String) throws(GGUFError) -> [Float] {
        let info = try supportedInfo(name)
        let count = info.elementCount
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            if let base = buffer.baseAddress { convert(info, into: base) }
            initialized = count
        }
    }

    /// Writes the tensor's ``GGUFTensorInfo/elementCount`` elements, converted to Float32 and
    /// row-major, to `into`, which must have room for them.
    public func dequantize(_ name: String, into destination: UnsafeMutablePointer<Float>) throws(GGUFError) {
        convert(try supportedInfo(name), into: destination)
    }

    /// Like the pointer form of `dequantize(_:into:)`, but checks that
    /// `destination` holds exactly the tensor's element count.
    public func dequantize(_ name: String, into destination: UnsafeMutableBufferPointer<Float>) throws(GGUFError) {
        let info = try supportedInfo(name)
        guard destination.count == info.elementCount else {
            throw .invalidArgument(
                path: path, tensor: name,
                reason: "destination holds \(destination.count) floats, the tensor has \(info.elementCount)")
        }
        if let base = destination.baseAddress { convert(info, into: base) }
    }

    /// Calls `body` with the tensor's stored bytes (``GGUFTensorInfo/byteCount`` bytes: rows
    /// of whole blocks, in the file's layout). The buffer is valid only during the call
    /// (``GGUFTensorData`` keeps it alive longer).
    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        guard let info = tensor(name) else { throw GGUFError.tensorNotFound(path: path, tensor: name) }
        return try bytes.withBytes { raw in
            try body(UnsafeRawBufferPointer(rebasing: raw[(dataStart + info.offset)..<(dataStart + info.offset + info.byteCount)]))
        }
    }

    /// The tensor's stored bytes as a value that keeps the mapping alive (for kernels that
    /// read the quantized blocks in place).
    public func data(_ name: String) throws(GGUFError) -> GGUFTensorData {
        guard let info = tensor(name) else { throw .tensorNotFound(path: path, tensor: name) }
        return GGUFTensorData(info: info, file: bytes, start: dataStart + info.offset)
    }

    private func supportedInfo(_ name: String) throws(GGUFError) -> GGUFTensorInfo {
        guard let info = tensor(name) else { throw .tensorNotFound(path: path, tensor: name) }
        guard info.type.isDequantizable else { throw .unsupportedType(path: path, tensor: name, type: info.type) }
        return info
    }

    private func convert(_ info: GGUFTensorInfo, into destination: UnsafeMutablePointer<Float>) {
        let count = info.elementCount
        if count == 0 { return }
        let start = dataStart + info.offset
        bytes.withBytes { raw in
            guard let base = raw.baseAddress else { return }
            // Validated on read: the type converts, rows are whole blocks, the data is inside the file.
            _ = GGMLBlocks.dequantize(info.type, from: base + start, count: count, into: destination)
        }
    }
}

/// A tensor's stored bytes inside a mapped GGUF file; holding it keeps the mapping alive.
public struct GGUFTensorData: Sendable {
    /// The tensor this data belongs to.
    public let info: GGUFTensorInfo
    private let file: MappedFile
    private let start: Int

    init(info: GGUFTensorInfo, file: MappedFile, start: Int) {
        self.info = info
        self.file = file
        self.start = start
    }

    /// Calls `body` with the tensor's ``GGUFTensorInfo/byteCount`` stored bytes.
    public func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        let result: Result<R, E> = file.withBytes { raw in
            Result { () throws(E) -> R in
                try body(UnsafeRawBufferPointer(rebasing: raw[start..<(start + info.byteCount)]))
            }
        }
        return try result.get()
    }
}

extension Array {
    /// `transform` of every element, or nil if any element maps to nil.
    fileprivate func compactAllOrNil<T>(_ transform: (Element) -> T?) -> [T]? {
        var result: [T] = []
        result.reserveCapacity(count)
        for element in self {
            guard let value = transform(element) else { return nil }
            result.append(value)
        }
        return result
    }
}

// MARK: - Parsing

/// What the parser extracts from the bytes before the data section.
private struct GGUFHeader {
    var version: UInt32
    var alignment: Int
    var metadata: [String: GGUFValue]
    var metadataKeys: [String]
    var tensors: [GGUFTensorInfo]
    var dataStart: Int
}

/// Reads the header, metadata and tensor infos, checking every length, count and offset
/// against the file size before using it.
private struct GGUFParser {
    /// Deepest nesting of arrays inside arrays accepted (bounds the recursion).
    static let maxArrayDepth = 16
    /// Most dimensions a tensor may have (GGML's limit).
    static let maxDimensions = 4
    /// The alignment when `general.alignment` is absent.
    static let defaultAlignment = 32

    let path: String
    var cursor: ByteCursor

    init(path: String, raw: UnsafeRawBufferPointer) {
        self.path = path
        self.cursor = ByteCursor(raw: raw)
    }

    mutating func parse() throws(GGUFError) -> GGUFHeader {
        let version = try parsePreamble()
        let tensorCount = try u64("the tensor count")
        let metadataCount = try u64("the metadata count")

        // Every entry takes at least its string length (8), type (4) and a 1-byte value;
        // every tensor info at least a name length (8), n_dims (4), type (4) and offset (8).
        guard metadataCount <= UInt64(cursor.remaining / 13) else {
            throw .invalidHeader(
                path: path, reason: "\(metadataCount) metadata entries cannot fit in the \(cursor.remaining) bytes left")
        }
        var metadata: [String: GGUFValue] = [:]
        var keys: [String] = []
        metadata.reserveCapacity(Int(metadataCount))
        keys.reserveCapacity(Int(metadataCount))
        for index in 0..<Int(metadataCount) {
            let key = try string(context: { "the key of metadata entry \(index)" }, key: "#\(index)")
            let typeID = try u32("the value type of '\(key)'")
            let value = try value(typeID: typeID, key: key, depth: 0)
            guard metadata.updateValue(value, forKey: key) == nil else {
                throw .invalidMetadata(path: path, key: key, reason: "the key appears more than once")
            }
            keys.append(key)
        }
        let alignment = try parseAlignment(metadata["general.alignment"])

        guard tensorCount <= UInt64(cursor.remaining / 24) else {
            throw .invalidHeader(
                path: path, reason: "\(tensorCount) tensor infos cannot fit in the \(cursor.remaining) bytes left")
        }
        var raw: [(name: String, ne: [Int], type: UInt32, offset: UInt64)] = []
        raw.reserveCapacity(Int(tensorCount))
        for index in 0..<Int(tensorCount) {
            raw.append(try tensorInfo(index: index))
        }

        // The data section starts at the next multiple of the alignment (it may be empty).
        let (padded, overflow) = cursor.position.addingReportingOverflow(alignment - 1)
        let dataStart = overflow ? Int.max : padded / alignment * alignment
        let dataSize = max(0, cursor.raw.count - dataStart)
        let tensors = try validate(raw, alignment: alignment, dataSize: dataSize)
        return GGUFHeader(
            version: version, alignment: alignment, metadata: metadata, metadataKeys: keys,
            tensors: tensors, dataStart: min(dataStart, cursor.raw.count))
    }

    private mutating func parsePreamble() throws(GGUFError) -> UInt32 {
        guard cursor.remaining >= 4 else {
            throw .truncated(path: path, reason: "\(cursor.raw.count) bytes, the 4-byte magic \"GGUF\" is missing")
        }
        let magic = Array(cursor.raw[0..<4])
        guard magic == Array("GGUF".utf8) else {
            throw .badMagic(path: path, found: Self.describe(magic))
        }
        cursor.position = 4
        let version = try u32("the version")
        guard version == 2 || version == 3 else {
            let reason: String
            if version == 1 {
                reason = "version 1 (32-bit counts) is obsolete; convert the file to version 3"
            } else if version.byteSwapped == 2 || version.byteSwapped == 3 {
                reason = "the file is big-endian; only little-endian files are supported"
            } else {
                reason = "only versions 2 and 3 are supported"
            }
            throw .unsupportedVersion(path: path, version: version, reason: reason)
        }
        return version
    }

    private func parseAlignment(_ value: GGUFValue?) throws(GGUFError) -> Int {
        guard let value else { return Self.defaultAlignment }
        guard let alignment = value.intValue else {
            throw .invalidMetadata(path: path, key: "general.alignment", reason: "\(value) is not an integer")
        }
        guard alignment > 0, alignment <= 1 << 30, alignment & (alignment - 1) == 0 else {
            throw .invalidMetadata(
                path: path, key: "general.alignment", reason: "\(alignment) is not a power of two between 1 and 2^30")
        }
        return alignment
    }

    private mutating func tensorInfo(index: Int) throws(GGUFError) -> (name: String, ne: [Int], type: UInt32, offset: UInt64) {
        let name = try string(context: { "the name of tensor info \(index)" }, key: nil)
        let dimensionCount = try u32("the dimension count of tensor '\(name)'")
        guard dimensionCount <= UInt32(Self.maxDimensions) else {
            throw .invalidTensor(
                path: path, tensor: name, reason: "\(dimensionCount) dimensions (at most \(Self.maxDimensions) are allowed)")
        }
        var ne: [Int] = []
        ne.reserveCapacity(Int(dimensionCount))
        for axis in 0..<Int(dimensionCount) {
            let extent = try u64("dimension \(axis) of tensor '\(name)'")
            guard let value = Int(exactly: extent) else {
                throw .invalidTensor(path: path, tensor: name, reason: "dimension \(axis) is \(extent), which is too large")
            }
            ne.append(value)
        }
        let type = try u32("the type of tensor '\(name)'")
        let offset = try u64("the data offset of tensor '\(name)'")
        return (name, ne, type, offset)
    }

    /// Checks each tensor's type, block layout, size, alignment and range, and that no two
    /// tensors share a name or overlap.
    private func validate(
        _ raw: [(name: String, ne: [Int], type: UInt32, offset: UInt64)], alignment: Int, dataSize: Int
    ) throws(GGUFError) -> [GGUFTensorInfo] {
        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(raw.count)
        var names = Set<String>()
        for entry in raw {
            let name = entry.name
            guard names.insert(name).inserted else {
                throw .invalidTensor(path: path, tensor: name, reason: "the name appears more than once")
            }
            guard let type = GGMLType(rawValue: entry.type) else {
                throw .unknownTensorType(path: path, tensor: name, rawType: entry.type)
            }
            let shape = Array(entry.ne.reversed())
            let rowLength = entry.ne.first ?? 1
            guard rowLength % type.blockSize == 0 else {
                throw .rowLengthNotBlockMultiple(
                    path: path, tensor: name, type: type, rowLength: rowLength, blockSize: type.blockSize)
            }
            guard let elementCount = ShapeMath.elementCount(shape),
                case let (byteCount, overflow) = (elementCount / type.blockSize)
                    .multipliedReportingOverflow(by: type.blockBytes), !overflow
            else {
                throw .invalidTensor(path: path, tensor: name, reason: "shape \(shape) is too large")
            }
            // A tensor with no elements may still declare a row too long to address
            // (`rowBytes` must be computable for every tensor that is accepted).
            guard case (_, false) = (rowLength / type.blockSize).multipliedReportingOverflow(by: type.blockBytes) else {
                throw .invalidTensor(path: path, tensor: name, reason: "a row of \(rowLength) elements is too large")
            }
            guard entry.offset % UInt64(alignment) == 0 else {
                throw .invalidTensor(
                    path: path, tensor: name,
                    reason: "data offset \(entry.offset) is not a multiple of the alignment \(alignment)")
            }
            guard entry.offset <= UInt64(dataSize), byteCount <= dataSize - Int(entry.offset) else {
                throw .dataOutOfRange(
                    path: path, tensor: name, offset: entry.offset, byteCount: byteCount, dataSize: dataSize)
            }
            tensors.append(
                GGUFTensorInfo(name: name, shape: shape, type: type, offset: Int(entry.offset), byteCount: byteCount))
        }
        let byOffset = tensors.filter { $0.byteCount > 0 }.sorted { ($0.offset, $0.byteCount) < ($1.offset, $1.byteCount) }
        for (previous, next) in zip(byOffset, byOffset.dropFirst())
        where next.offset < previous.offset + previous.byteCount {
            throw .invalidTensor(
                path: path, tensor: next.name,
                reason: "data at offset \(next.offset) overlaps tensor '\(previous.name)' "
                    + "(\(previous.byteCount) bytes at offset \(previous.offset))")
        }
        return tensors
    }

    // MARK: Values

    private mutating func value(typeID: UInt32, key: String, depth: Int) throws(GGUFError) -> GGUFValue {
        switch typeID {
        case 0: return .uint8(try fixed(UInt8.self, key))
        case 1: return .int8(Int8(bitPattern: try fixed(UInt8.self, key)))
        case 2: return .uint16(try fixed(UInt16.self, key))
        case 3: return .int16(Int16(bitPattern: try fixed(UInt16.self, key)))
        case 4: return .uint32(try fixed(UInt32.self, key))
        case 5: return .int32(Int32(bitPattern: try fixed(UInt32.self, key)))
        case 6: return .float32(Float(bitPattern: try fixed(UInt32.self, key)))
        case 7:
            let byte = try fixed(UInt8.self, key)
            guard byte <= 1 else {
                throw .invalidMetadata(path: path, key: key, reason: "bool byte is \(byte), not 0 or 1")
            }
            return .bool(byte == 1)
        case 8: return .string(try string(context: { "a string value of '\(key)'" }, key: key))
        case 9: return try array(key: key, depth: depth)
        case 10: return .uint64(try fixed(UInt64.self, key))
        case 11: return .int64(Int64(bitPattern: try fixed(UInt64.self, key)))
        case 12: return .float64(Double(bitPattern: try fixed(UInt64.self, key)))
        default:
            throw .invalidMetadata(path: path, key: key, reason: "unknown value type \(typeID)")
        }
    }

    private mutating func array(key: String, depth: Int) throws(GGUFError) -> GGUFValue {
        guard depth < Self.maxArrayDepth else {
            throw .invalidMetadata(path: path, key: key, reason: "arrays nest deeper than \(Self.maxArrayDepth) levels")
        }
        let elementType = try u32("the element type of an array in '\(key)'")
        let count = try u64("the length of an array in '\(key)'")
        let minimumSize: Int
        switch elementType {
        case 0, 1, 7: minimumSize = 1
        case 2, 3: minimumSize = 2
        case 4, 5, 6: minimumSize = 4
        case 8, 10, 11, 12: minimumSize = 8
        case 9: minimumSize = 12
        default:
            throw .invalidMetadata(path: path, key: key, reason: "unknown array element type \(elementType)")
        }
        guard count <= UInt64(cursor.remaining / minimumSize) else {
            throw .truncated(
                path: path,
                reason: "array of \(count) elements in metadata '\(key)' cannot fit in the \(cursor.remaining) bytes left")
        }
        var elements: [GGUFValue] = []
        elements.reserveCapacity(Int(count))
        for _ in 0..<Int(count) {
            elements.append(try value(typeID: elementType, key: key, depth: depth + 1))
        }
        return .array(elements)
    }

    private mutating func fixed<T: FixedWidthInteger>(_ type: T.Type, _ key: String) throws(GGUFError) -> T {
        try read(T.self, { "the value of metadata '\(key)'" })
    }

    private mutating func string(context: () -> String, key: String?) throws(GGUFError) -> String {
        let length = try read(UInt64.self, context)
        guard length <= UInt64(cursor.remaining) else {
            throw .truncated(
                path: path,
                reason: "\(context()) announces \(length) bytes at offset \(cursor.position), "
                    + "only \(cursor.remaining) are left")
        }
        let bytes = UnsafeRawBufferPointer(rebasing: cursor.raw[cursor.position..<(cursor.position + Int(length))])
        cursor.position += Int(length)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            let reason = "\(context()) is not valid UTF-8"
            if let key { throw .invalidMetadata(path: path, key: key, reason: reason) }
            throw .invalidHeader(path: path, reason: reason)
        }
        return text
    }

    private mutating func u32(_ what: @autoclosure () -> String) throws(GGUFError) -> UInt32 {
        try read(UInt32.self, what)
    }

    private mutating func u64(_ what: @autoclosure () -> String) throws(GGUFError) -> UInt64 {
        try read(UInt64.self, what)
    }

    private mutating func read<T: FixedWidthInteger>(_ type: T.Type, _ what: () -> String) throws(GGUFError) -> T {
        let size = MemoryLayout<T>.size
        guard cursor.remaining >= size else {
            throw .truncated(
                path: path,
                reason: "the file ends at byte \(cursor.raw.count) while reading \(what()) "
                    + "(\(size) bytes at offset \(cursor.position))")
        }
        let value = T(littleEndian: cursor.raw.loadUnaligned(fromByteOffset: cursor.position, as: T.self))
        cursor.position += size
        return value
    }

    /// Printable form of the first bytes of a file for the bad-magic error.
    private static func describe(_ bytes: [UInt8]) -> String {
        let hex = bytes.map { byte in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }.joined(separator: " ")
        return "bytes \(hex)"
    }
}

/// A read position inside a byte buffer.
private struct ByteCursor {
    let raw: UnsafeRawBufferPointer
    var position = 0
    var remaining: Int { raw.count - position }
}
