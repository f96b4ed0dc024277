import CURecJobs
import CURecModels
import CURecPluginHost
import CURecProto
import CURecRPC
import Foundation
import Logging
import Yams

/// One plugin instance the daemon loads at start.
public struct PluginSpec: Sendable, Codable, Hashable {
    /// Instance name, unique in the daemon (used in RPCs).
    public var name: String
    /// Library file name in the plugin directories (`CURecBPR` finds `libCURecBPR.so`), never a path.
    public var library: String
    /// Plugin config as text (JSON for the bundled Swift plugins).
    public var config: String?
    /// Plugin config as base64 bytes (e.g. a serialized protobuf message for C plugins).
    public var config_base64: String?
    /// Train on the dataset at start when no saved artifact exists (default true).
    public var train_on_start: Bool?
    /// `in_process` (default) or `process`: run the instance in its own supervised worker.
    public var isolation: String?
    /// `process` only: a call longer than this kills and restarts the worker (default 10000).
    public var call_time_limit_ms: Int?
    /// `process` only: the worker's address-space limit (RLIMIT_AS) in MiB (default none).
    public var memory_limit_mb: Int?
    /// `process` only: the worker's CPU-time limit (RLIMIT_CPU) in seconds (default none).
    public var cpu_limit_seconds: Int?
    /// Queue concurrent scoring requests and run them as batches (a plugin with a batched
    /// entry point only): `max_queue_delay_microseconds`, `preferred_batch_size`,
    /// `max_batch_size`, `max_queue_size` (docs/batching.md). Absent: no batching.
    public var dynamic_batching: DynamicBatchingConfiguration?

    public init(name: String, library: String, config: String? = nil, trainOnStart: Bool = true) {
        self.name = name
        self.library = library
        self.config = config
        self.train_on_start = trainOnStart
    }

    /// The config bytes handed to `curec_plugin_create`.
    public func configBytes() throws(ConfigurationError) -> [UInt8] {
        if let encoded = config_base64 {
            guard let data = Data(base64Encoded: encoded) else {
                throw .invalid("plugins[\(name)].config_base64 is not valid base64")
            }
            return [UInt8](data)
        }
        return Array((config ?? "").utf8)
    }

    /// Where the instance runs, with its worker's limits.
    public func pluginIsolation() throws(ConfigurationError) -> PluginIsolation {
        switch isolation ?? "in_process" {
        case "in_process":
            guard call_time_limit_ms == nil, memory_limit_mb == nil, cpu_limit_seconds == nil else {
                throw .invalid("plugins[\(name)]: call_time_limit_ms, memory_limit_mb and cpu_limit_seconds need isolation: process")
            }
            return .inProcess
        case "process":
            var limits = WorkerLimits()
            if let milliseconds = call_time_limit_ms {
                guard (1...3_600_000).contains(milliseconds) else {
                    throw .invalid("plugins[\(name)].call_time_limit_ms must be 1 to 3600000")
                }
                limits.callTimeLimit = .milliseconds(milliseconds)
            }
            if let megabytes = memory_limit_mb {
                guard (64...(1 << 22)).contains(megabytes) else {
                    throw .invalid("plugins[\(name)].memory_limit_mb must be 64 to 4194304")
                }
                limits.memoryBytes = UInt64(megabytes) << 20
            }
            if let seconds = cpu_limit_seconds {
                guard seconds >= 1 else { throw .invalid("plugins[\(name)].cpu_limit_seconds must be at least 1") }
                limits.cpuSeconds = UInt64(seconds)
            }
            return .process(limits)
        case let other:
            throw .invalid("plugins[\(name)].isolation '\(other.prefix(32))' must be in_process or process")
        }
    }
}

/// Why the configuration is unusable.
public enum ConfigurationError: Error, CustomStringConvertible, Sendable, Equatable {
    case unreadable(String, String)
    case invalid(String)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason): return "cannot read config file \(path): \(reason)"
        case .invalid(let reason): return "invalid configuration: \(reason)"
        }
    }
}

/// Everything the daemon is configured with. Sources, lowest precedence first: built-in
/// defaults, a YAML file (`--config` or `CUREC_CONFIG`), `CUREC_*` environment variables,
/// command-line flags (``resolve(file:environment:flags:)``).
///
/// Each setting is a property here (with its default) and one row of ``settings``, from which
/// the YAML keys, environment variables, flags, the checks and the table in
/// docs/configuration.md all come; a test keeps the three in step.
public struct DaemonConfiguration: Sendable, Codable {
    /// `HOST:PORT` to serve on.
    public var listen: String = "127.0.0.1:50051"
    /// Root of the daemon's files: `models/`, the plugin cache.
    public var data_dir: String = "var"
    /// Directory with the dataset's atomic files.
    public var dataset_dir: String = "var/data/ml-100k"
    /// Dataset name (file prefix).
    public var dataset_name: String = "ml-100k"
    /// Extra plugin directories, searched after the directory of the curecd executable (where
    /// the bundled plugins are built and installed) and `<data_dir>/plugins`. Libraries load
    /// only from these directories, named by plain file name.
    public var plugin_dirs: [String] = []
    /// Plugin instances loaded at start.
    public var plugins: [PluginSpec] = DaemonConfiguration.defaultPlugins
    /// Recommender used when a request names none.
    public var default_recommender: String = "bpr"
    /// Reward model used when a request names none.
    public var default_reward_model: String = "reward"
    /// Largest request message, bytes.
    public var max_message_bytes: Int = 4 * 1024 * 1024
    /// Seconds calls in flight may take during graceful shutdown (SIGTERM), and the most a
    /// running job gets to checkpoint and be released to the queue.
    public var drain_timeout_seconds: Double = 10
    /// Seconds before an idle connection is closed.
    public var idle_timeout_seconds: Double = 300
    /// I/O threads; 0 means one per core.
    public var event_loops: Int = 0
    // Budgets and timeouts of the RPC layer (see docs/security.md, "Budgets and timeouts").
    /// HTTP/2 concurrent streams per connection (reset streams count until their handler returns).
    public var max_concurrent_streams: Int = 100
    /// Request bytes one connection may hold before its flow-control window stops being credited.
    public var max_connection_buffer_bytes: Int = 8 * 1024 * 1024
    /// Open connections in all.
    public var max_connections: Int = 10_000
    /// Open connections per peer address.
    public var max_connections_per_peer: Int = 256
    /// Seconds a connection has for its preface, and a stream for its request headers.
    public var header_read_timeout_seconds: Double = 20
    /// Seconds a unary-request call may go without request data before it is ended.
    public var body_read_timeout_seconds: Double = 60
    /// Seconds a response may wait on a peer that reads nothing before the stream is reset.
    public var send_timeout_seconds: Double = 60
    /// Deadline of calls that send no grpc-timeout, seconds; 0: none.
    public var default_deadline_seconds: Double = 600
    /// Seconds of silence before a keepalive PING; 0: no keepalive.
    public var keepalive_interval_seconds: Double = 120
    /// Seconds a keepalive PING may go unanswered before the connection is closed.
    public var keepalive_timeout_seconds: Double = 20
    /// Seconds after which a connection gets GOAWAY (±10 %); 0: no limit.
    public var max_connection_age_seconds: Double = 7200
    /// Seconds calls get after the age GOAWAY before the connection is closed.
    public var max_connection_age_grace_seconds: Double = 300
    /// First pause of accept after EMFILE/ENFILE, seconds (doubles up to 1 s).
    public var accept_backoff_seconds: Double = 0.1
    /// nghttp2: RST_STREAM frames a peer may send in a burst, and per second after it.
    public var h2_reset_burst: Int = 1000
    public var h2_reset_rate: Int = 33
    /// nghttp2: CONTINUATION frames after one HEADERS frame.
    public var h2_max_continuations: Int = 8
    /// nghttp2: entries in one SETTINGS frame.
    public var h2_max_settings_entries: Int = 32
    /// Generations (token streams, pair reasons, reasons for recommendations) running at once.
    public var generation_workers: Int = 2
    /// Generations waiting for a worker; one more is refused with RESOURCE_EXHAUSTED.
    public var generation_queue_limit: Int = 16
    /// Log level (a `Logger.Level` name).
    public var log_level: String = "info"
    /// Serve grpc.testing.TestService.
    public var enable_interop_testing: Bool = false
    /// Jobs running at once (training uses every core).
    public var job_workers: Int = 1
    /// Jobs allowed to wait in the queue; more are refused with RESOURCE_EXHAUSTED.
    public var job_queue_capacity: Int = 32
    /// Days a finished job (record, events, checkpoints) is kept; 0 keeps them forever.
    public var job_retention_days: Int = 30
    /// A job the daemon died under this many times is failed instead of run again.
    public var job_crash_limit: Int = 3
    /// Where jobs are kept: `sqlite` (`<data_dir>/jobs.sqlite`, one daemon) or `postgres`
    /// (`job_store_url`, shared by every daemon configured with it).
    public var job_store: String = "sqlite"
    /// The PostgreSQL job store, `postgres://USER@HOST[:PORT]/DATABASE` (no password).
    public var job_store_url: String = ""
    /// File holding the PostgreSQL password (first line); empty: none.
    public var job_store_password_file: String = ""
    /// Seconds a daemon's claim on a running job lasts without renewal (renewed every third).
    public var job_lease_seconds: Double = 30
    /// Directory of the all-MiniLM-L6-v2 sentence encoder; empty: ``resolvedMiniLMDirectory``.
    public var minilm_dir: String = ""
    /// Pipeline profile submitted on the first start: `quick`, `standard` or `off`.
    public var pipeline_on_start: String = "quick"
    /// The pretrained chat model (a GGUF file); empty: ``resolvedLMPath``.
    public var lm_path: String = ""
    /// How the chat models keep their weight matrices: `quantized` or `float32`.
    public var lm_weights: String = "quantized"
    /// Largest dataset a client may upload through DatasetService.Upload, bytes.
    public var dataset_upload_max_bytes: Int = 64 * 1024 * 1024
    /// Pair reasons (`Recommend` with `REASON_SOURCE_PAIR`) kept in memory, per (user, item,
    /// model version); the least recently used are dropped.
    public var pair_reason_cache_size: Int = 4096
    /// PEM certificate chain the main listener presents; with `tls_key_file`, it speaks TLS only.
    public var tls_cert_file: String = ""
    /// PEM private key of `tls_cert_file`.
    public var tls_key_file: String = ""
    /// PEM CA file client certificates must chain to (mutual TLS); empty: no client certificates.
    public var tls_client_ca_file: String = ""
    /// Seconds a TLS handshake may take after accept before the connection is closed.
    public var tls_handshake_timeout_seconds: Double = 10
    /// Bearer tokens (hashed) and their scopes; non-empty: every call but health needs one.
    public var tokens: [TokenSpec] = []
    /// Health checks need a token too (when tokens are configured).
    public var health_requires_token: Bool = false
    /// UNIX socket serving administration (plugins, job submission, dataset upload); the main
    /// listener then refuses those methods. Empty: administration on the main listener.
    public var admin_socket: String = ""
    /// Allow listening on a non-loopback address without TLS and tokens.
    public var insecure: Bool = false
    /// `HOST:PORT` of the Prometheus metrics endpoint (plain HTTP, `GET /metrics`); empty: off.
    public var metrics_listen: String = ""

    /// Where each setting that is not at its default came from (for error messages).
    public internal(set) var sources: [String: SettingSource] = [:]

    /// Every setting, in the order of docs/configuration.md.
    public static let settings: [Setting] = [
        .text(\.listen, "listen",
              rule: SettingRule("be HOST:PORT or [IPv6]:PORT with a port from 0 to 65535") {
                  (try? RPCServerConfiguration.parseListenAddress($0)) != nil
              },
              "`HOST:PORT` or `[IPv6]:PORT`; port 0 picks a free one"),
        .text(\.data_dir, "data_dir", "models (`models/<name>/vN/`), datasets, jobs, plugin cache"),
        .text(\.dataset_dir, "dataset_dir", "RecBole atomic files"),
        .text(\.dataset_name, "dataset_name", "their file prefix"),
        .text(\.plugin_dirs, "plugin_dirs", flag: "plugin-dir",
              "searched after the executable's folder and `<data_dir>/plugins`, the only places libraries load from; the flag repeats and adds, the variable is `a:b`"),
        .structured(\.plugins, "plugins", typeName: "list of plugins", defaultText: "bpr, popularity, reward",
                    "instances loaded at start (see below); `--no-plugins` loads none"),
        .text(\.default_recommender, "default_recommender", rule: .nonEmpty, "used when a request names no plugin"),
        .text(\.default_reward_model, "default_reward_model", rule: .nonEmpty, "likewise for RewardService"),
        .text(\.max_message_bytes, "max_message_bytes", rule: .atLeast(1), "larger requests: RESOURCE_EXHAUSTED"),
        .text(\.drain_timeout_seconds, "drain_timeout_seconds", flag: "drain-timeout", rule: .atLeast(0),
              "graceful shutdown budget"),
        .text(\.idle_timeout_seconds, "idle_timeout_seconds", flag: "idle-timeout", rule: .above(0),
              "idle connections get GOAWAY"),
        .text(\.event_loops, "event_loops", defaultText: "0 (one per core)", rule: .atLeast(0),
              "I/O threads; 0 is one per core"),
        .text(\.max_concurrent_streams, "max_concurrent_streams", rule: .within(1...100_000),
              "HTTP/2 streams per connection; a reset stream counts until its handler returns (nghttpx and Envoy: 100, nginx: 128)"),
        .text(\.max_connection_buffer_bytes, "max_connection_buffer_bytes",
              rule: .atLeast(64 * 1024),
              "request bytes one connection may hold (partial messages, unread requests); above it the connection window is not credited, so at most one 16 MiB window more arrives (Envoy: 1 MiB per connection)"),
        .text(\.max_connections, "max_connections", rule: .atLeast(1), "open connections in all; more are closed on accept"),
        .text(\.max_connections_per_peer, "max_connections_per_peer", rule: .atLeast(1),
              "open connections per peer IP address, so one client cannot lock others out"),
        .text(\.header_read_timeout_seconds, "header_read_timeout_seconds", flag: "header-read-timeout", rule: .above(0),
              "a connection's preface and a stream's request headers must arrive within it (nginx `client_header_timeout`: 60 s)"),
        .text(\.body_read_timeout_seconds, "body_read_timeout_seconds", flag: "body-read-timeout", rule: .above(0),
              "a unary-request call with no request data for this long ends with CANCELLED (nginx `client_body_timeout`: 60 s)"),
        .text(\.send_timeout_seconds, "send_timeout_seconds", flag: "send-timeout", rule: .above(0),
              "a response the client reads nothing of (zero window, full socket) for this long: stream reset or connection closed (nginx `send_timeout`: 60 s)"),
        .text(\.default_deadline_seconds, "default_deadline_seconds", flag: "default-deadline", rule: .atLeast(0),
              "deadline of calls that send no `grpc-timeout` (not `JobService.Watch`); 0: none (Envoy route timeout: 15 s)"),
        .text(\.keepalive_interval_seconds, "keepalive_interval_seconds", flag: "keepalive-interval", rule: .atLeast(0),
              "a connection silent this long gets a PING; 0: no keepalive (grpc-go server: 2 h)"),
        .text(\.keepalive_timeout_seconds, "keepalive_timeout_seconds", flag: "keepalive-timeout", rule: .above(0),
              "an unanswered keepalive PING closes the connection after this (grpc-go: 20 s)"),
        .text(\.max_connection_age_seconds, "max_connection_age_seconds", flag: "max-connection-age", rule: .atLeast(0),
              "connections older than this (±10 %) get GOAWAY; 0: no limit (grpc-go `MaxConnectionAge`)"),
        .text(\.max_connection_age_grace_seconds, "max_connection_age_grace_seconds", flag: "max-connection-age-grace",
              rule: .atLeast(0), "calls in flight get this long after the age GOAWAY"),
        .text(\.accept_backoff_seconds, "accept_backoff_seconds", flag: "accept-backoff", rule: .above(0),
              "first pause of accept when the process is out of file descriptors (doubles up to 1 s; one log line per episode)"),
        .text(\.h2_reset_burst, "h2_reset_burst", rule: .atLeast(1),
              "RST_STREAM frames a peer may send at once before GOAWAY (nghttp2 rapid-reset guard; its default)"),
        .text(\.h2_reset_rate, "h2_reset_rate", rule: .atLeast(1), "RST_STREAM frames per second after the burst (nghttp2 default)"),
        .text(\.h2_max_continuations, "h2_max_continuations", rule: .within(1...1000),
              "CONTINUATION frames allowed after one HEADERS (nghttp2 default)"),
        .text(\.h2_max_settings_entries, "h2_max_settings_entries", rule: .within(8...1000),
              "entries allowed in one SETTINGS frame (nghttp2 default)"),
        .text(\.generation_workers, "generation_workers", rule: .within(1...64),
              "generations (`Generate`, `GenerateReason`, pair reasons, reasons for `Recommend`) running at once"),
        .text(\.generation_queue_limit, "generation_queue_limit", rule: .within(0...10_000),
              "generations waiting for a worker; one more is refused with RESOURCE_EXHAUSTED"),
        .text(\.log_level, "log_level", rule: .oneOf(Logger.Level.allCases.map(\.rawValue)), "least severe message logged"),
        .text(\.enable_interop_testing, "enable_interop_testing", "serve grpc.testing.TestService"),
        .text(\.job_workers, "job_workers", rule: .atLeast(1), "jobs running at once (training uses every core)"),
        .text(\.job_queue_capacity, "job_queue_capacity", rule: .atLeast(1),
              "jobs waiting in the queue; one more is refused with RESOURCE_EXHAUSTED"),
        .text(\.job_retention_days, "job_retention_days", rule: .atLeast(0),
              "days a finished job (its record, events and checkpoints) is kept; 0 keeps them"),
        .text(\.job_crash_limit, "job_crash_limit", rule: .within(1...100),
              "a job the daemon died under this many times is failed with that reason, not run again"),
        .text(\.job_store, "job_store", rule: .oneOf(["sqlite", "postgres"]),
              "where jobs are kept: `sqlite` (`<data_dir>/jobs.sqlite`, one daemon) or `postgres` (`job_store_url`, one queue shared by every daemon configured with it; docs/deploy.md)"),
        .text(\.job_store_url, "job_store_url", defaultText: "none",
              "with `job_store: postgres`, the database as `postgres://USER@HOST[:PORT]/DATABASE` (optional `?connect_timeout=SECONDS`); never a password"),
        .text(\.job_store_password_file, "job_store_password_file", defaultText: "none",
              "file whose first line is the PostgreSQL password (keep it mode 0600); empty: no password"),
        .text(\.job_lease_seconds, "job_lease_seconds", rule: .atLeast(1.0),
              "a daemon's claim on a running job lasts this long unless renewed (every third of it); a job whose daemon died is resumed by another after at most this"),
        .text(\.minilm_dir, "minilm_dir", defaultText: "`<data_dir>/models/all-MiniLM-L6-v2`",
              "the all-MiniLM-L6-v2 sentence encoder (`model.safetensors`, `vocab.txt`; `scripts/fetch-minilm` puts it there) the `pipeline` job embeds reasons with"),
        .text(\.lm_path, "lm_path", defaultText: "`<data_dir>/models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf`",
              "the pretrained chat model (GGUF; `scripts/fetch-lm` puts it there) that `GenerationService.Generate` serves as `smollm2` and `finetune` jobs start from"),
        .text(\.lm_weights, "lm_weights", rule: .oneOf(["quantized", "float32"]),
              "how the chat models keep their weight matrices: `quantized` (as stored in the GGUF file, ~150 MiB per loaded model, faster decoding) or `float32` (dequantized, ~650 MiB, the exact arithmetic of training); fully fine-tuned versions are always float32"),
        .text(\.dataset_upload_max_bytes, "dataset_upload_max_bytes", rule: .atLeast(1),
              "largest `DatasetService.Upload`; larger uploads: RESOURCE_EXHAUSTED, nothing stored"),
        .text(\.pair_reason_cache_size, "pair_reason_cache_size", rule: .within(1...1_000_000),
              "pair reasons (`Recommend` with `REASON_SOURCE_PAIR`) kept in memory per (user, item, model version), least recently used dropped (4096 is about 1 MiB)"),
        .text(\.tls_cert_file, "tls_cert_file", defaultText: "none",
              "PEM certificate chain of the main listener; with `tls_key_file` it speaks TLS 1.2+ with ALPN `h2` only (see docs/security.md)"),
        .text(\.tls_key_file, "tls_key_file", defaultText: "none", "PEM private key of `tls_cert_file`"),
        .text(\.tls_client_ca_file, "tls_client_ca_file", defaultText: "none",
              "PEM CA certificates that client certificates must chain to: mutual TLS, a client without a valid certificate fails the handshake"),
        .text(\.tls_handshake_timeout_seconds, "tls_handshake_timeout_seconds", rule: .above(0),
              "a TLS handshake not finished this long after accept closes the connection"),
        .structured(\.tokens, "tokens", typeName: "list of tokens", defaultText: "none",
                    "bearer tokens as `name`, `sha256` (of the token; `curec token hash`), `scopes` (`score`, `generate`, `jobs`, `admin`), optional `expires` (ISO 8601); reloaded on SIGHUP; when the list is non-empty at start, every call except health needs a token"),
        .text(\.health_requires_token, "health_requires_token", "health checks need a token too (with tokens configured)"),
        .text(\.admin_socket, "admin_socket", defaultText: "none",
              "UNIX socket (mode 0600) serving every method without a token, for administration; the main listener then refuses `admin` methods (plugins, job submission and cancellation, dataset upload) with PERMISSION_DENIED"),
        .text(\.insecure, "insecure",
              "allow a non-loopback `listen` address without TLS and tokens (logs a warning); without it such a start is refused"),
        .text(\.metrics_listen, "metrics_listen", defaultText: "none (off)",
              rule: SettingRule("be empty or HOST:PORT or [IPv6]:PORT with a port from 0 to 65535") {
                  $0.isEmpty || (try? RPCServerConfiguration.parseListenAddress($0)) != nil
              },
              "serve Prometheus metrics (docs/metrics.md) over plain HTTP at `GET /metrics` on this address; empty: no endpoint"),
        .text(\.pipeline_on_start, "pipeline_on_start", rule: .oneOf(["quick", "standard", "off"]),
              "the `pipeline` profile submitted on the first start with the dataset and MiniLM present (only if no report exists and no pipeline job was ever submitted, by any daemon sharing the job store); `--no-plugins` turns it off"),
    ]

    /// The setting with YAML key `key`.
    public static func setting(_ key: String) -> Setting? { settings.first { $0.key == key } }

    /// The base chat model file in effect.
    public var resolvedLMPath: String {
        lm_path.isEmpty
            ? (data_dir as NSString).appendingPathComponent("models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
            : lm_path
    }

    /// The chat models' weight format (nil for a value other than `quantized` or `float32`).
    public var resolvedLMWeights: LlamaWeightFormat? {
        switch lm_weights {
        case "quantized": return .quantized
        case "float32": return .float32
        default: return nil
        }
    }

    /// The log level in effect (nil for a value that is not a level name).
    public var resolvedLogLevel: Logger.Level? { Logger.Level(rawValue: log_level) }

    /// The MiniLM directory in effect.
    public var resolvedMiniLMDirectory: String {
        minilm_dir.isEmpty ? (data_dir as NSString).appendingPathComponent("models/all-MiniLM-L6-v2") : minilm_dir
    }

    /// The bundled plugins: BPR (default recommender), popularity (C), collaborative reward.
    public static let defaultPlugins: [PluginSpec] = [
        PluginSpec(name: "bpr", library: "CURecBPR", config: #"{"factors": 64, "epochs": 40}"#),
        PluginSpec(name: "popularity", library: "CURecPopularity"),
        PluginSpec(name: "reward", library: "CURecCollaborativeReward", config: #"{"factors": 32, "epochs": 15}"#),
    ]

    public init() {}

    /// Decodes a YAML document: absent keys keep their defaults; unknown keys and values of the
    /// wrong type are errors naming the key.
    public init(from decoder: any Decoder) throws {
        self.init()
        let container = try decoder.container(keyedBy: SettingKey.self)
        for key in container.allKeys where Self.setting(key.stringValue) == nil {
            throw ConfigurationError.invalid("unknown key '\(Setting.shortened(key.stringValue))' (known: "
                                             + Self.settings.map(\.key).sorted().joined(separator: ", ") + ")")
        }
        for setting in Self.settings {
            do {
                if try setting.decode(container, &self) { sources[setting.key] = .file("") }
            } catch {
                throw ConfigurationError.invalid("\(setting.key) must be \(setting.typePhrase)")
            }
        }
    }

    /// Encodes every setting (a complete YAML document of the values in effect).
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: SettingKey.self)
        for setting in Self.settings { try setting.encode(self, &container) }
    }

    /// The settings of a YAML file (unchecked; see ``validate()``).
    public static func load(file path: String) throws(ConfigurationError) -> DaemonConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .unreadable(path, error.localizedDescription)
        }
        var configuration: DaemonConfiguration
        do {
            if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return DaemonConfiguration() }
            configuration = try YAMLDecoder().decode(DaemonConfiguration.self, from: text)
        } catch {
            if case .invalid(let reason)? = Self.configurationError(in: error) {
                throw .invalid("\(reason) (in config file \(path))")
            }
            throw .invalid("config file \(path) is not a YAML mapping of settings: \(Setting.shortened("\(error)"))")
        }
        for key in configuration.sources.keys { configuration.sources[key] = .file(path) }
        return configuration
    }

    /// The ``ConfigurationError`` a decoding error carries (the YAML decoder wraps what
    /// ``init(from:)`` throws).
    static func configurationError(in error: any Error) -> ConfigurationError? {
        if let error = error as? ConfigurationError { return error }
        guard let error = error as? DecodingError else { return nil }
        switch error {
        case .dataCorrupted(let context), .typeMismatch(_, let context), .valueNotFound(_, let context),
             .keyNotFound(_, let context):
            return context.underlyingError.flatMap(configurationError(in:))
        @unknown default:
            return nil
        }
    }

    /// Applies the `CUREC_<KEY>` environment variables of the settings that have one (other
    /// `CUREC_` variables belong to other programs and are ignored).
    public mutating func applyEnvironment(_ environment: [String: String]) throws(ConfigurationError) {
        for setting in Self.settings {
            guard let name = setting.environmentVariable, let text = environment[name], let apply = setting.applyText else { continue }
            guard apply([text], false, &self) else {
                throw .invalid("\(setting.key) must be \(setting.typePhrase), not '\(Setting.shortened(text))' (from environment variable \(name))")
            }
            sources[setting.key] = .environment(name)
        }
    }

    /// Applies setting flags, given as every argument of each flag in order (as
    /// ``SettingFlags/split(_:)`` collects them).
    public mutating func applyFlags(_ flags: [String: [String]]) throws(ConfigurationError) {
        for setting in Self.settings {
            guard let flag = setting.flag, let texts = flags[flag], let apply = setting.applyText else { continue }
            guard apply(texts, true, &self) else {
                throw .invalid("\(setting.key) must be \(setting.typePhrase), not '\(Setting.shortened(texts.last ?? ""))' (from flag \(flag))")
            }
            sources[setting.key] = .flag(flag)
        }
    }

    /// The configuration from every source: defaults, then the YAML file, the environment and
    /// flags; checked once.
    public static func resolve(file: String?, environment: [String: String],
                               flags: [String: [String]]) throws(ConfigurationError) -> DaemonConfiguration {
        var configuration = try file.map { path throws(ConfigurationError) in try load(file: path) } ?? DaemonConfiguration()
        try configuration.applyEnvironment(environment)
        try configuration.applyFlags(flags)
        try configuration.validate()
        return configuration
    }

    /// Checks every setting against its rule, naming the setting, what it must be and where
    /// the value came from; then the plugin list.
    public func validate() throws(ConfigurationError) {
        for setting in Self.settings where !setting.holds(self) {
            throw .invalid(setting.violation(in: self, from: sources[setting.key] ?? .builtIn))
        }
        var names = Set<String>()
        for plugin in plugins {
            guard !plugin.name.isEmpty, !plugin.library.isEmpty else {
                throw .invalid("every plugin needs a name and a library")
            }
            guard ResourceName.isValid(plugin.name) else {
                throw .invalid("plugin name '\(plugin.name)' must \(ResourceName.requirement)")
            }
            guard PluginLibraryName.isPlain(plugin.library) else {
                throw .invalid("plugins[\(plugin.name)].library '\(plugin.library)' must be a file name in the plugin directories "
                               + "(no '/'); add its folder to plugin_dirs instead of giving a path")
            }
            guard names.insert(plugin.name).inserted else { throw .invalid("plugin name '\(plugin.name)' is used twice") }
            _ = try plugin.configBytes()
            _ = try plugin.pluginIsolation()
            if let batching = plugin.dynamic_batching {
                // The plugin's own maximum is known only once loaded; the bounds hold for any.
                do {
                    _ = try batching.validated(pluginMaximum: DynamicBatchingConfiguration.Bounds.batchSize.upperBound)
                } catch {
                    throw .invalid("plugins[\(plugin.name)].\(error.description)")
                }
            }
        }
        try validateSecurity()
        _ = try jobStoreSettings(readingPassword: false)
    }

    /// The PostgreSQL job store's settings (nil with `job_store: sqlite`), the password read
    /// from `job_store_password_file` when `readingPassword`.
    public func jobStoreSettings(readingPassword: Bool) throws(ConfigurationError) -> PostgresJobStoreSettings? {
        guard job_store == "postgres" else {
            guard job_store_url.isEmpty else {
                throw .invalid("job_store_url is set but job_store is \(Setting.shortened(job_store)); set job_store: postgres to use it")
            }
            return nil
        }
        guard !job_store_url.isEmpty else {
            throw .invalid("job_store: postgres needs job_store_url (postgres://USER@HOST[:PORT]/DATABASE)")
        }
        var password: String? = nil
        if readingPassword, !job_store_password_file.isEmpty {
            guard let data = FileManager.default.contents(atPath: job_store_password_file), data.count <= 4096,
                  let text = String(data: data, encoding: .utf8) else {
                throw .invalid("job_store_password_file \(Setting.shortened(job_store_password_file)) cannot be read (or is over 4 KiB)")
            }
            password = String(text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
        }
        do {
            return try PostgresJobStoreSettings(url: job_store_url, password: password)
        } catch {
            throw .invalid(error.description)
        }
    }

    /// TLS files come as a pair; tokens are well formed; a non-loopback listener has TLS and
    /// tokens (or client certificates) unless `insecure` is set.
    func validateSecurity() throws(ConfigurationError) {
        guard tls_cert_file.isEmpty == tls_key_file.isEmpty else {
            throw .invalid("tls_cert_file and tls_key_file go together: set both or neither")
        }
        guard tls_client_ca_file.isEmpty || !tls_cert_file.isEmpty else {
            throw .invalid("tls_client_ca_file needs tls_cert_file and tls_key_file (client certificates are a TLS feature)")
        }
        _ = try TokenTable(tokens)
        guard !insecure, let address = try? RPCServerConfiguration.parseListenAddress(listen),
              !Self.isLoopback(host: address.host) else { return }
        var missing: [String] = []
        if tls_cert_file.isEmpty { missing.append("TLS (tls_cert_file, tls_key_file)") }
        if tokens.isEmpty && tls_client_ca_file.isEmpty { missing.append("tokens (or tls_client_ca_file)") }
        guard missing.isEmpty else {
            throw .invalid("listen \(Setting.shortened(listen)) is not a loopback address but "
                           + missing.joined(separator: " and ") + " \(missing.count == 1 ? "is" : "are") not configured; "
                           + "configure them (docs/security.md) or pass --insecure to serve anyone who can connect")
        }
    }

    /// Whether `host` names the loopback interface (127.0.0.0/8, ::1, localhost).
    public static func isLoopback(host: String) -> Bool {
        if host == "localhost" || host == "::1" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }

    /// Whether this configuration exposes the daemon without protection (a non-loopback
    /// listener allowed by `insecure` without TLS or tokens), for the warning at start.
    public var isInsecurelyExposed: Bool {
        guard let address = try? RPCServerConfiguration.parseListenAddress(listen),
              !Self.isLoopback(host: address.host) else { return false }
        return tls_cert_file.isEmpty || (tokens.isEmpty && tls_client_ca_file.isEmpty)
    }

    /// The RPC server settings these options describe.
    public func serverConfiguration() throws(ConfigurationError) -> RPCServerConfiguration {
        var server = RPCServerConfiguration()
        do {
            let address = try RPCServerConfiguration.parseListenAddress(listen)
            server.host = address.host
            server.port = address.port
        } catch {
            throw .invalid("listen: \(error)")
        }
        if event_loops > 0 { server.eventLoopCount = event_loops }
        server.maxReceiveMessageBytes = max_message_bytes
        server.drainTimeout = Self.duration(drain_timeout_seconds)
        server.idleTimeout = Self.duration(idle_timeout_seconds)
        if !tls_cert_file.isEmpty {
            server.security.tls = TLSServerSettings(
                certificateChainFile: tls_cert_file, privateKeyFile: tls_key_file,
                clientCAFile: tls_client_ca_file.isEmpty ? nil : tls_client_ca_file)
        }
        server.security.handshakeTimeout = Self.duration(tls_handshake_timeout_seconds)
        if !admin_socket.isEmpty { server.security.adminSocketPath = admin_socket }
        server.maxConcurrentStreams = UInt32(max_concurrent_streams)
        server.maxBufferedBytesPerConnection = max(max_connection_buffer_bytes, max_message_bytes + 5)
        server.maxConnections = max_connections
        server.maxConnectionsPerPeer = max_connections_per_peer
        server.headerReadTimeout = Self.duration(header_read_timeout_seconds)
        server.bodyReadTimeout = Self.duration(body_read_timeout_seconds)
        server.sendTimeout = Self.duration(send_timeout_seconds)
        server.defaultDeadline = default_deadline_seconds > 0 ? Self.duration(default_deadline_seconds) : nil
        server.defaultDeadlineExemptPaths = [Curec_V1_JobService.Method.watch.path]
        server.keepaliveInterval = keepalive_interval_seconds > 0 ? Self.duration(keepalive_interval_seconds) : nil
        server.keepaliveTimeout = Self.duration(keepalive_timeout_seconds)
        server.maxConnectionAge = max_connection_age_seconds > 0 ? Self.duration(max_connection_age_seconds) : nil
        server.maxConnectionAgeGrace = Self.duration(max_connection_age_grace_seconds)
        server.acceptBackoff = Self.duration(accept_backoff_seconds)
        server.resetBurst = UInt64(h2_reset_burst)
        server.resetRatePerSecond = UInt64(h2_reset_rate)
        server.maxContinuations = h2_max_continuations
        server.maxSettingsEntries = h2_max_settings_entries
        return server
    }

    /// `seconds` as a duration, capped at a year.
    static func duration(_ seconds: Double) -> Duration {
        .milliseconds(Int64(min(max(seconds, 0), 365 * 86_400) * 1000))
    }
}
