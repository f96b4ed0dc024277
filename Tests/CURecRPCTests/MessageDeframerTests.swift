import Testing
@testable import CURecRPC

@Suite struct MessageDeframerTests {
    private func framed(_ messages: [[UInt8]]) -> [UInt8] {
        messages.flatMap { MessageFramer.frame($0) }
    }

    @Test func reassemblesMessagesSplitAtEveryBoundary() throws {
        let messages: [[UInt8]] = [[], [1, 2, 3], Array(repeating: 7, count: 300), [9]]
        let wire = framed(messages)
        for split in 0...wire.count {
            var deframer = MessageDeframer(maxMessageBytes: 1024)
            var received: [[UInt8]] = []
            for part in [Array(wire[..<split]), Array(wire[split...])] {
                try part.withUnsafeBytes { try deframer.process($0) { received.append($0) } }
            }
            #expect(received == messages, "split at \(split)")
            #expect(deframer.isAtMessageBoundary)
        }
    }

    @Test func reassemblesByteByByte() throws {
        let messages: [[UInt8]] = [[1], Array(0..<200).map { UInt8($0) }]
        var deframer = MessageDeframer(maxMessageBytes: 1024)
        var received: [[UInt8]] = []
        for byte in framed(messages) {
            try [byte].withUnsafeBytes { try deframer.process($0) { received.append($0) } }
        }
        #expect(received == messages)
    }

    @Test func refusesAnOversizedMessageFromItsPrefixAlone() {
        var deframer = MessageDeframer(maxMessageBytes: 4 * 1024 * 1024)
        let prefix: [UInt8] = [0, 0xFF, 0xFF, 0xFF, 0xFF]
        #expect(throws: MessageDeframer.DeframingError.messageTooLarge(declared: UInt32.max, limit: 4 * 1024 * 1024)) {
            try prefix.withUnsafeBytes { try deframer.process($0) { _ in } }
        }
        #expect(deframer.bufferedBytes == 0)
    }

    @Test func reportsAnIncompleteMessage() throws {
        var deframer = MessageDeframer(maxMessageBytes: 100)
        let partial: [UInt8] = [0, 0, 0, 0, 10, 1, 2]
        try partial.withUnsafeBytes { try deframer.process($0) { _ in Issue.record("no message expected") } }
        #expect(!deframer.isAtMessageBoundary)
        #expect(deframer.bufferedBytes == 2)
    }

    @Test func refusesCompressedFlagWithoutEncodingAndBadFlags() {
        var deframer = MessageDeframer(maxMessageBytes: 100)
        #expect(throws: MessageDeframer.DeframingError.compressedWithoutEncoding) {
            try [UInt8]([1, 0, 0, 0, 0]).withUnsafeBytes { try deframer.process($0) { _ in } }
        }
        var other = MessageDeframer(maxMessageBytes: 100)
        #expect(throws: MessageDeframer.DeframingError.invalidFlag(7)) {
            try [UInt8]([7, 0, 0, 0, 0]).withUnsafeBytes { try other.process($0) { _ in } }
        }
    }
}

extension MessageDeframerTests {
    /// A prefix that promises 4 MiB and delivers ten bytes holds ten bytes, not 4 MiB.
    @Test func bufferGrowsWithTheBytesThatArrive() throws {
        var deframer = MessageDeframer(maxMessageBytes: 4 * 1024 * 1024)
        let chunk: [UInt8] = [0, 0x00, 0x40, 0x00, 0x00] + [UInt8](repeating: 7, count: 10)
        try chunk.withUnsafeBytes { raw in
            try deframer.process(raw) { _ in Issue.record("no message is complete yet") }
        }
        #expect(deframer.bufferedBytes == 10)
        #expect(deframer.bodyCapacity < 64 * 1024)
    }
}
