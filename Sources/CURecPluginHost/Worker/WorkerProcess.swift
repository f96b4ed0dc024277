import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Limits and supervision settings of one isolated plugin instance.
public struct WorkerLimits: Sendable, Hashable {
    /// A call (other than train) that takes longer kills and restarts the worker.
    public var callTimeLimit: Duration
    /// Starting a worker (create, then loading the saved state) may take this long.
    public var startTimeLimit: Duration
    /// RLIMIT_AS of the worker in bytes (nil: unlimited): an allocation beyond it fails.
    public var memoryBytes: UInt64?
    /// RLIMIT_CPU of the worker in seconds of CPU time (nil: unlimited): beyond it the
    /// kernel kills the worker, which is then restarted.
    public var cpuSeconds: UInt64?
    /// Connections to the worker, so this many calls run in it at once.
    public var channels: Int
    /// A worker that stops this many times within ``restartWindow`` is marked failed.
    public var restartLimit: Int
    public var restartWindow: Duration

    public init(callTimeLimit: Duration = .seconds(10), startTimeLimit: Duration = .seconds(120),
                memoryBytes: UInt64? = nil, cpuSeconds: UInt64? = nil, channels: Int = 4,
                restartLimit: Int = 5, restartWindow: Duration = .seconds(60)) {
        self.callTimeLimit = callTimeLimit
        self.startTimeLimit = startTimeLimit
        self.memoryBytes = memoryBytes
        self.cpuSeconds = cpuSeconds
        self.channels = max(1, min(channels, 64))
        self.restartLimit = max(1, restartLimit)
        self.restartWindow = restartWindow
    }
}

/// One running worker process and the daemon's ends of its channels.
///
/// The channels are UNIX stream socketpairs made before the worker starts; the worker gets
/// its ends as descriptors 3, 4, ... and nothing else (every other descriptor is closed in
/// the worker at its start). The daemon's ends are closed when the last caller lets go of the process.
final class WorkerProcess: Sendable {
    let pid: pid_t
    /// The daemon's end of each channel.
    let channels: [Int32]

    /// Workers spawned and not yet reaped by this process.
    static let running = Mutex<Int>(0)

    private init(pid: pid_t, channels: [Int32]) {
        self.pid = pid
        self.channels = channels
    }

    deinit {
        for descriptor in channels { close(descriptor) }
    }

    /// Starts `executable` for the library at `libraryPath` (already confined to the plugin
    /// directories by the host); `cacheDirectory` is where the worker stages its copy.
    static func spawn(executable: String, libraryPath: String, cacheDirectory: String,
                      limits: WorkerLimits) throws(PluginHostError) -> WorkerProcess {
        var daemonEnds: [Int32] = []
        var workerEnds: [Int32] = []
        func closeAll() {
            for descriptor in daemonEnds + workerEnds { close(descriptor) }
        }
        for _ in 0..<limits.channels {
            var pair: [Int32] = [-1, -1]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
                let reason = String(cString: strerror(errno))
                closeAll()
                throw .host("cannot make a channel to a plugin worker: \(reason)")
            }
            daemonEnds.append(pair[0])
            // Above every descriptor the child's dup2 targets, so no target is also a source.
            let high = fcntl(pair[1], F_DUPFD_CLOEXEC, 256)
            close(pair[1])
            guard high >= 0 else {
                closeAll()
                throw .host("cannot make a channel to a plugin worker: \(String(cString: strerror(errno)))")
            }
            workerEnds.append(high)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (index, descriptor) in workerEnds.enumerated() {
            posix_spawn_file_actions_adddup2(&actions, descriptor, Int32(3 + index))
        }
        let arguments = [
            executable, libraryPath,
            (cacheDirectory as NSString).appendingPathComponent("worker-\(UUID().uuidString)"), String(limits.channels),
            String(limits.memoryBytes ?? 0), String(limits.cpuSeconds ?? 0),
        ]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        // The daemon's environment, without Swift's crash backtracer: a crashing plugin's
        // worker should end at once, not spend seconds symbolicating first.
        var environment: [UnsafeMutablePointer<CChar>?] = ProcessInfo.processInfo.environment
            .filter { $0.key != "SWIFT_BACKTRACE" }
            .map { strdup("\($0.key)=\($0.value)") } + [strdup("SWIFT_BACKTRACE=enable=no"), nil]
        defer { for pointer in environment { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, nil, &argv, &environment)
        for descriptor in workerEnds { close(descriptor) }
        workerEnds = []
        guard result == 0 else {
            closeAll()
            throw .host("cannot start the plugin worker \(executable): \(String(cString: strerror(result)))")
        }
        running.withLock { $0 += 1 }
        return WorkerProcess(pid: pid, channels: daemonEnds)
    }

    /// Kills the worker at once (SIGKILL); its reaper sees it exit.
    func kill() {
        _ = Glibc.kill(pid, SIGKILL)
    }

    /// Waits for the worker to exit and reaps it; returns how it ended, for people.
    func waitForExit() -> String {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return "its exit status is unknown (\(String(cString: strerror(errno))))" }
        }
        Self.running.withLock { $0 -= 1 }
        return Self.describe(status: status)
    }

    /// "exited with status 3", "killed by signal 11 (Segmentation fault)".
    static func describe(status: Int32) -> String {
        let signal = status & 0x7f
        if signal == 0 { return "exited with status \((status >> 8) & 0xff)" }
        let name = strsignal(signal).map { String(cString: $0) } ?? "unknown"
        return "killed by signal \(signal) (\(name))"
    }
}
