import CURecTensor
import Glibc

// Input: the bytes of a GGUF file. The reader maps files, so each input is written to a
// scratch file first. Whatever the reader accepts must dequantize every tensor of a
// convertible type, and hand out every tensor's stored bytes, without reading outside the
// file; typed metadata lookups must answer for every key.

private let scratchPath = "/tmp/curec-fuzz-gguf-\(getpid()).gguf"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGGUF(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let file = fopen(scratchPath, "wb") else { fatalError("cannot create \(scratchPath)") }
    precondition(fwrite(data, 1, size, file) == size, "short write to \(scratchPath)")
    fclose(file)
    guard let gguf = try? GGUFFile.read(path: scratchPath) else { return 0 }
    for key in gguf.metadataKeys {
        _ = gguf.string(key)
        _ = gguf.int(key)
        _ = gguf.float(key)
        _ = gguf.bool(key)
        _ = gguf.strings(key)
        _ = gguf.ints(key)
        _ = gguf.floats(metadata: key)
    }
    for info in gguf.tensors {
        precondition(gguf.dataStart + info.offset + info.byteCount <= size,
                     "'\(info.name)' claims \(info.byteCount) bytes at \(gguf.dataStart + info.offset) of a \(size)-byte file")
        // The shape arithmetic a loader does on every tensor it accepts.
        precondition(info.rowCount * info.rowLength == info.elementCount, "'\(info.name)' rows do not multiply out")
        precondition(info.rowCount * info.rowBytes == info.byteCount, "'\(info.name)' row bytes do not add up")
        let stored = try? gguf.withRawBytes(info.name) { $0.count }
        precondition(stored == info.byteCount, "'\(info.name)' hands out \(String(describing: stored)) of \(info.byteCount) bytes")
        if info.type.isDequantizable {
            let values = try? gguf.floats(info.name)
            precondition(values?.count == info.elementCount, "'\(info.name)' did not convert to \(info.elementCount) floats")
        }
    }
    return 0
}
