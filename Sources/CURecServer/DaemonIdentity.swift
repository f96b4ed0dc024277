import CURecJobs
import Foundation

/// The daemon process that made something under a data directory several daemons may share
/// (a staging directory, a plugin-library cache): its host name and process id.
///
/// Several replicas can mount one data directory, so what a daemon finds there at start may be
/// another live daemon's work in progress. Only what was made on this host by a process that no
/// longer runs, or by an earlier process with this daemon's own id (a restarted container's
/// process is often pid 1 again), is left over; what another host made is never judged here.
public struct DaemonIdentity: Sendable, Equatable {
    /// The host name, reduced to the characters a file name and a host name share.
    public let host: String
    public let pid: Int32

    public init(host: String, pid: Int32) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
        let cleaned = String(host.prefix(64).map { allowed.contains($0) ? $0 : "-" })
        self.host = cleaned.isEmpty ? "host" : cleaned
        self.pid = pid
    }

    /// This process.
    public static var current: DaemonIdentity {
        DaemonIdentity(host: JobManager.hostName(), pid: getpid())
    }

    /// `<host>+<pid>`: a file-name component (`+` occurs in no host name).
    public var tag: String { "\(host)+\(pid)" }

    /// Reads a ``tag``, or the tag that starts a name (`<host>+<pid>+<rest>`); nil for any
    /// other name.
    public init?(tagPrefixOf name: Substring) {
        let parts = name.split(separator: "+", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, !parts[0].isEmpty, let pid = Int32(parts[1]), pid > 0 else { return nil }
        self.init(host: String(parts[0]), pid: pid)
        guard host == parts[0] else { return nil }
    }

    /// Whether something `maker` made is left over, as seen by this daemon at its start (before
    /// it makes anything itself): made on this host, by this process id (an earlier process) or
    /// by a process that has exited.
    public func findsLeftover(from maker: DaemonIdentity) -> Bool {
        guard maker.host == host else { return false }
        if maker.pid == pid { return true }
        return kill(maker.pid, 0) != 0 && errno == ESRCH
    }
}
