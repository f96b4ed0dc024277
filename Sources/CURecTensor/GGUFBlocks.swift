// GGML block layouts (32 elements per block, little-endian halves):
//
//   Q8_0  34 bytes: d f16 | q[32] int8            x[i] = q[i] * d
//   Q4_0  18 bytes: d f16 | qs[16]                x[i] = (nibble(i) - 8) * d
//   Q4_1  20 bytes: d f16 | m f16 | qs[16]        x[i] = nibble(i) * d + m
//
// where nibble(i) is the low nibble of qs[i] for i < 16 and the high nibble of qs[i - 16]
// for i >= 16. The products are rounded before the addition (no fused multiply-add), as in
// GGML's reference dequantization, so results are bit-identical to it.

/// Conversion of stored GGML rows to Float32.
enum GGMLBlocks {
    /// Converts `count` elements of `type` stored at `source` (whole blocks for quantized
    /// types) to `destination`. Returns false, writing nothing, if `type` is not one of
    /// ``GGMLType/dequantizable`` or `count` is not a whole number of blocks.
    @discardableResult
    static func dequantize(
        _ type: GGMLType, from source: UnsafeRawPointer, count: Int, into destination: UnsafeMutablePointer<Float>
    ) -> Bool {
        guard type.isDequantizable, count >= 0, count % type.blockSize == 0 else { return false }
        switch type {
        case .f32:
            // Float32 in memory is little-endian on every platform we build for.
            UnsafeMutableRawPointer(destination).copyMemory(from: source, byteCount: count * 4)
        case .f16:
            for i in 0..<count { destination[i] = half(source, i * 2) }
        case .bf16:
            for i in 0..<count {
                let bits = UInt16(littleEndian: source.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
                destination[i] = Float(bitPattern: UInt32(bits) << 16)
            }
        case .q8_0:
            for block in 0..<(count / 32) {
                let b = source + block * 34
                let d = half(b, 0)
                let out = destination + block * 32
                for i in 0..<32 { out[i] = Float(Int8(bitPattern: b.load(fromByteOffset: 2 + i, as: UInt8.self))) * d }
            }
        case .q4_0:
            for block in 0..<(count / 32) {
                let b = source + block * 18
                let d = half(b, 0)
                let out = destination + block * 32
                for i in 0..<16 {
                    let byte = b.load(fromByteOffset: 2 + i, as: UInt8.self)
                    out[i] = Float(Int(byte & 0x0F) - 8) * d
                    out[i + 16] = Float(Int(byte >> 4) - 8) * d
                }
            }
        case .q4_1:
            for block in 0..<(count / 32) {
                let b = source + block * 20
                let d = half(b, 0), m = half(b, 2)
                let out = destination + block * 32
                for i in 0..<16 {
                    let byte = b.load(fromByteOffset: 4 + i, as: UInt8.self)
                    out[i] = Float(byte & 0x0F) * d + m
                    out[i + 16] = Float(byte >> 4) * d + m
                }
            }
        default:
            return false
        }
        return true
    }

    /// The IEEE half at `offset` bytes from `base`, widened exactly to Float.
    @inline(__always)
    static func half(_ base: UnsafeRawPointer, _ offset: Int) -> Float {
        FloatBits.halfToFloat(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
    }
}
