import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// What a client may write as a plugin library: a plain file name, never a path.
public enum PluginLibraryName {
    /// The longest name accepted (a file name limit of common file systems).
    public static let maximumLength = 255

    /// Whether `name` is a plain file name: not empty, at most ``maximumLength`` bytes, no
    /// `/`, no NUL or other control character, and not `.` or `..` (nor any name starting
    /// with a dot).
    public static func isPlain(_ name: String) -> Bool {
        let bytes = name.utf8
        guard !bytes.isEmpty, bytes.count <= maximumLength, bytes.first != UInt8(ascii: ".") else { return false }
        return !bytes.contains { $0 == UInt8(ascii: "/") || $0 < 0x20 || $0 == 0x7F }
    }
}

/// File-system checks on the operator's plugin directories.
enum PluginDirectory {
    /// `path` with every symbolic link, `.` and `..` resolved; nil when it does not exist.
    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// The real path of `name` in the directory `root` (itself a real path), when that is a
    /// regular file still inside `root`; nil otherwise (missing, a directory, a device, or a
    /// link that leads elsewhere).
    static func regularFile(named name: String, inside root: String) -> String? {
        guard let path = realPath((root as NSString).appendingPathComponent(name)) else { return nil }
        let prefix = root.hasSuffix("/") ? root : root + "/"
        guard path.hasPrefix(prefix) else { return nil }
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        return path
    }

    /// What tells one version of a file from another: size and modification time.
    struct FileIdentity: Equatable, Sendable {
        let size: Int64
        let modifiedSeconds: Int
        let modifiedNanoseconds: Int
    }

    static func identity(of path: String) -> FileIdentity? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return FileIdentity(size: Int64(info.st_size), modifiedSeconds: Int(info.st_mtim.tv_sec),
                            modifiedNanoseconds: Int(info.st_mtim.tv_nsec))
    }

    /// What tells one build of a library from another: device, inode, size, and the
    /// modification and status-change times to the nanosecond. Replacing the file (a new
    /// inode) or writing into it (a new status-change time, which no tool can set back)
    /// changes it; reading or copying it does not.
    struct BuildIdentity: Hashable, Sendable {
        let device: UInt64
        let inode: UInt64
        let size: Int64
        let modifiedSeconds: Int
        let modifiedNanoseconds: Int
        let changedSeconds: Int
        let changedNanoseconds: Int
    }

    static func buildIdentity(of path: String) -> BuildIdentity? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return BuildIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
                             modifiedSeconds: Int(info.st_mtim.tv_sec), modifiedNanoseconds: Int(info.st_mtim.tv_nsec),
                             changedSeconds: Int(info.st_ctim.tv_sec), changedNanoseconds: Int(info.st_ctim.tv_nsec))
    }

    /// The symbol every plugin exports, as it appears in the dynamic string table.
    private static let abiSymbol = Array("curec_plugin_abi_version\0".utf8)
    /// Files larger than this are not scanned when listing (no plugin is near it).
    private static let scanLimit = 512 << 20

    /// Whether the file at `path` is an ELF object naming the plugin ABI version symbol.
    /// Reads the file in chunks; never maps or runs it.
    static func looksLikePlugin(path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        guard let magic = try? handle.read(upToCount: 4), Array(magic) == [0x7F, 0x45, 0x4C, 0x46] else { return false }
        var carried: [UInt8] = Array(magic)
        var scanned = 4
        let chunkSize = 1 << 20
        while scanned < scanLimit {
            guard let chunk = try? handle.read(upToCount: chunkSize), !chunk.isEmpty else { return false }
            scanned += chunk.count
            let window = carried + chunk
            if contains(window, abiSymbol) { return true }
            carried = Array(window.suffix(abiSymbol.count - 1))
        }
        return false
    }

    private static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard haystack.count >= needle.count, let first = needle.first else { return false }
        var index = 0
        let last = haystack.count - needle.count
        while index <= last {
            guard let found = haystack[index...last].firstIndex(of: first) else { return false }
            if haystack[found..<(found + needle.count)].elementsEqual(needle) { return true }
            index = found + 1
        }
        return false
    }
}
