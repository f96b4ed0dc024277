import CURecTensor
import Glibc

// Input: the bytes of a .safetensors file. The reader maps files, so each input is written
// to a scratch file first. Whatever the reader accepts must convert every tensor it lists
// without reading outside the file; whatever it refuses, it refuses with an error.

private let scratchPath = "/tmp/curec-fuzz-safetensors-\(getpid()).safetensors"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafeTensors(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let file = fopen(scratchPath, "wb") else { fatalError("cannot create \(scratchPath)") }
    precondition(fwrite(data, 1, size, file) == size, "short write to \(scratchPath)")
    fclose(file)
    guard let tensors = try? SafeTensorsFile.read(path: scratchPath) else { return 0 }
    for name in tensors.names {
        guard let entry = tensors.entry(name) else { fatalError("'\(name)' is listed but has no entry") }
        precondition(entry.dataOffsets.lowerBound >= 0 && entry.dataOffsets.upperBound <= size,
                     "'\(name)' claims bytes \(entry.dataOffsets) of a \(size)-byte file")
        if let values = try? tensors.floats(name) {
            precondition(values.count == entry.elementCount, "'\(name)' converted to \(values.count) of \(entry.elementCount) floats")
        }
    }
    return 0
}
