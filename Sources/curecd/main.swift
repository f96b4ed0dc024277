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

    @Option(name: .long, help: "YAML configuration file (see docs/configuration.md). Also CUREC_CONFIG.")
    var config: String?

    @Option(name: .long, help: "Address to listen on, HOST:PORT or [IPv6]:PORT (default 127.0.0.1:50051). Port 0 picks a free port and logs it.")
    var listen: String?

    @Option(name: .long, help: "Write the bound port to this file once listening (useful with port 0).")
    var portFile: String?

    @Option(name: .long, help: "Root of the daemon's files: models/, plugins/, caches (default var).")
    var dataDir: String?

    @Option(name: .long, help: "Directory of the dataset's RecBole atomic files (default var/data/ml-100k).")
    var datasetDir: String?

    @Option(name: .long, help: "Dataset name, the atomic files' prefix (default ml-100k).")
    var datasetName: String?

    @Option(name: .long, help: "Extra directory to search for plugin libraries (repeatable).")
    var pluginDir: [String] = []

    @Flag(name: .long, help: "Also serve grpc.testing.TestService, for the standard gRPC interop cases.")
    var enableInteropTesting = false

    @Flag(name: .long, help: "Load no plugins at start (serve RPC infrastructure only).")
    var noPlugins = false

    @Option(name: .long, help: "Number of I/O event loops (default: one per core).")
    var eventLoops: Int?

    @Option(name: .long, help: "Largest request message accepted, in bytes (default 4194304).")
    var maxMessageBytes: Int?

    @Option(name: .long, help: "Seconds graceful shutdown waits for calls in flight (default 10).")
    var drainTimeout: Double?

    @Option(name: .long, help: "Seconds after which a connection with no calls is closed (default 300).")
    var idleTimeout: Double?

    @Option(name: .long, help: "Directory of the all-MiniLM-L6-v2 encoder (default <data-dir>/models/all-MiniLM-L6-v2).")
    var minilmDir: String?

    @Option(name: .long, help: "The pretrained chat model, a GGUF file (default <data-dir>/models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf).")
    var lmPath: String?

    @Option(name: .long, help: "How the chat models keep their weights: quantized (as in the file) or float32 (default quantized).")
    var lmWeights: String?

    @Option(name: .long, help: "Pipeline profile to run on first start: quick, standard or off (default quick).")
    var pipelineOnStart: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical (default info).")
    var logLevel: String?

    func validate() throws {
        if let listen {
            do {
                _ = try RPCServerConfiguration.parseListenAddress(listen)
            } catch {
                throw ValidationError("\(error)")
            }
        }
        if let maxMessageBytes, maxMessageBytes <= 0 { throw ValidationError("--max-message-bytes must be positive") }
        if let drainTimeout, drainTimeout < 0 { throw ValidationError("--drain-timeout must be >= 0") }
        if let idleTimeout, idleTimeout <= 0 { throw ValidationError("--idle-timeout must be > 0") }
        if let eventLoops, eventLoops < 1 { throw ValidationError("--event-loops must be at least 1") }
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
    }

    /// Defaults, then the file, then the environment, then flags.
    func configuration() throws -> DaemonConfiguration {
        let environment = ProcessInfo.processInfo.environment
        var configuration = DaemonConfiguration()
        if let path = config ?? environment["CUREC_CONFIG"] {
            configuration = try DaemonConfiguration.load(file: path)
        }
        try configuration.applyEnvironment(environment)
        if let listen { configuration.listen = listen }
        if let dataDir { configuration.data_dir = dataDir }
        if let datasetDir { configuration.dataset_dir = datasetDir }
        if let datasetName { configuration.dataset_name = datasetName }
        configuration.plugin_dirs.append(contentsOf: pluginDir)
        if enableInteropTesting { configuration.enable_interop_testing = true }
        if noPlugins {
            configuration.plugins = []
            configuration.pipeline_on_start = "off"
        }
        if let minilmDir { configuration.minilm_dir = minilmDir }
        if let lmPath { configuration.lm_path = lmPath }
        if let lmWeights { configuration.lm_weights = lmWeights }
        if let pipelineOnStart { configuration.pipeline_on_start = pipelineOnStart }
        if let eventLoops { configuration.event_loops = eventLoops }
        if let maxMessageBytes { configuration.max_message_bytes = maxMessageBytes }
        if let drainTimeout { configuration.drain_timeout_seconds = drainTimeout }
        if let idleTimeout { configuration.idle_timeout_seconds = idleTimeout }
        if let logLevel { configuration.log_level = logLevel }
        try configuration.validate()
        return configuration
    }

    func run() throws {
        let configuration: DaemonConfiguration
        do {
            configuration = try self.configuration()
        } catch {
            throw ValidationError("\(error)")
        }
        let level = Logger.Level(rawValue: configuration.log_level) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "curecd")

        var options = DaemonOptions()
        options.configuration = configuration
        options.portFile = portFile
        options.executableDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent().path

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
