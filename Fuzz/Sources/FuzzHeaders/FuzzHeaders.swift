import Logging
@testable import CURecRPC

// Input layout: fields separated by 0x00 bytes, read as the request head of one call:
// :method, :path, content-type, grpc-timeout, grpc-encoding, then metadata name/value pairs.
// Every field also goes through the header text formats on its own (grpc-timeout,
// grpc-message escaping, -bin base64, the listen address), each checked against what the
// format says.

/// The router the admitted calls are routed against: health and the interop test service.
private let shared: ServerShared = {
    var router = RPCRouter()
    router.register(HealthService())
    router.register(InteropTestService())
    return ServerShared(configuration: RPCServerConfiguration(), router: router,
                        logger: Logger(label: "fuzz-headers", factory: { _ in SwiftLogNoOpLogHandler() }))
}()

/// `grpc-timeout`: 1 to 8 ASCII digits and one unit letter; anything else is malformed.
private func checkTimeout(_ text: String) {
    let bytes = Array(text.utf8)
    let parsed = WireFormats.parseTimeout(text)
    let digits = bytes.dropLast()
    let wellFormed = (2...9).contains(bytes.count)
        && digits.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
        && "HMSmun".utf8.contains(bytes.last ?? 0)
    precondition((parsed != nil) == wellFormed, "parseTimeout('\(text)') = \(String(describing: parsed))")
    if let parsed, let amount = UInt64(String(decoding: digits, as: UTF8.self)) {
        let unit: UInt64 = switch bytes.last {
        case UInt8(ascii: "H"): 3_600_000_000_000
        case UInt8(ascii: "M"): 60_000_000_000
        case UInt8(ascii: "S"): 1_000_000_000
        case UInt8(ascii: "m"): 1_000_000
        case UInt8(ascii: "u"): 1_000
        default: 1
        }
        let (product, overflow) = amount.multipliedReportingOverflow(by: unit)
        precondition(parsed == (overflow ? UInt64.max : product), "parseTimeout('\(text)') = \(parsed)")
    }
}

/// `grpc-message`: the encoding is printable ASCII and decodes back to the text.
private func checkMessageEscaping(_ text: String) {
    let encoded = WireFormats.percentEncode(text)
    precondition(encoded.utf8.allSatisfy { (0x20...0x7E).contains($0) }, "percentEncode left a byte outside printable ASCII")
    precondition(WireFormats.percentDecode(encoded) == text, "percentDecode(percentEncode(x)) != x")
    _ = WireFormats.percentDecode(text)
}

/// `-bin` metadata: whatever decodes re-encodes to the same bytes.
private func checkBinaryMetadata(_ text: String) {
    guard let bytes = Base64.decode(text) else { return }
    precondition(Base64.decode(Base64.encode(bytes)) == bytes, "base64 round trip changed the bytes")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHeaders(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let fields = UnsafeBufferPointer(start: data, count: size)
        .split(separator: 0, omittingEmptySubsequences: false)
        .map { String(decoding: $0, as: UTF8.self) }
    for field in fields {
        checkTimeout(field)
        checkMessageEscaping(field)
        checkBinaryMetadata(field)
        _ = try? RPCServerConfiguration.parseListenAddress(field)
    }

    // The request head as the connection collects it, then admission as the server does it.
    guard let loop = try? EventLoop(index: 0) else { return 0 }
    let call = ServerCall(streamID: 1, maxMessageBytes: shared.configuration.maxReceiveMessageBytes, buffer: nil, wakeLoop: {})
    func field(_ index: Int) -> String? { index < fields.count ? fields[index] : nil }
    call.method = field(0) ?? "POST"
    call.path = field(1) ?? ""
    call.contentType = field(2) ?? "application/grpc"
    call.timeoutText = field(3).flatMap { $0.isEmpty ? nil : $0 }
    call.encoding = field(4).flatMap { $0.isEmpty ? nil : $0 }
    var index = 5
    while index + 1 < fields.count {
        if !call.metadata.addWireHeader(name: fields[index], value: fields[index + 1]) {
            call.badHeader = "metadata '\(fields[index])' is not valid base64"
        }
        index += 2
    }
    let connection: HTTP2Connection
    do {
        connection = try HTTP2Connection(fd: -1, peer: "fuzz", loop: loop, shared: shared,
                                        transport: PlainTransport(fd: -1), onClose: { _ in })
    } catch {
        return 0
    }
    if let response = shared.admit(call: call, connection: connection) {
        if case .grpcStatus(let status, let trailers) = response {
            // What goes on the wire must be valid header text.
            let wire = WireFormats.percentEncode(status.message)
            precondition(wire.utf8.allSatisfy { (0x20...0x7E).contains($0) })
            _ = trailers.wireHeaders()
        }
    } else {
        precondition(call.route != nil && call.context != nil, "an admitted call has no route or context")
        precondition(shared.router.route(for: call.path) != nil, "admitted a call to an unrouted path")
    }
    var block = HeaderBlock()
    block.add(call.metadata)
    block.withNameValues { _, count in precondition(count == call.metadata.wireHeaders().count) }
    return 0
}
