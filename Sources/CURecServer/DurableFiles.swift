import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// fsync for what the daemon publishes: files and directories reach the disk before a
/// rename makes them visible.
enum DurableFiles {
    /// Why a file could not be synced.
    struct SyncError: Error, CustomStringConvertible {
        let path: String
        let code: Int32
        var description: String { "cannot sync \(path) to disk: \(String(cString: strerror(code)))" }
    }

    /// fsyncs the file or directory at `path`.
    static func sync(_ path: String) throws(SyncError) {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw SyncError(path: path, code: errno) }
        defer { close(descriptor) }
        // EINVAL: the file system cannot sync this kind of file (nothing to make durable).
        guard fsync(descriptor) == 0 || errno == EINVAL else { throw SyncError(path: path, code: errno) }
    }

    /// fsyncs every regular file and directory under `directory`, deepest first, then
    /// `directory` itself (symbolic links are not followed).
    static func syncTree(_ directory: String) throws(SyncError) {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for entry in entries {
            let path = (directory as NSString).appendingPathComponent(entry)
            var info = stat()
            guard lstat(path, &info) == 0 else { throw SyncError(path: path, code: errno) }
            switch info.st_mode & S_IFMT {
            case S_IFDIR: try syncTree(path)
            case S_IFREG: try sync(path)
            default: continue
            }
        }
        try sync(directory)
    }
}
