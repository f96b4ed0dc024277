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
            Serves gRPC over HTTP/2: cleartext (h2c, prior knowledge) on loopback, or TLS with \
            bearer tokens (docs/security.md). SIGTERM or SIGINT drains and shuts down: health turns \
            NOT_SERVING, new calls are refused, calls in flight get --drain-timeout seconds to \
            finish, a running job checkpoints and is released to the queue (another daemon on the \
            same job store resumes it), and the process exits 0. SIGHUP reloads the bearer tokens from the configuration.

            Settings (each also a YAML key and a CUREC_* environment variable; flags win \
            over the environment, which wins over the file; see docs/configuration.md):

            """ + SettingFlags.help)

    @Option(name: .long, help: "YAML configuration file (see docs/configuration.md). Also CUREC_CONFIG.")
    var config: String?

    @Option(name: .long, help: "Write the bound port to this file once listening (useful with port 0).")
    var portFile: String?

    @Flag(name: .long, help: "Load no plugins at start (serve RPC infrastructure only); also sets pipeline_on_start to off.")
    var noPlugins = false

    /// Defaults, then the file, then the environment, then the settings' flags, checked once.
    func configuration(settingFlags: [String: [String]]) throws(ConfigurationError) -> DaemonConfiguration {
        let environment = ProcessInfo.processInfo.environment
        var configuration = try DaemonConfiguration.resolve(
            file: config ?? environment["CUREC_CONFIG"], environment: environment, flags: settingFlags)
        if noPlugins {
            configuration.plugins = []
            configuration.pipeline_on_start = "off"
        }
        return configuration
    }

    func run() throws {
        let configuration: DaemonConfiguration
        do {
            configuration = try self.configuration(settingFlags: SettingFlags.split(Self.arguments).flags)
        } catch {
            throw ValidationError("\(error)")
        }
        let level = configuration.resolvedLogLevel ?? .info
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
        signal(SIGHUP, SIG_IGN)
        let settingFlags = try SettingFlags.split(Self.arguments).flags
        let reload = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        reload.setEventHandler {
            do {
                try daemon.reloadTokens(from: try self.configuration(settingFlags: settingFlags))
            } catch {
                logger.error("SIGHUP: the configuration was not reloaded; the tokens in effect stay", metadata: ["error": "\(error)"])
            }
        }
        reload.resume()
        signalSources.append(reload)
        let port = try daemon.start()
        logger.info("curecd ready", metadata: ["port": "\(port)"])
        let jobsStopped = daemon.waitUntilStopped()
        withExtendedLifetime(signalSources) {}
        if !jobsStopped {
            // The job resumes on the next start; exit handlers would wait on its threads.
            logger.warning("a job did not stop in time; exiting without waiting for it")
            _exit(0)
        }
        logger.info("curecd stopped")
    }
}

extension CURecDaemonCommand {
    /// The command line without the program name.
    static var arguments: [String] { Array(CommandLine.arguments.dropFirst()) }
}

// The settings' flags come from DaemonConfiguration.settings; the parser sees the rest.
do {
    CURecDaemonCommand.main(try SettingFlags.split(CURecDaemonCommand.arguments).remaining)
} catch {
    CURecDaemonCommand.exit(withError: ValidationError("\(error)"))
}
