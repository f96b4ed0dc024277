/// Reassembles length-prefixed gRPC messages from DATA chunks split at any boundary.
///
/// Each message on the wire is a 1-byte compressed flag, a 4-byte big-endian length and
/// that many bytes. A message whose declared length exceeds `maxMessageBytes` is refused
/// as soon as its prefix is complete, before any of its body is buffered. The body buffer
/// grows with the bytes that arrive, never to the declared length up front, so a prefix
/// that promises 4 MiB and sends nothing costs nothing.
struct MessageDeframer {
    /// Why a stream of bytes is not a valid sequence of messages.
    enum DeframingError: Error, Equatable {
        /// The declared length is over the limit.
        case messageTooLarge(declared: UInt32, limit: Int)
        /// The compressed flag is set but the call negotiated no compression.
        case compressedWithoutEncoding
        /// The flag byte is neither 0 nor 1.
        case invalidFlag(UInt8)
    }

    /// The largest message body accepted, in bytes.
    let maxMessageBytes: Int

    private var prefix: [UInt8] = []
    private var body: [UInt8] = []
    private var expectedBodyBytes: Int? = nil

    init(maxMessageBytes: Int) {
        self.maxMessageBytes = maxMessageBytes
    }

    /// True when no partial message is buffered (the stream may end here).
    var isAtMessageBoundary: Bool { prefix.isEmpty && expectedBodyBytes == nil }

    /// The number of bytes currently buffered for an incomplete message.
    var bufferedBytes: Int { prefix.count + body.count }

    /// The memory reserved for the incomplete message's body (for tests of its growth).
    var bodyCapacity: Int { body.capacity }

    /// Consumes `chunk`, calling `onMessage` with each complete message body.
    mutating func process(
        _ chunk: UnsafeRawBufferPointer,
        onMessage: ([UInt8]) throws -> Void
    ) throws {
        var offset = 0
        let count = chunk.count
        while offset < count {
            if let expected = expectedBodyBytes {
                let take = min(expected - body.count, count - offset)
                body.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[offset..<(offset + take)]))
                offset += take
                if body.count == expected {
                    let message = body
                    body = []
                    expectedBodyBytes = nil
                    try onMessage(message)
                }
                continue
            }
            // Fast path: a whole prefix is available in this chunk.
            if prefix.isEmpty, count - offset >= 5 {
                let flag = chunk[offset]
                let length = UInt32(chunk[offset + 1]) << 24 | UInt32(chunk[offset + 2]) << 16
                    | UInt32(chunk[offset + 3]) << 8 | UInt32(chunk[offset + 4])
                offset += 5
                try beginMessage(flag: flag, length: length)
                if expectedBodyBytes == 0 {
                    expectedBodyBytes = nil
                    try onMessage([])
                } else if let expected = expectedBodyBytes, count - offset >= expected {
                    // The whole body is in this chunk: copy it out once.
                    let message = [UInt8](UnsafeRawBufferPointer(rebasing: chunk[offset..<(offset + expected)]))
                    offset += expected
                    expectedBodyBytes = nil
                    try onMessage(message)
                }
                continue
            }
            prefix.append(chunk[offset])
            offset += 1
            if prefix.count == 5 {
                let length = UInt32(prefix[1]) << 24 | UInt32(prefix[2]) << 16
                    | UInt32(prefix[3]) << 8 | UInt32(prefix[4])
                let flag = prefix[0]
                prefix.removeAll(keepingCapacity: true)
                try beginMessage(flag: flag, length: length)
                if expectedBodyBytes == 0 {
                    expectedBodyBytes = nil
                    try onMessage([])
                }
            }
        }
    }

    private mutating func beginMessage(flag: UInt8, length: UInt32) throws {
        switch flag {
        case 0: break
        case 1: throw DeframingError.compressedWithoutEncoding
        default: throw DeframingError.invalidFlag(flag)
        }
        guard Int(length) <= maxMessageBytes else {
            throw DeframingError.messageTooLarge(declared: length, limit: maxMessageBytes)
        }
        expectedBodyBytes = Int(length)
    }
}

/// Frames outgoing messages with the 5-byte gRPC prefix.
enum MessageFramer {
    /// Returns `message` behind an uncompressed 5-byte prefix.
    static func frame(_ message: [UInt8]) -> [UInt8] {
        var framed = [UInt8]()
        framed.reserveCapacity(message.count + 5)
        let length = UInt32(truncatingIfNeeded: message.count)
        framed.append(0)
        framed.append(UInt8(truncatingIfNeeded: length >> 24))
        framed.append(UInt8(truncatingIfNeeded: length >> 16))
        framed.append(UInt8(truncatingIfNeeded: length >> 8))
        framed.append(UInt8(truncatingIfNeeded: length))
        framed.append(contentsOf: message)
        return framed
    }
}
