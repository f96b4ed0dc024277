import CNGHTTP2

/// Builds `nghttp2_nv` arrays from name/value pairs without per-header allocations.
///
/// All names and values are copied into one contiguous buffer; the `nghttp2_nv` entries
/// point into it only for the duration of `withNameValues`. nghttp2 copies header data
/// when a frame is submitted, so nothing outlives the call.
struct HeaderBlock {
    private var bytes: [UInt8] = []
    private var spans: [(nameStart: Int, nameLength: Int, valueStart: Int, valueLength: Int)] = []

    init(capacity: Int = 8) {
        bytes.reserveCapacity(256)
        spans.reserveCapacity(capacity)
    }

    mutating func add(_ name: String, _ value: String) {
        let nameStart = bytes.count
        bytes.append(contentsOf: name.utf8)
        let valueStart = bytes.count
        bytes.append(contentsOf: value.utf8)
        spans.append((nameStart, valueStart - nameStart, valueStart, bytes.count - valueStart))
    }

    mutating func add(_ metadata: Metadata) {
        for (name, value) in metadata.wireHeaders() { add(name, value) }
    }

    @discardableResult
    func withNameValues<T>(_ body: (UnsafePointer<nghttp2_nv>, Int) -> T) -> T {
        var storage = bytes
        if storage.isEmpty { storage.append(0) }
        return storage.withUnsafeMutableBufferPointer { buffer in
            let base = buffer.baseAddress!
            var nvs = spans.map { span in
                nghttp2_nv(
                    name: base + span.nameStart, value: base + span.valueStart,
                    namelen: span.nameLength, valuelen: span.valueLength,
                    flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
            }
            if nvs.isEmpty {
                nvs.append(nghttp2_nv(name: base, value: base, namelen: 0, valuelen: 0, flags: 0))
                return nvs.withUnsafeBufferPointer { body($0.baseAddress!, 0) }
            }
            return nvs.withUnsafeBufferPointer { body($0.baseAddress!, $0.count) }
        }
    }
}
