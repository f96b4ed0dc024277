/// Parsing and formatting of the small text formats in gRPC headers.
enum WireFormats {
    /// Parses a `grpc-timeout` value (1 to 8 digits and a unit of H, M, S, m, u or n) into
    /// nanoseconds, or nil if it is malformed.
    static func parseTimeout(_ text: String) -> UInt64? {
        let bytes = Array(text.utf8)
        guard bytes.count >= 2, bytes.count <= 9, let unit = bytes.last else { return nil }
        var amount: UInt64 = 0
        for byte in bytes.dropLast() {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            amount = amount * 10 + UInt64(byte - UInt8(ascii: "0"))
        }
        let nanosPerUnit: UInt64
        switch unit {
        case UInt8(ascii: "H"): nanosPerUnit = 3_600_000_000_000
        case UInt8(ascii: "M"): nanosPerUnit = 60_000_000_000
        case UInt8(ascii: "S"): nanosPerUnit = 1_000_000_000
        case UInt8(ascii: "m"): nanosPerUnit = 1_000_000
        case UInt8(ascii: "u"): nanosPerUnit = 1_000
        case UInt8(ascii: "n"): nanosPerUnit = 1
        default: return nil
        }
        let (product, overflow) = amount.multipliedReportingOverflow(by: nanosPerUnit)
        return overflow ? UInt64.max : product
    }

    /// The most bytes of a status message sent as `grpc-message` (before percent-encoding).
    /// Longer messages are cut at a character boundary and end with "…", so no message (and
    /// no client text a message quotes) can make the trailers large.
    static let maximumStatusMessageBytes = 1024

    /// `message` cut to at most ``maximumStatusMessageBytes`` UTF-8 bytes, whole characters,
    /// with "…" marking the cut.
    static func capStatusMessage(_ message: String) -> String {
        guard message.utf8.count > maximumStatusMessageBytes else { return message }
        let marker = "…"
        var budget = maximumStatusMessageBytes - marker.utf8.count
        var kept = ""
        for scalar in message.unicodeScalars {
            let size = String(scalar).utf8.count
            guard size <= budget else { break }
            budget -= size
            kept.unicodeScalars.append(scalar)
        }
        return kept + marker
    }

    /// Percent-encodes a `grpc-message` (capped by ``capStatusMessage(_:)`` first): bytes
    /// outside printable ASCII, and `%`, become `%XX`.
    static func percentEncode(_ message: String) -> String {
        let capped = capStatusMessage(message)
        var output: [UInt8] = []
        output.reserveCapacity(capped.utf8.count)
        let hex = Array("0123456789ABCDEF".utf8)
        for byte in capped.utf8 {
            if byte >= 0x20, byte <= 0x7E, byte != UInt8(ascii: "%") {
                output.append(byte)
            } else {
                output.append(UInt8(ascii: "%"))
                output.append(hex[Int(byte >> 4)])
                output.append(hex[Int(byte & 0x0F)])
            }
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Decodes a percent-encoded `grpc-message`; malformed escapes are kept as they are.
    static func percentDecode(_ text: String) -> String {
        let bytes = Array(text.utf8)
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        var index = 0
        func hexValue(_ byte: UInt8) -> UInt8? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
            default: return nil
            }
        }
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "%"), index + 2 < bytes.count,
               let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2]) {
                output.append(high << 4 | low)
                index += 3
            } else {
                output.append(bytes[index])
                index += 1
            }
        }
        return String(decoding: output, as: UTF8.self)
    }
}
