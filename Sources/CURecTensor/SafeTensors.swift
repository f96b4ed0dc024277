#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

// The safetensors format: an 8-byte little-endian header length `n`, `n` bytes of JSON
// (`{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
// "__metadata__": {"key": "value"}}`), then the data buffer. Offsets are relative to the
// start of the data buffer.

/// Why a safetensors file could not be read or written. Every case names the file and,
/// where one is involved, the tensor.
public enum SafeTensorsError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file could not be opened, mapped, created or written.
    case io(path: String, reason: String)
    /// The file ends before the header or the data it announces.
    case truncated(path: String, reason: String)
    /// The JSON header is not valid or not shaped like a safetensors header.
    case invalidHeader(path: String, reason: String)
    /// One tensor's header entry is inconsistent (dtype, shape, offsets).
    case invalidTensor(path: String, tensor: String, reason: String)
    /// The file has no tensor of that name.
    case tensorNotFound(path: String, tensor: String)
    /// The tensor's dtype cannot be converted to Float32.
    case unsupportedConversion(path: String, tensor: String, dtype: SafeTensorsDType)
    /// A tensor handed to `write` is inconsistent (shape does not match data, bad name).
    case invalidArgument(path: String, tensor: String, reason: String)

    public var description: String {
        switch self {
        case let .io(path, reason):
            return "safetensors \(path): I/O error: \(reason)"
        case let .truncated(path, reason):
            return "safetensors \(path): file is truncated: \(reason)"
        case let .invalidHeader(path, reason):
            return "safetensors \(path): invalid header: \(reason)"
        case let .invalidTensor(path, tensor, reason):
            return "safetensors \(path): tensor '\(tensor)': \(reason)"
        case let .tensorNotFound(path, tensor):
            return "safetensors \(path): no tensor named '\(tensor)'"
        case let .unsupportedConversion(path, tensor, dtype):
            return "safetensors \(path): tensor '\(tensor)' has dtype \(dtype.rawValue), "
                + "which cannot be converted to Float32"
        case let .invalidArgument(path, tensor, reason):
            return "safetensors \(path): cannot write tensor '\(tensor)': \(reason)"
        }
    }
}

/// Element types a safetensors header may name.
public enum SafeTensorsDType: String, Sendable, CaseIterable {
    case bool = "BOOL"
    case u8 = "U8", i8 = "I8", f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"
    case u16 = "U16", i16 = "I16", f16 = "F16", bf16 = "BF16"
    case u32 = "U32", i32 = "I32", f32 = "F32"
    case u64 = "U64", i64 = "I64", f64 = "F64"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .bool, .u8, .i8, .f8e4m3, .f8e5m2: return 1
        case .u16, .i16, .f16, .bf16: return 2
        case .u32, .i32, .f32: return 4
        case .u64, .i64, .f64: return 8
        }
    }
}

/// A read-only view of a safetensors file: the header is parsed and validated on `read`,
/// tensor data stays in the memory-mapped file until asked for.
public struct SafeTensorsFile: Sendable {
    /// One tensor as the header describes it.
    public struct Entry: Sendable, Equatable {
        /// The tensor's name.
        public let name: String
        /// Element type as stored in the file.
        public let dtype: SafeTensorsDType
        /// Dimensions, outermost first; `[]` is a scalar.
        public let shape: [Int]
        /// Byte range in the data buffer (after the header).
        public let dataOffsets: Range<Int>

        /// Number of elements (product of the shape).
        public var elementCount: Int { shape.reduce(1, *) }
    }

    /// Path the file was read from.
    public let path: String
    /// Free-form string metadata from the header's `__metadata__` entry.
    public let metadata: [String: String]
    private let entriesByName: [String: Entry]
    private let orderedNames: [String]
    private let bytes: MappedFile
    private let dataStart: Int

    /// Tensor names in the order their data appears in the file.
    public var names: [String] { orderedNames }

    /// The header entry of tensor `name`, or nil if the file has none.
    public func entry(_ name: String) -> Entry? { entriesByName[name] }

    /// Opens and validates `path`: header length, JSON, dtypes, shapes and that every
    /// tensor's byte range lies inside the file, matches its shape and overlaps no other.
    public static func read(path: String) throws(SafeTensorsError) -> SafeTensorsFile {
        let file = try MappedFile(path: path)
        let size = file.count
        guard size >= 8 else {
            throw .truncated(path: path, reason: "\(size) bytes, the 8-byte header length is missing")
        }
        let headerLength = file.withBytes { raw in
            UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        }
        guard headerLength <= UInt64(size - 8) else {
            throw .truncated(path: path, reason: "header announces \(headerLength) bytes, file has \(size - 8) after the length")
        }
        let dataStart = 8 + Int(headerLength)
        let dataSize = size - dataStart
        let headerBytes = file.withBytes { raw in
            Data(raw[8..<dataStart])
        }
        let header = try HeaderParser(path: path, dataSize: dataSize).parse(headerBytes)
        return SafeTensorsFile(
            path: path, metadata: header.metadata,
            entriesByName: Dictionary(uniqueKeysWithValues: header.entries.map { ($0.name, $0) }),
            orderedNames: header.entries.map(\.name), bytes: file, dataStart: dataStart)
    }

    /// The tensor's elements converted to Float32, in row-major order. Converts F32, F16,
    /// BF16 and F64; other dtypes throw `unsupportedConversion`.
    public func floats(_ name: String) throws(SafeTensorsError) -> [Float] {
        guard let entry = entriesByName[name] else {
            throw .tensorNotFound(path: path, tensor: name)
        }
        let count = entry.elementCount
        let start = dataStart + entry.dataOffsets.lowerBound
        switch entry.dtype {
        case .f32:
            return bytes.withBytes { raw in
                [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                    if count > 0, let destination = buffer.baseAddress, let source = raw.baseAddress {
                        memcpy(destination, source + start, count * 4)
                    }
                    initialized = count
                }
            }
        case .f16:
            return convert(count: count, start: start, stride: 2) { raw, offset in
                FloatBits.halfToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
            }
        case .bf16:
            return convert(count: count, start: start, stride: 2) { raw, offset in
                let bits = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
                return Float(bitPattern: UInt32(bits) << 16)
            }
        case .f64:
            return convert(count: count, start: start, stride: 8) { raw, offset in
                Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))))
            }
        default:
            throw .unsupportedConversion(path: path, tensor: name, dtype: entry.dtype)
        }
    }

    /// Writes `tensors` as F32 in the given order, with `metadata` as `__metadata__`. The
    /// header is padded with spaces so the data buffer starts 8-byte aligned. The file is
    /// written to a temporary name beside `path` and renamed into place.
    public static func write(
        path: String, tensors: [(name: String, shape: [Int], data: [Float])],
        metadata: [String: String]
    ) throws(SafeTensorsError) {
        var header = "{"
        var seen = Set<String>()
        var offset = 0
        if !metadata.isEmpty {
            header += JSONText.quote("__metadata__") + ":{"
            header += metadata.sorted { $0.key < $1.key }
                .map { JSONText.quote($0.key) + ":" + JSONText.quote($0.value) }
                .joined(separator: ",")
            header += "}"
        }
        for tensor in tensors {
            guard !tensor.name.isEmpty, tensor.name != "__metadata__" else {
                throw .invalidArgument(path: path, tensor: tensor.name, reason: "reserved or empty name")
            }
            guard seen.insert(tensor.name).inserted else {
                throw .invalidArgument(path: path, tensor: tensor.name, reason: "duplicate name")
            }
            guard tensor.shape.allSatisfy({ $0 >= 0 }),
                let count = ShapeMath.elementCount(tensor.shape), count == tensor.data.count
            else {
                throw .invalidArgument(
                    path: path, tensor: tensor.name,
                    reason: "shape \(tensor.shape) does not hold \(tensor.data.count) elements")
            }
            if header.count > 1 { header += "," }
            let end = offset + count * 4
            header += JSONText.quote(tensor.name)
                + ":{\"dtype\":\"F32\",\"shape\":[\(tensor.shape.map(String.init).joined(separator: ","))],"
                + "\"data_offsets\":[\(offset),\(end)]}"
            offset = end
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        while (8 + headerBytes.count) % 8 != 0 { headerBytes.append(UInt8(ascii: " ")) }

        var out = [UInt8]()
        out.reserveCapacity(8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        for tensor in tensors {
            tensor.data.withUnsafeBytes { raw in
                // Float32 in memory is little-endian on every platform we build for.
                out.append(contentsOf: raw)
            }
        }
        try FileWriter.writeAtomically(path: path, bytes: out)
    }

    private func convert(
        count: Int, start: Int, stride: Int, _ element: (UnsafeRawBufferPointer, Int) -> Float
    ) -> [Float] {
        bytes.withBytes { raw in
            [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                for i in 0..<count {
                    buffer[i] = element(raw, start + i * stride)
                }
                initialized = count
            }
        }
    }
}

// MARK: - Header parsing

/// Turns the JSON header into validated entries.
private struct HeaderParser {
    let path: String
    let dataSize: Int

    struct Header {
        var entries: [SafeTensorsFile.Entry]
        var metadata: [String: String]
    }

    func parse(_ bytes: Data) throws(SafeTensorsError) -> Header {
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: bytes, options: [])
        } catch {
            throw .invalidHeader(path: path, reason: "not valid JSON (\(error.localizedDescription))")
        }
        guard let object = json as? [String: Any] else {
            throw .invalidHeader(path: path, reason: "top level is not a JSON object")
        }
        var metadata: [String: String] = [:]
        var entries: [SafeTensorsFile.Entry] = []
        entries.reserveCapacity(object.count)
        for (name, value) in object {
            if name == "__metadata__" {
                metadata = try parseMetadata(value)
                continue
            }
            entries.append(try parseEntry(name: name, value))
        }
        entries.sort {
            ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound, $0.name)
                < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound, $1.name)
        }
        for (previous, next) in zip(entries, entries.dropFirst())
        where next.dataOffsets.lowerBound < previous.dataOffsets.upperBound {
            throw .invalidTensor(
                path: path, tensor: next.name,
                reason: "data \(next.dataOffsets) overlaps tensor '\(previous.name)' at \(previous.dataOffsets)")
        }
        return Header(entries: entries, metadata: metadata)
    }

    private func parseMetadata(_ value: Any) throws(SafeTensorsError) -> [String: String] {
        guard let dict = value as? [String: Any] else {
            throw .invalidHeader(path: path, reason: "__metadata__ is not an object")
        }
        var result: [String: String] = [:]
        for (key, item) in dict {
            guard let text = item as? String else {
                throw .invalidHeader(path: path, reason: "__metadata__ value of '\(key)' is not a string")
            }
            result[key] = text
        }
        return result
    }

    private func parseEntry(name: String, _ value: Any) throws(SafeTensorsError) -> SafeTensorsFile.Entry {
        guard let dict = value as? [String: Any] else {
            throw .invalidTensor(path: path, tensor: name, reason: "entry is not an object")
        }
        guard let dtypeName = dict["dtype"] as? String else {
            throw .invalidTensor(path: path, tensor: name, reason: "missing or non-string dtype")
        }
        guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
            throw .invalidTensor(path: path, tensor: name, reason: "unknown dtype '\(dtypeName)'")
        }
        guard let shapeValues = dict["shape"] as? [Any] else {
            throw .invalidTensor(path: path, tensor: name, reason: "missing or non-array shape")
        }
        let shape = try integers(shapeValues, tensor: name, field: "shape")
        guard let offsetValues = dict["data_offsets"] as? [Any], offsetValues.count == 2 else {
            throw .invalidTensor(path: path, tensor: name, reason: "data_offsets is not a two-element array")
        }
        let offsets = try integers(offsetValues, tensor: name, field: "data_offsets")
        let begin = offsets[0], end = offsets[1]
        guard begin <= end else {
            throw .invalidTensor(path: path, tensor: name, reason: "data_offsets [\(begin), \(end)] are reversed")
        }
        guard end <= dataSize else {
            throw .invalidTensor(
                path: path, tensor: name,
                reason: "data_offsets [\(begin), \(end)] run past the data buffer of \(dataSize) bytes")
        }
        guard let count = ShapeMath.elementCount(shape),
            case let (bytes, overflow) = count.multipliedReportingOverflow(by: dtype.byteSize), !overflow
        else {
            throw .invalidTensor(path: path, tensor: name, reason: "shape \(shape) is too large")
        }
        guard bytes == end - begin else {
            throw .invalidTensor(
                path: path, tensor: name,
                reason: "shape \(shape) of \(dtype.rawValue) needs \(bytes) bytes, data_offsets give \(end - begin)")
        }
        return SafeTensorsFile.Entry(name: name, dtype: dtype, shape: shape, dataOffsets: begin..<end)
    }

    private func integers(_ values: [Any], tensor: String, field: String) throws(SafeTensorsError) -> [Int] {
        var result: [Int] = []
        result.reserveCapacity(values.count)
        for value in values {
            // JSONSerialization yields NSNumber; accept only exact non-negative integers
            // below 2^53 (beyond that a double cannot hold them exactly).
            guard let number = value as? NSNumber,
                case let real = number.doubleValue, real >= 0, real < 9_007_199_254_740_992,
                let integer = Int(exactly: real)
            else {
                throw .invalidTensor(path: path, tensor: tensor, reason: "\(field) holds \(value), not a non-negative integer")
            }
            result.append(integer)
        }
        return result
    }
}

/// Overflow-checked shape arithmetic.
enum ShapeMath {
    /// Product of `shape`, or nil on overflow or a negative dimension.
    static func elementCount(_ shape: [Int]) -> Int? {
        var count = 1
        for dimension in shape {
            guard dimension >= 0 else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            if overflow { return nil }
            count = product
        }
        return count
    }
}

/// IEEE 754 half-precision decoding without relying on the platform's `Float16`.
enum FloatBits {
    static func halfToFloat(_ half: UInt16) -> Float {
        let sign = UInt32(half & 0x8000) << 16
        let exponent = Int(half >> 10) & 0x1F
        let mantissa = UInt32(half & 0x03FF)
        if exponent == 0 {
            // Zero or subnormal: mantissa * 2^-24.
            let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
            return sign == 0 ? magnitude : -magnitude
        }
        if exponent == 0x1F {
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        }
        return Float(bitPattern: sign | (UInt32(exponent + 127 - 15) << 23) | (mantissa << 13))
    }
}

/// Minimal JSON string quoting for the header we write.
enum JSONText {
    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                    + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

// MARK: - File access

/// A whole file mapped read-only into memory; unmapped when the last reference goes away.
/// Immutable after creation, so sharing it across threads is safe.
final class MappedFile: @unchecked Sendable {
    private let base: UnsafeMutableRawPointer?
    let count: Int

    init(path: String) throws(SafeTensorsError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw .io(path: path, reason: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw .io(path: path, reason: "cannot stat: \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw .io(path: path, reason: "not a regular file")
        }
        count = Int(info.st_size)
        if count == 0 {
            base = nil
            return
        }
        let mapped = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let mapped, mapped != MAP_FAILED else {
            throw .io(path: path, reason: "cannot mmap: \(String(cString: strerror(errno)))")
        }
        base = mapped
    }

    deinit {
        if let base { munmap(base, count) }
    }

    /// Calls `body` with the mapped bytes (an empty buffer for an empty file).
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: base.map { UnsafeRawPointer($0) }, count: count))
    }
}

#if canImport(Glibc)
private let systemWrite = Glibc.write
#elseif canImport(Darwin)
private let systemWrite = Darwin.write
#endif

/// Writes a file through a temporary sibling and `rename`, so readers never see half a file.
enum FileWriter {
    static func writeAtomically(path: String, bytes: [UInt8]) throws(SafeTensorsError) {
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw .io(path: path, reason: "cannot create \(temporary): \(String(cString: strerror(errno)))")
        }
        var written = 0
        let failure: String? = bytes.withUnsafeBytes { raw in
            guard let source = raw.baseAddress else { return nil }
            while written < raw.count {
                let n = systemWrite(fd, source + written, raw.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    return String(cString: strerror(errno))
                }
                written += n
            }
            return nil
        }
        close(fd)
        if let failure {
            unlink(temporary)
            throw .io(path: path, reason: "write failed: \(failure)")
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw .io(path: path, reason: "cannot rename into place: \(reason)")
        }
    }
}
