import Foundation

/// Custom gRPC metadata: an ordered list of key/value pairs.
///
/// Keys are lower-case ASCII. Keys ending in `-bin` carry binary values, base64-encoded on
/// the wire; all other values are printable ASCII strings.
public struct Metadata: Sendable, Hashable, Sequence {
    /// One metadata value.
    public enum Value: Sendable, Hashable {
        /// A printable ASCII value, for keys without the `-bin` suffix.
        case string(String)
        /// A binary value, for keys with the `-bin` suffix.
        case binary([UInt8])
    }

    /// The pairs, in the order they were added or received.
    public private(set) var entries: [(key: String, value: Value)] = []

    /// Creates empty metadata.
    public init() {}

    /// Appends a string value under `key` (lower-cased).
    public mutating func add(_ key: String, _ value: String) {
        entries.append((key.lowercased(), .string(value)))
    }

    /// Appends a binary value under `key`, which should end in `-bin`.
    public mutating func add(_ key: String, bytes: [UInt8]) {
        entries.append((key.lowercased(), .binary(bytes)))
    }

    /// Appends every entry of `other`.
    public mutating func append(contentsOf other: Metadata) {
        entries.append(contentsOf: other.entries)
    }

    /// The first string value stored under `key`, if any.
    public func first(_ key: String) -> String? {
        for entry in entries where entry.key == key {
            if case .string(let value) = entry.value { return value }
        }
        return nil
    }

    /// The first binary value stored under `key`, if any.
    public func firstBinary(_ key: String) -> [UInt8]? {
        for entry in entries where entry.key == key {
            if case .binary(let value) = entry.value { return value }
        }
        return nil
    }

    /// The number of entries.
    public var count: Int { entries.count }

    /// Whether there are no entries.
    public var isEmpty: Bool { entries.isEmpty }

    public func makeIterator() -> IndexingIterator<[(key: String, value: Value)]> {
        entries.makeIterator()
    }

    public static func == (lhs: Metadata, rhs: Metadata) -> Bool {
        lhs.entries.elementsEqual(rhs.entries) { $0.key == $1.key && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for entry in entries {
            hasher.combine(entry.key)
            hasher.combine(entry.value)
        }
    }

    /// Adds a header received on the wire, decoding base64 for `-bin` keys.
    ///
    /// Returns false if a `-bin` value is not valid base64 (padded or unpadded).
    @discardableResult
    mutating func addWireHeader(name: String, value: String) -> Bool {
        if name.hasSuffix("-bin") {
            guard let bytes = Base64.decode(value) else { return false }
            entries.append((name, .binary(bytes)))
        } else {
            entries.append((name, .string(value)))
        }
        return true
    }

    /// The entries as wire header pairs, base64-encoding binary values.
    func wireHeaders() -> [(String, String)] {
        entries.map { entry in
            switch entry.value {
            case .string(let value): return (entry.key, value)
            case .binary(let bytes): return (entry.key, Base64.encode(bytes))
            }
        }
    }
}

/// Base64 as gRPC uses it for `-bin` metadata: padding optional on input, omitted on output.
enum Base64 {
    static func encode(_ bytes: [UInt8]) -> String {
        var text = Data(bytes).base64EncodedString()
        while text.hasSuffix("=") { text.removeLast() }
        return text
    }

    static func decode(_ text: String) -> [UInt8]? {
        var padded = text.trimmingCharacters(in: .whitespaces)
        let remainder = padded.utf8.count % 4
        if remainder == 1 { return nil }
        if remainder > 0 { padded += String(repeating: "=", count: 4 - remainder) }
        guard let data = Data(base64Encoded: padded) else { return nil }
        return [UInt8](data)
    }
}
