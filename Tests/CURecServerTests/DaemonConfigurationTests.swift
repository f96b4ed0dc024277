import Foundation
import Testing
import CURecJobs
import Yams
@testable import CURecServer

@Suite struct DaemonConfigurationTests {
    /// A YAML file with `text`, removed when the test ends.
    final class ConfigFile {
        let path: String
        init(_ text: String) throws {
            path = FileManager.default.temporaryDirectory.appendingPathComponent("curecd-\(UUID().uuidString).yaml").path
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
        deinit { try? FileManager.default.removeItem(atPath: path) }
    }

    /// The configuration from a command line of setting flags.
    func resolve(file: String? = nil, environment: [String: String] = [:], arguments: [String] = []) throws(ConfigurationError) -> DaemonConfiguration {
        try DaemonConfiguration.resolve(file: file, environment: environment, flags: SettingFlags.split(arguments).flags)
    }

    /// The message of the error resolving throws.
    func failure(file: String? = nil, environment: [String: String] = [:], arguments: [String] = []) -> String {
        do {
            _ = try resolve(file: file, environment: environment, arguments: arguments)
            return "no error"
        } catch {
            return error.description
        }
    }

    @Test func everyPropertyIsOneSettingAndEverySettingOneProperty() {
        let properties = Mirror(reflecting: DaemonConfiguration()).children.compactMap(\.label).filter { $0 != "sources" }
        #expect(Set(properties) == Set(DaemonConfiguration.settings.map(\.key)))
        #expect(properties.count == DaemonConfiguration.settings.count)
        let flags = DaemonConfiguration.settings.compactMap(\.flag)
        #expect(Set(flags).count == flags.count)
    }

    @Test func defaultsNeedNoSource() throws {
        let configuration = try resolve()
        #expect(configuration.listen == "127.0.0.1:50051")
        #expect(configuration.data_dir == "var" && configuration.dataset_dir == "var/data/ml-100k")
        #expect(configuration.max_message_bytes == 4_194_304 && configuration.dataset_upload_max_bytes == 67_108_864)
        #expect(configuration.drain_timeout_seconds == 10 && configuration.idle_timeout_seconds == 300)
        #expect(configuration.log_level == "info" && configuration.resolvedLogLevel == .info)
        #expect(configuration.job_workers == 1 && configuration.job_queue_capacity == 32)
        #expect(configuration.plugins.map(\.name) == ["bpr", "popularity", "reward"])
        #expect(configuration.pipeline_on_start == "quick" && configuration.lm_weights == "quantized")
        #expect(configuration.resolvedMiniLMDirectory == "var/models/all-MiniLM-L6-v2")
        #expect(configuration.sources.isEmpty)
    }

    @Test func theFileSetsWhatItNames() throws {
        let file = try ConfigFile("""
            listen: 0.0.0.0:7000
            insecure: true
            job_queue_capacity: 2
            drain_timeout_seconds: 2.5
            enable_interop_testing: true
            plugin_dirs: [a, b]
            plugins:
              - {name: bpr, library: CURecBPR, config: '{"factors": 8}'}
            """)
        let configuration = try resolve(file: file.path)
        #expect(configuration.listen == "0.0.0.0:7000" && configuration.job_queue_capacity == 2)
        #expect(configuration.drain_timeout_seconds == 2.5 && configuration.enable_interop_testing)
        #expect(configuration.plugin_dirs == ["a", "b"])
        #expect(configuration.plugins == [PluginSpec(name: "bpr", library: "CURecBPR", config: #"{"factors": 8}"#, trainOnStart: true).withoutTrainFlag])
        #expect(configuration.sources["listen"] == .file(file.path))
        #expect(configuration.idle_timeout_seconds == 300 && configuration.sources["idle_timeout_seconds"] == nil)
    }

    @Test func theEnvironmentSetsEveryTextSetting() throws {
        let configuration = try resolve(environment: [
            "CUREC_LISTEN": "127.0.0.1:0", "CUREC_PLUGIN_DIRS": "/x:/y", "CUREC_JOB_WORKERS": "2",
            "CUREC_ENABLE_INTEROP_TESTING": "true", "CUREC_IDLE_TIMEOUT_SECONDS": "1.5", "CUREC_ADDRESS": "not a setting",
        ])
        #expect(configuration.listen == "127.0.0.1:0" && configuration.plugin_dirs == ["/x", "/y"])
        #expect(configuration.job_workers == 2 && configuration.enable_interop_testing)
        #expect(configuration.idle_timeout_seconds == 1.5)
        #expect(configuration.sources["job_workers"] == .environment("CUREC_JOB_WORKERS"))
        for setting in DaemonConfiguration.settings where setting.flag != nil {
            #expect(setting.environmentVariable == "CUREC_" + setting.key.uppercased())
        }
    }

    @Test func flagsArePickedOutOfTheCommandLine() throws {
        let split = try SettingFlags.split([
            "--listen", "127.0.0.1:0", "--port-file", "p", "--plugin-dir", "a", "--plugin-dir=b",
            "--enable-interop-testing", "--no-plugins", "--drain-timeout=3", "--config", "c.yaml",
        ])
        #expect(split.remaining == ["--port-file", "p", "--no-plugins", "--config", "c.yaml"])
        #expect(split.flags["--listen"] == ["127.0.0.1:0"] && split.flags["--plugin-dir"] == ["a", "b"])
        var configuration = DaemonConfiguration()
        try configuration.applyFlags(split.flags)
        #expect(configuration.enable_interop_testing && configuration.drain_timeout_seconds == 3)
        #expect(configuration.plugin_dirs == ["a", "b"])
        #expect(throws: ConfigurationError.self) { try SettingFlags.split(["--listen"]) }
        // The flags every earlier release had keep their names.
        let flags = Set(DaemonConfiguration.settings.compactMap(\.flag))
        for flag in ["--listen", "--data-dir", "--dataset-dir", "--dataset-name", "--plugin-dir", "--enable-interop-testing",
                     "--event-loops", "--max-message-bytes", "--drain-timeout", "--idle-timeout", "--minilm-dir",
                     "--lm-path", "--lm-weights", "--pipeline-on-start", "--log-level"] {
            #expect(flags.contains(flag), "\(flag)")
        }
    }

    @Test func flagsWinOverTheEnvironmentWhichWinsOverTheFile() throws {
        let file = try ConfigFile("listen: 127.0.0.1:1\nlog_level: debug\nevent_loops: 3\nplugin_dirs: [f]\n")
        let environment = ["CUREC_LISTEN": "127.0.0.1:2", "CUREC_LOG_LEVEL": "error", "CUREC_PLUGIN_DIRS": "e"]
        let configuration = try resolve(file: file.path, environment: environment,
                                        arguments: ["--listen", "127.0.0.1:3", "--plugin-dir", "g"])
        #expect(configuration.listen == "127.0.0.1:3")
        #expect(configuration.log_level == "error")
        #expect(configuration.event_loops == 3)
        // The variable replaces the file's list; flags add to it.
        #expect(configuration.plugin_dirs == ["e", "g"])
        #expect(configuration.sources["listen"] == .flag("--listen"))
        #expect(configuration.sources["log_level"] == .environment("CUREC_LOG_LEVEL"))
        #expect(configuration.sources["event_loops"] == .file(file.path))
    }

    @Test func aBadLogLevelIsAnErrorFromEverySource() throws {
        let levels = "log_level must be one of trace, debug, info, notice, warning, error, critical, not 'loud'"
        let file = try ConfigFile("log_level: loud\n")
        #expect(failure(file: file.path) == "invalid configuration: \(levels) (from config file \(file.path))")
        #expect(failure(environment: ["CUREC_LOG_LEVEL": "loud"])
                == "invalid configuration: \(levels) (from environment variable CUREC_LOG_LEVEL)")
        #expect(failure(arguments: ["--log-level", "loud"]) == "invalid configuration: \(levels) (from flag --log-level)")
        // A good value from a higher source wins over a bad one below it.
        #expect(try resolve(file: file.path, arguments: ["--log-level=debug"]).resolvedLogLevel == .debug)
    }

    /// One value breaking each rule, given as a flag.
    static let badValues: [String: String] = [
        "listen": "nowhere", "default_recommender": "", "default_reward_model": "", "max_message_bytes": "0",
        "drain_timeout_seconds": "-1", "idle_timeout_seconds": "0", "event_loops": "-1", "log_level": "loud",
        "job_workers": "0", "job_queue_capacity": "0", "lm_weights": "int8", "dataset_upload_max_bytes": "0",
        "pipeline_on_start": "always", "pair_reason_cache_size": "0", "job_retention_days": "-1", "job_crash_limit": "0",
        "job_store": "mysql", "job_lease_seconds": "0.5",
        "tls_handshake_timeout_seconds": "0", "metrics_listen": "nowhere",
        "max_concurrent_streams": "0", "max_connection_buffer_bytes": "1024", "max_connections": "0",
        "max_connections_per_peer": "0", "header_read_timeout_seconds": "0", "body_read_timeout_seconds": "-1",
        "send_timeout_seconds": "0", "default_deadline_seconds": "-1", "keepalive_interval_seconds": "-1",
        "keepalive_timeout_seconds": "0", "max_connection_age_seconds": "-1", "max_connection_age_grace_seconds": "-1",
        "accept_backoff_seconds": "0", "h2_reset_burst": "0", "h2_reset_rate": "0", "h2_max_continuations": "0",
        "h2_max_settings_entries": "2", "generation_workers": "0", "generation_queue_limit": "-1",
    ]

    @Test func everyRuleIsCheckedAndNamed() throws {
        let ruled = DaemonConfiguration.settings.filter { $0.requirement != nil }
        #expect(Set(ruled.map(\.key)) == Set(Self.badValues.keys), "give every rule a bad value here")
        for setting in ruled {
            let flag = try #require(setting.flag)
            let bad = try #require(Self.badValues[setting.key])
            let message = failure(arguments: ["\(flag)=\(bad)"])
            #expect(message.hasPrefix("invalid configuration: \(setting.key) must \(setting.requirement ?? "")"), "\(message)")
            #expect(message.hasSuffix("(from flag \(flag))"), "\(message)")
            // The same value from the file and the environment is refused the same way.
            let yamlValue = bad.isEmpty ? "''" : bad
            let file = try ConfigFile("\(setting.key): \(yamlValue)\n")
            #expect(failure(file: file.path).hasPrefix("invalid configuration: \(setting.key) must \(setting.requirement ?? "")"))
            if let variable = setting.environmentVariable, !bad.isEmpty {
                #expect(failure(environment: [variable: bad]).hasSuffix("(from environment variable \(variable))"))
            }
        }
    }

    @Test func valuesOfTheWrongTypeNameTheSetting() throws {
        let file = try ConfigFile("max_message_bytes: lots\n")
        #expect(failure(file: file.path) == "invalid configuration: max_message_bytes must be an integer (in config file \(file.path))")
        #expect(failure(environment: ["CUREC_MAX_MESSAGE_BYTES": "lots"])
                == "invalid configuration: max_message_bytes must be an integer, not 'lots' (from environment variable CUREC_MAX_MESSAGE_BYTES)")
        #expect(failure(arguments: ["--idle-timeout", "soon"])
                == "invalid configuration: idle_timeout_seconds must be a number, not 'soon' (from flag --idle-timeout)")
        #expect(failure(environment: ["CUREC_ENABLE_INTEROP_TESTING": "perhaps"]).contains("must be a boolean"))
    }

    @Test func unknownKeysAndBadPluginsAreErrors() throws {
        let typo = try ConfigFile("listne: 127.0.0.1:1\n")
        let message = failure(file: typo.path)
        #expect(message.hasPrefix("invalid configuration: unknown key 'listne' (known: "))
        #expect(message.contains("listen") && message.hasSuffix("(in config file \(typo.path))"))
        let twice = try ConfigFile("plugins:\n  - {name: a, library: CURecBPR}\n  - {name: a, library: CURecBPR}\n")
        #expect(failure(file: twice.path) == "invalid configuration: plugin name 'a' is used twice")
        let base64 = try ConfigFile("plugins:\n  - {name: a, library: CURecBPR, config_base64: '***'}\n")
        #expect(failure(file: base64.path).contains("config_base64 is not valid base64"))
        let path = try ConfigFile("plugins:\n  - {name: a, library: /tmp/libevil.so}\n")
        #expect(failure(file: path.path).contains("must be a file name in the plugin directories"))
        let escaping = try ConfigFile("plugins:\n  - {name: ../a, library: CURecBPR}\n")
        #expect(failure(file: escaping.path).contains("plugin name '../a' must be 1 to 64 letters"))
        #expect(throws: ConfigurationError.self) { try DaemonConfiguration.load(file: "/nonexistent/curecd.yaml") }
    }

    @Test func theJobStoreSettingsGoTogetherAndTheURLNeverHoldsAPassword() throws {
        #expect(failure(arguments: ["--job-store=postgres"]).contains("job_store: postgres needs job_store_url"))
        #expect(failure(arguments: ["--job-store-url=postgres://u@h/d"]).contains("set job_store: postgres to use it"))
        let withPassword = failure(arguments: ["--job-store=postgres", "--job-store-url=postgres://u:hunter2@h/d"])
        #expect(withPassword.contains("must not hold a password") && !withPassword.contains("hunter2"))
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("curec-pw-\(UUID().uuidString)").path
        try "secret\nignored\n".write(toFile: directory, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let configuration = try resolve(arguments: [
            "--job-store=postgres", "--job-store-url=postgres://curec@db:6000/jobs", "--job-store-password-file=\(directory)"])
        let settings = try #require(try configuration.jobStoreSettings(readingPassword: true))
        #expect(settings.password == "secret" && settings.port == 6000 && settings.redacted == "postgres://curec@db:6000/jobs")
        #expect(try DaemonConfiguration().jobStoreSettings(readingPassword: true) == nil)
    }

    @Test func aConfigurationEncodesToYAMLThatReadsBackTheSame() throws {
        var configuration = DaemonConfiguration()
        configuration.listen = "[::1]:9"
        configuration.plugin_dirs = ["p"]
        configuration.idle_timeout_seconds = 0.5
        configuration.plugins = [PluginSpec(name: "x", library: "CURecBPR", config: "{}")]
        let text = try YAMLEncoder().encode(configuration)
        let file = try ConfigFile(text)
        let read = try DaemonConfiguration.load(file: file.path)
        #expect(read.listen == "[::1]:9" && read.plugin_dirs == ["p"] && read.idle_timeout_seconds == 0.5)
        #expect(read.plugins == configuration.plugins)
        #expect(try YAMLEncoder().encode(read) == text)
    }
}

extension PluginSpec {
    /// The spec as a YAML entry without `train_on_start` reads.
    var withoutTrainFlag: PluginSpec {
        var copy = self
        copy.train_on_start = nil
        return copy
    }
}
