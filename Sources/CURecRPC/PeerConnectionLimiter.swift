import CLinux
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Counts open connections per peer address, so one client cannot take every slot.
final class PeerConnectionLimiter: Sendable {
    /// Connections one address may hold.
    let perPeer: Int
    private let counts = Mutex<[String: Int]>([:])

    init(perPeer: Int) {
        self.perPeer = perPeer
    }

    /// Takes a slot for `peer`; false when it already holds `perPeer`.
    func acquire(_ peer: String) -> Bool {
        counts.withLock { counts in
            let current = counts[peer, default: 0]
            guard current < perPeer else { return false }
            counts[peer] = current + 1
            return true
        }
    }

    /// Gives back a slot taken by ``acquire(_:)``.
    func release(_ peer: String) {
        counts.withLock { counts in
            let current = counts[peer, default: 0]
            if current <= 1 { counts[peer] = nil } else { counts[peer] = current - 1 }
        }
    }

    /// The numeric address of the peer of a connected socket (without the port), or
    /// "unknown" when the kernel does not say.
    static func peerAddress(of fd: Int32) -> String {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
        }
        guard result == 0 else { return "unknown" }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let family = Int32(storage.ss_family)
        let converted: UnsafePointer<CChar>? = withUnsafePointer(to: &storage) { pointer in
            if family == AF_INET6 {
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { address in
                    withUnsafePointer(to: address.pointee.sin6_addr) {
                        inet_ntop(AF_INET6, $0, &text, socklen_t(text.count))
                    }
                }
            }
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address in
                withUnsafePointer(to: address.pointee.sin_addr) {
                    inet_ntop(AF_INET, $0, &text, socklen_t(text.count))
                }
            }
        }
        guard converted != nil else { return "unknown" }
        return String(cString: text)
    }
}
