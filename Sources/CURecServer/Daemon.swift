import CURecRPC
import Foundation
import Logging

/// Options of a daemon run, from flags, the environment or a config file.
public struct DaemonOptions: Sendable {
    /// The RPC server's settings (listen address, limits, timeouts).
    public var server = RPCServerConfiguration()
    /// Serve `grpc.testing.TestService` for the standard interop cases.
    public var enableInteropTesting = false
    /// If set, the bound port is written here (then a newline) once the server listens.
    public var portFile: String? = nil

    /// Creates the default options.
    public init() {}
}

/// The CURec daemon: builds the services, runs the RPC server, and shuts down gracefully.
public final class Daemon: Sendable {
    /// The health service, so callers can change serving status.
    public let health: HealthService
    private let server: RPCServer
    private let options: DaemonOptions
    private let logger: Logger

    /// Creates the daemon and all of its services; nothing is bound until ``start()``.
    public init(options: DaemonOptions, logger: Logger) throws {
        self.options = options
        self.logger = logger
        let health = HealthService()
        var router = RPCRouter()
        router.register(health)
        if options.enableInteropTesting {
            router.register(InteropTestService())
            health.setStatus(.serving, for: "grpc.testing.TestService")
        }
        health.setStatus(.serving, for: "grpc.health.v1.Health")
        let reflection = try ReflectionService(
            descriptorSets: [ReflectionService.standardDescriptorSet],
            services: router.serviceNames)
        router.register(reflection)
        self.health = health
        self.server = try RPCServer(configuration: options.server, router: router, logger: logger)
    }

    /// Binds and starts serving; returns the bound port and writes the port file if asked.
    @discardableResult
    public func start() throws -> Int {
        let port = try server.start()
        if let portFile = options.portFile {
            let temporary = portFile + ".tmp"
            try "\(port)\n".write(toFile: temporary, atomically: false, encoding: .utf8)
            guard rename(temporary, portFile) == 0 else {
                throw RPCServerError.system("rename(\(temporary), \(portFile))", errno)
            }
        }
        return port
    }

    /// Starts graceful shutdown: health turns NOT_SERVING, GOAWAY is sent, calls drain.
    public func beginShutdown() {
        health.markAllNotServing()
        server.beginGracefulShutdown()
    }

    /// Blocks until the server has stopped.
    public func waitUntilStopped() {
        server.waitUntilStopped()
    }
}
