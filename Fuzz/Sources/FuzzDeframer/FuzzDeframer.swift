@testable import CURecRPC

// Input layout: byte 0 picks the message limit, byte 1 seeds the chunk sizes, the rest is
// the DATA payload of one request stream. The deframer sees the payload in chunks of 1 to
// 64 bytes; what it yields must equal a straightforward parse of the whole payload, and it
// may never hold more than the limit plus a prefix.

/// The messages and the error a one-pass parse of `payload` gives, as the reference.
private func referenceParse(_ payload: ArraySlice<UInt8>, limit: Int)
    -> (messages: [[UInt8]], error: MessageDeframer.DeframingError?, atBoundary: Bool)
{
    var messages: [[UInt8]] = []
    var index = payload.startIndex
    while payload.endIndex - index >= 5 {
        let flag = payload[index]
        let length = Int(payload[index + 1]) << 24 | Int(payload[index + 2]) << 16
            | Int(payload[index + 3]) << 8 | Int(payload[index + 4])
        switch flag {
        case 0: break
        case 1: return (messages, .compressedWithoutEncoding, false)
        default: return (messages, .invalidFlag(flag), false)
        }
        if length > limit { return (messages, .messageTooLarge(declared: UInt32(length), limit: limit), false) }
        guard payload.endIndex - index - 5 >= length else { return (messages, nil, false) }
        messages.append(Array(payload[(index + 5)..<(index + 5 + length)]))
        index += 5 + length
    }
    return (messages, nil, index == payload.endIndex)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDeframer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    let input = UnsafeBufferPointer(start: data, count: size)
    let limits = [0, 1, 16, 1024, 4 * 1024 * 1024]
    let limit = limits[Int(input[0]) % limits.count]
    var chunkSeed = UInt32(input[1]) | 1
    let payload = Array(input[2...])

    var deframer = MessageDeframer(maxMessageBytes: limit)
    var messages: [[UInt8]] = []
    var failure: MessageDeframer.DeframingError? = nil
    var offset = 0
    payload.withUnsafeBytes { raw in
        while offset < raw.count, failure == nil {
            // A small xorshift picks the next chunk length, so boundaries fall everywhere.
            chunkSeed ^= chunkSeed << 13
            chunkSeed ^= chunkSeed >> 17
            chunkSeed ^= chunkSeed << 5
            let take = min(Int(chunkSeed % 64) + 1, raw.count - offset)
            do {
                try deframer.process(UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + take)])) { message in
                    messages.append(message)
                }
            } catch let error as MessageDeframer.DeframingError {
                failure = error
            } catch {
                fatalError("the deframer threw \(error), which is not a DeframingError")
            }
            offset += take
            // What is buffered is one prefix or one body under the limit, never more.
            precondition(deframer.bufferedBytes <= max(limit, 5),
                         "deframer buffers \(deframer.bufferedBytes) bytes with a \(limit)-byte limit")
        }
    }
    let expected = referenceParse(payload[...], limit: limit)
    precondition(messages == expected.messages, "deframed messages differ from the reference parse")
    precondition(failure == expected.error, "deframer error \(String(describing: failure)) != \(String(describing: expected.error))")
    if failure == nil {
        precondition(deframer.isAtMessageBoundary == expected.atBoundary, "message boundary disagrees with the reference")
    }
    return 0
}
