import ArgumentParser
import CURecProto
import CURecRPC
import CURecRPCProtos
import Foundation
import SwiftProtobuf

#if canImport(Glibc)
import Glibc
#endif

/// `curec`: the operator's command line for a running curecd.
struct CURecCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "curec",
        abstract: "Talk to a running curecd: health, plugins, jobs, models, the pipeline report, recommendations, "
            + "text generation and fine-tuning datasets.",
        discussion: """
            The daemon address comes from --address or CUREC_ADDRESS (default 127.0.0.1:50051; \
            unix:/path for the admin socket). TLS: --tls-ca (or CUREC_TLS_CA) names the CA that \
            signed the daemon's certificate, --tls-cert/--tls-key a client certificate; a bearer \
            token is read from --token-file or CUREC_TOKEN. See docs/security.md.
            """,
        subcommands: [Health.self, Plugins.self, Jobs.self, Models.self, Report.self, Recommend.self, Score.self,
                      ScoreReason.self, Embed.self, Generate.self, Datasets.self, Token.self])
}

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "Daemon address HOST:PORT (default: CUREC_ADDRESS or 127.0.0.1:50051).")
    var address: String?

    @Flag(name: .long, help: "Print JSON (one object per line) instead of text.")
    var json = false

    @Option(name: .long, help: "Seconds to wait for an answer.")
    var timeout: Double = 30

    @Flag(name: .long, help: "Connect with TLS, trusting the system's CAs (implied by --tls-ca or CUREC_TLS_CA).")
    var tls = false

    @Option(name: .customLong("tls-ca"), help: "PEM CA file the daemon's certificate must chain to (default: CUREC_TLS_CA).")
    var tlsCA: String?

    @Option(name: .customLong("tls-cert"), help: "PEM client certificate, for a daemon that requires mutual TLS (default: CUREC_TLS_CERT).")
    var tlsCertificate: String?

    @Option(name: .customLong("tls-key"), help: "PEM key of --tls-cert (default: CUREC_TLS_KEY).")
    var tlsKey: String?

    @Option(name: .customLong("tls-server-name"), help: "Name the daemon's certificate must carry (default: the address's host).")
    var tlsServerName: String?

    @Option(name: .customLong("token-file"), help: "File holding the bearer token (default: the CUREC_TOKEN variable).")
    var tokenFile: String?

    func client() throws -> RPCClient {
        let environment = ProcessInfo.processInfo.environment
        let target = address ?? environment["CUREC_ADDRESS"] ?? "127.0.0.1:50051"
        let caFile = tlsCA ?? environment["CUREC_TLS_CA"]
        let certificate = tlsCertificate ?? environment["CUREC_TLS_CERT"]
        var settings: TLSClientSettings? = nil
        if tls || caFile != nil || certificate != nil {
            settings = TLSClientSettings(caFile: caFile, certificateFile: certificate,
                                         privateKeyFile: tlsKey ?? environment["CUREC_TLS_KEY"], serverName: tlsServerName)
        }
        var token = environment["CUREC_TOKEN"]
        if let tokenFile {
            guard let text = try? String(contentsOfFile: tokenFile, encoding: .utf8) else {
                throw ValidationError("cannot read the token file \(tokenFile)")
            }
            token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let bearer = token.flatMap { $0.isEmpty ? nil : $0 }
        return try CURec.run { try RPCClient(address: target, tls: settings, bearerToken: bearer) }
    }
}

func printJSON(_ message: some SwiftProtobuf.Message) {
    var options = JSONEncodingOptions()
    options.preserveProtoFieldNames = true
    print((try? message.jsonString(options: options)) ?? "{}")
}

struct Health: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check the daemon's health (grpc.health.v1).")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Service to check; empty means the whole daemon.") var service = ""

    func run() throws {
        let client = try global.client()
        let response: Grpc_Health_V1_HealthCheckResponse = try CURec.run {
            try Grpc_Health_V1_HealthClient(client).check(Grpc_Health_V1_HealthCheckRequest.with { $0.service = service },
                             timeout: global.timeout)
        }
        if global.json { printJSON(response) } else { print(response.status == .serving ? "SERVING" : "\(response.status)") }
    }
}

struct Plugins: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, load, unload and hot-reload plugins.", subcommands: [List.self, Load.self, Unload.self, Reload.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List plugin instances and available libraries.")
        @OptionGroup var global: GlobalOptions
        func run() throws {
            let client = try global.client()
            let response: Curec_V1_ListPluginsResponse = try CURec.run {
                try Curec_V1_PluginServiceClient(client).list(Curec_V1_ListPluginsRequest(), timeout: global.timeout)
            }
            if global.json { printJSON(response); return }
            print(pad("NAME", 16) + pad("PLUGIN", 24) + pad("KIND", 14) + pad("TRAINED", 9) + "GENERATION")
            for plugin in response.plugins {
                print(pad(plugin.name, 16) + pad("\(plugin.pluginName)@\(plugin.pluginVersion)", 24)
                      + pad(plugin.kind == .rewardModel ? "reward_model" : "recommender", 14)
                      + pad(plugin.trained ? "yes" : "no", 9) + "\(plugin.generation)")
            }
            if !response.availableLibraries.isEmpty {
                print("\navailable libraries:")
                for library in response.availableLibraries { print("  \(library)") }
            }
        }
    }

    struct Load: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Load a plugin library as a new instance.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Instance name.") var name: String
        @Argument(help: "Library file name in the daemon's plugin directories (e.g. CURecBPR or libCURecBPR.so; see `curec plugins list`).") var library: String
        @Option(help: "Plugin config text (e.g. JSON).") var config = ""
        @Flag(help: "Train it on the daemon's dataset unless saved state exists (as a train job this waits for).") var train = false
        @Flag(help: "Run it in its own supervised worker process (see docs/isolation.md).") var isolated = false
        @Option(help: "With --isolated: a call longer than this many milliseconds restarts the worker (default 10000).")
        var callTimeLimitMs: UInt32 = 0
        func run() throws {
            let client = try global.client()
            let status: Curec_V1_PluginStatus = try CURec.run {
                try Curec_V1_PluginServiceClient(client).load(Curec_V1_LoadPluginRequest.with {
                    $0.name = name
                    $0.library = library
                    $0.config = Data(config.utf8)
                    $0.train = train
                    if isolated { $0.isolation = .process }
                    $0.callTimeLimitMs = callTimeLimitMs
                }, timeout: max(global.timeout, 600))
            }
            if global.json {
                printJSON(status)
            } else {
                print("loaded \(status.name): \(status.pluginName)@\(status.pluginVersion), trained: \(status.trained)"
                      + (status.isolation == .process ? ", isolated" : "")
                      + (status.jobID.isEmpty ? "" : " (by job \(status.jobID))"))
            }
        }
    }

    struct Unload: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Unload a plugin instance.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Instance name.") var name: String
        func run() throws {
            let client = try global.client()
            let _: Curec_V1_UnloadPluginResponse = try CURec.run {
                try Curec_V1_PluginServiceClient(client).unload(Curec_V1_UnloadPluginRequest.with { $0.name = name },
                                 timeout: global.timeout)
            }
            if !global.json { print("unloaded \(name)") }
        }
    }

    struct Reload: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Hot-reload a plugin instance (same or new library/config).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Instance name.") var name: String
        @Option(help: "New library file name in the plugin directories (default: the same one, re-read).") var library = ""
        @Option(help: "New config text (default: the same config).") var config: String?
        func run() throws {
            let client = try global.client()
            let status: Curec_V1_PluginStatus = try CURec.run {
                try Curec_V1_PluginServiceClient(client).reload(Curec_V1_ReloadPluginRequest.with {
                    $0.name = name
                    $0.library = library
                    if let config { $0.config = Data(config.utf8) }
                }, timeout: max(global.timeout, 600))
            }
            if global.json { printJSON(status) } else { print("reloaded \(status.name): \(status.pluginName)@\(status.pluginVersion) generation \(status.generation)") }
        }
    }
}

struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List saved models and their versions.")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        let client = try global.client()
        let response: Curec_V1_ListModelsResponse = try CURec.run {
            try Curec_V1_ModelServiceClient(client).list(Curec_V1_ListModelsRequest(), timeout: global.timeout)
        }
        if global.json { printJSON(response); return }
        for model in response.models {
            print("\(model.name): " + model.versions.map { "\($0.version) (\($0.metadata["plugin"] ?? "?"), \($0.metadata["created"] ?? ""))" }
                .joined(separator: ", "))
        }
    }
}

struct Recommend: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Top-k items for a user, optionally with a reason for each.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "User id of the dataset (e.g. 196).") var user: String
    @Option(help: "How many items.") var k: Int32 = 10
    @Option(help: "Recommender instance (default: the daemon's default).") var plugin = ""
    @Flag(help: "Include items the user has already seen.") var includeSeen = false
    @Flag(help: "Also give a reason for each item (see --reason-source).") var reasons = false
    @Option(help: ArgumentHelp(
        "Where reasons come from (default: auto); implies --reasons.",
        discussion: "auto: the pipeline's corrected reason table when one exists, else written by the language model; "
            + "table: only the table (FAILED_PRECONDITION before a pipeline has made one); generate: always the language model; "
            + "pair: why this user gets this item, from the tuned chat model (cached per user, item and model version)."))
    var reasonSource: ReasonSourceArgument?
    @Option(help: "Language model for generated reasons (generate: default lm if one exists, else as pair; pair: default the newest tuned model, else smollm2).")
    var reasonModel = ""
    func run() throws {
        let reasons = reasons || reasonSource != nil
        let client = try global.client()
        let response: Curec_V1_RecommendResponse = try CURec.run {
            try Curec_V1_RecommendServiceClient(client).recommend(Curec_V1_RecommendRequest.with {
                $0.userID = user
                $0.k = k
                $0.plugin = plugin
                $0.excludeSeen = !includeSeen
                $0.withReasons = reasons
                $0.reasonModel = reasonModel
                $0.reasonSource = (reasonSource ?? .auto).proto
            }, timeout: reasons ? max(global.timeout, 300) : global.timeout)
        }
        if global.json { printJSON(response); return }
        let writer = response.reasonModelVersion.isEmpty ? "" : ", reasons by \(response.reasonModelVersion)"
        print("top \(response.items.count) for user \(user) (\(response.servedBy)\(writer)):")
        for (rank, item) in response.items.enumerated() {
            print(String(format: "%3d. %@  %@  %.4f", rank + 1, pad(item.itemID, 6), pad(item.title, 48), item.score))
            guard !item.reason.isEmpty else { continue }
            let source: String
            switch item.reasonSource {
            case "table": source = String(format: " [table, reward %.3f]", item.reasonReward)
            case "": source = ""
            default: source = " [\(item.reasonSource)]"
            }
            print("     why\(source): \(item.reason.replacingOccurrences(of: "\n", with: " "))")
        }
    }
}

/// `--reason-source` values.
enum ReasonSourceArgument: String, ExpressibleByArgument, CaseIterable {
    case auto, table, generate, pair

    var proto: Curec_V1_ReasonSource {
        switch self {
        case .auto: return .auto
        case .table: return .table
        case .generate: return .generate
        case .pair: return .pair
        }
    }
}

struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Score items for a user.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "User id.") var user: String
    @Argument(help: "Item ids.") var items: [String]
    @Option(help: "Recommender instance.") var plugin = ""
    func run() throws {
        let client = try global.client()
        let response: Curec_V1_ScoreResponse = try CURec.run {
            try Curec_V1_RecommendServiceClient(client).score(Curec_V1_ScoreRequest.with {
                $0.userID = user
                $0.itemIds = items
                $0.plugin = plugin
            }, timeout: global.timeout)
        }
        if global.json { printJSON(response); return }
        for (item, score) in zip(items, response.scores) { print("\(pad(item, 8)) \(String(format: "%.5f", score))") }
    }
}

func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
}

/// Runs an RPC, turning its error into the CLI's: the server's status and message, exit 1.
/// (A namespace, so commands can call it beside their own `run()`.)
enum CURec {
    static func run<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as RPCError {
            FileHandle.standardError.write(Data("error: \(error.status.code): \(error.status.message)\n".utf8))
            throw ExitCode(1)
        }
    }
}

CURecCommand.main()
