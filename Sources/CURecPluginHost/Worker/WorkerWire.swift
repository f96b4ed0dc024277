#if canImport(Glibc)
import Glibc
#endif

/// The framing between the daemon and a plugin worker, declared once for both sides.
///
/// Each channel is one UNIX stream socket carrying one call at a time: the daemon writes a
/// request frame and reads frames until the reply (a train call may send progress frames
/// first and receive a cancel frame). A frame is
///
///     UInt32 body length (little endian, 1 ... maximumBodySize) | UInt8 type | payload
///
/// where the body is the type byte and the payload. Every integer is little endian, arrays
/// are a UInt32 count then their elements, strings a UInt32 byte count then UTF-8. Neither
/// side trusts the other's sizes: a length beyond the bound, an unknown type or a payload
/// whose counts do not match its length ends the channel (``WireError``).
enum WorkerFrame {
    /// The largest body either side accepts: a training set of a few million interactions.
    static let maximumBodySize = 512 << 20
    /// Bytes before the payload: the length and the type.
    static let headerSize = 5

    /// What a frame carries.
    enum Kind: UInt8, Sendable {
        // Daemon to worker.
        /// Payload: the config bytes. Reply: `.described`.
        case create = 1
        /// Empty. Reply: `.described`.
        case describe = 2
        /// Payload: user, history [UInt32], candidates [UInt32]. Reply: `.scores`.
        case scoreRecommender = 3
        /// Payload: count, then per triple user, item, embedding [Float]. Reply: `.scores`.
        case scoreReward = 4
        /// Payload: ``WorkerTrainingPayload``. Replies: `.progress`* then `.described`.
        case train = 5
        /// Payload: directory (string). Reply: `.done`.
        case save = 6
        /// Payload: directory (string). Reply: `.described`.
        case load = 7
        /// Empty; sent during a train call to stop it (the plugin then returns CANCELLED).
        case cancel = 8

        // Worker to daemon.
        /// Empty: the call succeeded.
        case done = 64
        /// Payload: code (Int32), message (string, at most CUREC_ERROR_MESSAGE_CAPACITY bytes).
        case failed = 65
        /// Payload: step (UInt64), total (UInt64), metrics JSON (string).
        case progress = 66
        /// Payload: [Float].
        case scores = 67
        /// Payload: ``PluginDescription`` (name, version, kind, three dimensions, trained).
        case described = 68
    }
}

/// A frame that breaks the format: the channel it came from is closed.
struct WireError: Error, CustomStringConvertible, Sendable {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Appends little-endian values to a frame under construction.
struct WireWriter {
    private(set) var bytes: [UInt8]

    /// Starts a frame of `kind`; ``finish()`` fills in its length.
    init(_ kind: WorkerFrame.Kind, capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(WorkerFrame.headerSize + capacity)
        bytes.append(contentsOf: [0, 0, 0, 0, kind.rawValue])
    }

    mutating func u32(_ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func i32(_ value: Int32) { u32(UInt32(bitPattern: value)) }

    mutating func u64(_ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func array<T: FixedWidthInteger>(_ values: UnsafeBufferPointer<T>) {
        u32(UInt32(values.count))
        // The platforms served (x86-64, arm64 Linux) are little endian: the memory is the wire.
        bytes.append(contentsOf: UnsafeRawBufferPointer(values))
    }

    mutating func array<T: FixedWidthInteger>(_ values: [T]) {
        values.withUnsafeBufferPointer { array($0) }
    }

    mutating func floats(_ values: UnsafeBufferPointer<Float>) {
        u32(UInt32(values.count))
        bytes.append(contentsOf: UnsafeRawBufferPointer(values))
    }

    mutating func floats(_ values: [Float]) {
        values.withUnsafeBufferPointer { floats($0) }
    }

    mutating func string(_ value: String) {
        array(Array(value.utf8))
    }

    /// The frame with its length filled in.
    mutating func finish() -> [UInt8] {
        let body = UInt32(bytes.count - 4).littleEndian
        withUnsafeBytes(of: body) { raw in
            for index in 0..<4 { bytes[index] = raw[index] }
        }
        return bytes
    }
}

/// Reads little-endian values from a received payload, checking every count against the
/// bytes left.
struct WireReader {
    private let bytes: [UInt8]
    private var offset: Int

    init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    var isAtEnd: Bool { offset == bytes.count }

    private mutating func take(_ count: Int, _ what: String) throws(WireError) -> Range<Int> {
        guard count >= 0, count <= bytes.count - offset else {
            throw WireError("\(what) needs \(count) bytes, \(bytes.count - offset) left in the frame")
        }
        defer { offset += count }
        return offset..<(offset + count)
    }

    mutating func u32(_ what: String = "a UInt32") throws(WireError) -> UInt32 {
        let range = try take(4, what)
        var value: UInt32 = 0
        for (shift, index) in range.enumerated() { value |= UInt32(bytes[index]) << (8 * shift) }
        return value
    }

    mutating func i32(_ what: String = "an Int32") throws(WireError) -> Int32 {
        Int32(bitPattern: try u32(what))
    }

    mutating func u64(_ what: String = "a UInt64") throws(WireError) -> UInt64 {
        let low = UInt64(try u32(what))
        let high = UInt64(try u32(what))
        return low | (high << 32)
    }

    /// An array of `T` preceded by its count; the count is checked against the bytes left
    /// (and `limit`) before anything is allocated.
    mutating func array<T: FixedWidthInteger>(of: T.Type, _ what: String, limit: Int = .max) throws(WireError) -> [T] {
        let count = Int(try u32("the count of \(what)"))
        guard count <= limit else { throw WireError("\(what) has \(count) elements, at most \(limit) allowed") }
        let range = try take(count * MemoryLayout<T>.size, what)
        return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            bytes.withUnsafeBytes { raw in
                UnsafeMutableRawBufferPointer(buffer).copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[range]))
            }
            initialized = count
        }
    }

    mutating func floats(_ what: String, limit: Int = .max) throws(WireError) -> [Float] {
        try array(of: UInt32.self, what, limit: limit).map { Float(bitPattern: $0) }
    }

    /// Reads a float array straight into `output`, which must hold exactly as many values.
    mutating func floats(into output: UnsafeMutableBufferPointer<Float>, _ what: String) throws(WireError) {
        let count = Int(try u32("the count of \(what)"))
        guard count == output.count else { throw WireError("\(what) has \(count) values, \(output.count) expected") }
        let range = try take(count * 4, what)
        bytes.withUnsafeBytes { raw in
            UnsafeMutableRawBufferPointer(output).copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[range]))
        }
    }

    mutating func string(_ what: String, limit: Int = 1 << 20) throws(WireError) -> String {
        String(decoding: try array(of: UInt8.self, what, limit: limit), as: UTF8.self)
    }

    /// Fails unless every byte was read: trailing bytes mean the two sides disagree.
    func finish(_ what: String) throws(WireError) {
        guard isAtEnd else { throw WireError("\(bytes.count - offset) unexpected trailing bytes after \(what)") }
    }
}

/// Blocking frame I/O on one socket descriptor, shared by both sides.
enum WireIO {
    /// Why a frame could not be moved.
    enum Failure: Error, Sendable {
        /// The other end closed or reset the socket.
        case closed
        /// Nothing arrived before the deadline.
        case timedOut
        /// The bytes that arrived are not a frame.
        case malformed(WireError)
        /// Another I/O error.
        case system(Int32)
    }

    /// Writes all of `frame`; never raises SIGPIPE.
    static func send(_ frame: [UInt8], on descriptor: Int32) throws(Failure) {
        var sent = 0
        while sent < frame.count {
            let result = frame.withUnsafeBytes { raw in
                Glibc.send(descriptor, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw errno == EPIPE || errno == ECONNRESET ? .closed : .system(errno)
            }
            sent += result
        }
    }

    /// Waits until `descriptor` is readable; `milliseconds` -1 waits without bound.
    static func waitReadable(_ descriptor: Int32, milliseconds: Int32) throws(Failure) -> Bool {
        var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        while true {
            let ready = poll(&entry, 1, milliseconds)
            if ready < 0 {
                if errno == EINTR { continue }
                throw .system(errno)
            }
            return ready > 0
        }
    }

    /// Reads exactly `count` bytes into `buffer` from `offset`, waiting until `deadline`
    /// (nil: without bound).
    private static func readExactly(_ descriptor: Int32, into buffer: inout [UInt8], from offset: Int, count: Int,
                                    deadline: ContinuousClock.Instant?) throws(Failure) {
        var got = 0
        // With a deadline, bytes already there are taken without waiting (a reply usually
        // is whole when its descriptor turns readable), and only an empty socket is polled.
        var mustWait = false
        while got < count {
            if let deadline, mustWait {
                let left = ContinuousClock.now.duration(to: deadline)
                let milliseconds = left <= .zero ? 0 : Int32(clamping: left.components.seconds * 1000
                    + left.components.attoseconds / 1_000_000_000_000_000 + 1)
                guard try waitReadable(descriptor, milliseconds: milliseconds) else { throw .timedOut }
            }
            let flags = deadline == nil ? Int32(0) : Int32(MSG_DONTWAIT)
            let result = buffer.withUnsafeMutableBytes { raw in
                recv(descriptor, raw.baseAddress! + offset + got, count - got, flags)
            }
            if result == 0 { throw .closed }
            if result < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    mustWait = true
                    continue
                }
                throw errno == ECONNRESET ? .closed : .system(errno)
            }
            got += result
            mustWait = true
        }
    }

    /// Reads one frame: its kind and its payload (the frame's bytes from ``WorkerFrame/headerSize``).
    /// A length beyond the bound or an unknown type is ``Failure/malformed(_:)``.
    static func receive(on descriptor: Int32, deadline: ContinuousClock.Instant? = nil,
                        buffer: inout [UInt8]) throws(Failure) -> WorkerFrame.Kind {
        if buffer.count < WorkerFrame.headerSize { buffer = [UInt8](repeating: 0, count: 4096) }
        try readExactly(descriptor, into: &buffer, from: 0, count: WorkerFrame.headerSize, deadline: deadline)
        let length = Int(buffer[0]) | Int(buffer[1]) << 8 | Int(buffer[2]) << 16 | Int(buffer[3]) << 24
        guard length >= 1, length <= WorkerFrame.maximumBodySize else {
            throw .malformed(WireError("frame length \(length) is outside 1...\(WorkerFrame.maximumBodySize)"))
        }
        guard let kind = WorkerFrame.Kind(rawValue: buffer[4]) else {
            throw .malformed(WireError("unknown frame type \(buffer[4])"))
        }
        let total = 4 + length
        if buffer.count < total { buffer.append(contentsOf: repeatElement(0, count: total - buffer.count)) }
        try readExactly(descriptor, into: &buffer, from: WorkerFrame.headerSize, count: length - 1, deadline: deadline)
        // Callers read the payload through a WireReader limited to this frame.
        if buffer.count > total { buffer.removeSubrange(total...) }
        return kind
    }
}
