import ArgumentParser
import CURecRPC
import CURecServer
import Dispatch
import Foundation
import Logging

/// `curecd`: the CURec serving daemon.
struct CURecDaemonCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "curecd",
        abstract: "CURec serve: a gRPC daemon for recommendation scoring, reasons and fine-tuning jobs.",
        discussion: """
            Serves gRPC over cleartext HTTP/2 (h2c, prior knowledge). SIGTERM or SIGINT shuts \
            down gracefully: new calls are refused, calls in flight get --drain-timeout seconds \
            to finish, and the process exits 0.
            """)

    @Option(name: .long, help: "Address to listen on, HOST:PORT or [IPv6]:PORT. Port 0 picks a free port and logs it.")
    var listen: String = "127.0.0.1:50051"

    @Option(name: .long, help: "Write the bound port to this file once listening (useful with port 0).")
    var portFile: String?

    @Flag(name: .long, help: "Also serve grpc.testing.TestService, for the standard gRPC interop cases.")
    var enableInteropTesting = false

    @Option(name: .long, help: "Number of I/O event loops (default: one per core).")
    var eventLoops: Int?

    @Option(name: .long, help: "Largest request message accepted, in bytes.")
    var maxMessageBytes: Int = 4 * 1024 * 1024

    @Option(name: .long, help: "Seconds graceful shutdown waits for calls in flight.")
    var drainTimeout: Double = 10

    @Option(name: .long, help: "Seconds after which a connection with no calls is closed.")
    var idleTimeout: Double = 300

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func validate() throws {
        do {
            _ = try RPCServerConfiguration.parseListenAddress(listen)
        } catch {
            throw ValidationError("\(error)")
        }
        guard maxMessageBytes > 0 else { throw ValidationError("--max-message-bytes must be positive") }
        guard drainTimeout >= 0, idleTimeout > 0 else {
            throw ValidationError("--drain-timeout must be >= 0 and --idle-timeout > 0")
        }
        if let eventLoops, eventLoops < 1 { throw ValidationError("--event-loops must be at least 1") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
    }

    func run() throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "curecd")

        var options = DaemonOptions()
        let address = try RPCServerConfiguration.parseListenAddress(listen)
        options.server.host = address.host
        options.server.port = address.port
        if let eventLoops { options.server.eventLoopCount = eventLoops }
        options.server.maxReceiveMessageBytes = maxMessageBytes
        options.server.drainTimeout = .milliseconds(Int(drainTimeout * 1000))
        options.server.idleTimeout = .milliseconds(Int(idleTimeout * 1000))
        options.enableInteropTesting = enableInteropTesting
        options.portFile = portFile

        let daemon = try Daemon(options: options, logger: logger)
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        var signalSources: [DispatchSourceSignal] = []
        for signalNumber in [SIGTERM, SIGINT] {
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler {
                logger.info("received signal; shutting down gracefully", metadata: ["signal": "\(signalNumber)"])
                daemon.beginShutdown()
            }
            source.resume()
            signalSources.append(source)
        }
        let port = try daemon.start()
        logger.info("curecd ready", metadata: ["port": "\(port)"])
        daemon.waitUntilStopped()
        logger.info("curecd stopped")
        withExtendedLifetime(signalSources) {}
    }
}

CURecDaemonCommand.main()
