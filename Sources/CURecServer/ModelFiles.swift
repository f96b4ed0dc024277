import CURecJobs
import CURecRPC
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Why a model version's files were not accepted: what a registry row promises is not what
/// the models directory holds, or the row names something it must not.
public struct ModelVerificationError: Error, CustomStringConvertible, Sendable, Equatable {
    public let reason: String
    public var description: String { reason }
    init(_ reason: String) { self.reason = reason }
}

/// The files of a model version as the registry records them: listed with their sizes and
/// SHA-256 when a version is published, and checked against the directory before a version
/// another daemon published is loaded.
enum ModelFiles {
    /// Every regular file under `directory` (recursively), with its path relative to it,
    /// size and SHA-256, sorted by path. Symbolic links and other special files are not listed.
    static func list(in directory: String) throws -> [ModelFile] {
        var files: [ModelFile] = []
        func walk(_ relative: String) throws {
            let absolute = relative.isEmpty ? directory : (directory as NSString).appendingPathComponent(relative)
            for entry in try FileManager.default.contentsOfDirectory(atPath: absolute) {
                let path = relative.isEmpty ? entry : (relative as NSString).appendingPathComponent(entry)
                let full = (directory as NSString).appendingPathComponent(path)
                var info = stat()
                guard lstat(full, &info) == 0 else { continue }
                switch info.st_mode & S_IFMT {
                case S_IFDIR: try walk(path)
                case S_IFREG:
                    let digest = try SHA256Digest.hexOfFile(atPath: full)
                    files.append(ModelFile(path: path, size: digest.size, sha256: digest.hex))
                default: continue
                }
            }
        }
        try walk("")
        return files.sorted { $0.path < $1.path }
    }

    /// Whether `path` is a plain relative path: components that are not empty, `.` or `..`,
    /// no leading `/`, no control characters, at most 1024 bytes.
    static func isContained(_ path: String) -> Bool {
        let bytes = path.utf8
        guard !bytes.isEmpty, bytes.count <= 1024, bytes.first != UInt8(ascii: "/"),
              !bytes.contains(where: { $0 < 0x20 || $0 == 0x7F }) else { return false }
        return path.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { !$0.isEmpty && $0 != "." && $0 != ".." }
    }

    /// Checks that the version directory `directory` (of `version`, under `modelsRoot`) holds
    /// every file the row lists, each a regular file inside it with the recorded size and
    /// SHA-256. The row's name and every path must stay inside the models directory.
    static func verify(_ version: ModelVersion, in directory: String, modelsRoot: String) throws(ModelVerificationError) {
        let label = "models/\(ResourceName.quoted(version.name))/v\(version.version)"
        guard ResourceName.isValid(version.name), version.version > 0 else {
            throw ModelVerificationError("\(label): the recorded name or version is not a valid model name and version")
        }
        guard !version.files.isEmpty else {
            throw ModelVerificationError("\(label): the registry lists no files for it (torn or foreign record)")
        }
        for file in version.files where !isContained(file.path) {
            throw ModelVerificationError("\(label): the registry names a file outside its directory (\(ResourceName.quoted(file.path)))")
        }
        guard let root = realPath(modelsRoot), let real = realPath(directory) else {
            throw ModelVerificationError("\(label): its directory is missing from the models directory (not yet on this machine's storage?)")
        }
        guard real.hasPrefix(root + "/") else {
            throw ModelVerificationError("\(label): its directory resolves outside the models directory")
        }
        for file in version.files {
            let path = (real as NSString).appendingPathComponent(file.path)
            guard let resolved = realPath(path), resolved.hasPrefix(real + "/") else {
                throw ModelVerificationError("\(label): file \(ResourceName.quoted(file.path)) is missing or resolves outside its directory")
            }
            var info = stat()
            guard lstat(resolved, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
                throw ModelVerificationError("\(label): file \(ResourceName.quoted(file.path)) is not a regular file")
            }
            guard Int64(info.st_size) == file.size else {
                throw ModelVerificationError("\(label): file \(ResourceName.quoted(file.path)) has \(info.st_size) bytes, the registry recorded \(file.size) (torn publication)")
            }
            let digest: String
            do {
                digest = try SHA256Digest.hexOfFile(atPath: resolved).hex
            } catch {
                throw ModelVerificationError("\(label): \(error)")
            }
            guard digest == file.sha256.lowercased() else {
                throw ModelVerificationError("\(label): file \(ResourceName.quoted(file.path)) does not match its recorded SHA-256 (torn or altered publication)")
            }
        }
    }

    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
