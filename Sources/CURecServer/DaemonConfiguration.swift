import CURecModels
import CURecRPC
import Foundation
import Yams

/// One plugin instance the daemon loads at start.
public struct PluginSpec: Sendable, Codable, Hashable {
    /// Instance name, unique in the daemon (used in RPCs).
    public var name: String
    /// Library file name in the plugin directories (`CURecBPR` finds `libCURecBPR.so`) or a path.
    public var library: String
    /// Plugin config as text (JSON for the bundled Swift plugins).
    public var config: String?
    /// Plugin config as base64 bytes (e.g. a serialized protobuf message for C plugins).
    public var config_base64: String?
    /// Train on the dataset at start when no saved artifact exists (default true).
    public var train_on_start: Bool?

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
}

/// Why the configuration is unusable.
public enum ConfigurationError: Error, CustomStringConvertible, Sendable {
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
/// command-line flags. See docs/configuration.md.
public struct DaemonConfiguration: Sendable, Codable {
    /// `HOST:PORT` to serve on. Default `127.0.0.1:50051`.
    public var listen: String = "127.0.0.1:50051"
    /// Root of the daemon's files: `models/`, the plugin cache. Default `var`.
    public var data_dir: String = "var"
    /// Directory with the dataset's atomic files. Default `var/data/ml-100k`.
    public var dataset_dir: String = "var/data/ml-100k"
    /// Dataset name (file prefix). Default `ml-100k`.
    public var dataset_name: String = "ml-100k"
    /// Extra plugin directories, searched after the directory of the curecd executable and
    /// `<data_dir>/plugins`.
    public var plugin_dirs: [String] = []
    /// Plugin instances loaded at start.
    public var plugins: [PluginSpec] = DaemonConfiguration.defaultPlugins
    /// Recommender used when a request names none. Default `bpr`.
    public var default_recommender: String = "bpr"
    /// Reward model used when a request names none. Default `reward`.
    public var default_reward_model: String = "reward"
    /// Largest request message, bytes. Default 4 MiB.
    public var max_message_bytes: Int = 4 * 1024 * 1024
    /// Seconds calls in flight may take during graceful shutdown. Default 10.
    public var drain_timeout_seconds: Double = 10
    /// Seconds before an idle connection is closed. Default 300.
    public var idle_timeout_seconds: Double = 300
    /// I/O threads; 0 means one per core.
    public var event_loops: Int = 0
    /// Log level. Default info.
    public var log_level: String = "info"
    /// Serve grpc.testing.TestService. Default false.
    public var enable_interop_testing: Bool = false
    /// Jobs running at once. Default 1 (training uses every core).
    public var job_workers: Int = 1
    /// Jobs allowed to wait in the queue; more are refused with RESOURCE_EXHAUSTED. Default 32.
    public var job_queue_capacity: Int = 32
    /// Directory of the all-MiniLM-L6-v2 sentence encoder (model.safetensors, vocab.txt) the
    /// pipeline embeds reasons with. Default `<data_dir>/models/all-MiniLM-L6-v2`, where
    /// scripts/fetch-minilm puts it.
    public var minilm_dir: String = ""
    /// Pipeline profile submitted on the first start (no report yet and no pipeline job ever
    /// submitted), when the dataset and MiniLM are present: `quick`, `standard` or `off`.
    /// Default `quick`.
    public var pipeline_on_start: String = "quick"
    /// The pretrained chat model `GenerationService.Generate` serves as `smollm2` and `finetune`
    /// jobs start from (a GGUF file). Default
    /// `<data_dir>/models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf`, where
    /// scripts/fetch-lm puts it.
    public var lm_path: String = ""
    /// How the chat models keep their weight matrices: `quantized` (default; as stored in the
    /// GGUF file, about 150 MiB per loaded model, faster decoding) or `float32` (dequantized,
    /// about 650 MiB, the exact arithmetic of training). Fully fine-tuned versions are float32.
    public var lm_weights: String = "quantized"
    /// Largest dataset a client may upload through DatasetService.Upload, bytes. Default 64 MiB.
    public var dataset_upload_max_bytes: Int = 64 * 1024 * 1024
    /// Pair reasons (`Recommend` with `REASON_SOURCE_PAIR`) kept in memory, per (user, item,
    /// model version); the least recently used are dropped. Default 4096 (about 1 MiB).
    public var pair_reason_cache_size: Int = 4096

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

    private enum CodingKeys: String, CodingKey {
        case listen, data_dir, dataset_dir, dataset_name, plugin_dirs, plugins, default_recommender,
             default_reward_model, max_message_bytes, drain_timeout_seconds, idle_timeout_seconds, event_loops,
             log_level, enable_interop_testing, job_workers, job_queue_capacity, minilm_dir, pipeline_on_start, dataset_upload_max_bytes, lm_path, lm_weights, pair_reason_cache_size
    }

    /// Decodes a YAML document; absent keys keep their defaults; unknown keys are errors.
    public init(from decoder: any Decoder) throws {
        self.init()
        let container = try decoder.container(keyedBy: AnyKey.self)
        let known = Set(["listen", "data_dir", "dataset_dir", "dataset_name", "plugin_dirs", "plugins",
                         "default_recommender", "default_reward_model", "max_message_bytes", "drain_timeout_seconds",
                         "idle_timeout_seconds", "event_loops", "log_level", "enable_interop_testing",
                         "job_workers", "job_queue_capacity", "minilm_dir", "pipeline_on_start",
                         "dataset_upload_max_bytes", "lm_path", "lm_weights", "pair_reason_cache_size"])
        for key in container.allKeys where !known.contains(key.stringValue) {
            throw ConfigurationError.invalid("unknown key '\(key.stringValue)' (known: \(known.sorted().joined(separator: ", ")))")
        }
        func read<T: Decodable>(_ name: String, _ target: inout T) throws {
            if let value = try container.decodeIfPresent(T.self, forKey: AnyKey(name)) { target = value }
        }
        try read("listen", &listen)
        try read("data_dir", &data_dir)
        try read("dataset_dir", &dataset_dir)
        try read("dataset_name", &dataset_name)
        try read("plugin_dirs", &plugin_dirs)
        try read("plugins", &plugins)
        try read("default_recommender", &default_recommender)
        try read("default_reward_model", &default_reward_model)
        try read("max_message_bytes", &max_message_bytes)
        try read("drain_timeout_seconds", &drain_timeout_seconds)
        try read("idle_timeout_seconds", &idle_timeout_seconds)
        try read("event_loops", &event_loops)
        try read("log_level", &log_level)
        try read("enable_interop_testing", &enable_interop_testing)
        try read("job_workers", &job_workers)
        try read("job_queue_capacity", &job_queue_capacity)
        try read("minilm_dir", &minilm_dir)
        try read("pipeline_on_start", &pipeline_on_start)
        try read("dataset_upload_max_bytes", &dataset_upload_max_bytes)
        try read("lm_path", &lm_path)
        try read("lm_weights", &lm_weights)
        try read("pair_reason_cache_size", &pair_reason_cache_size)
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ string: String) { stringValue = string }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// Overlays a YAML file.
    public static func load(file path: String) throws(ConfigurationError) -> DaemonConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .unreadable(path, error.localizedDescription)
        }
        do {
            if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return DaemonConfiguration() }
            return try YAMLDecoder().decode(DaemonConfiguration.self, from: text)
        } catch let error as ConfigurationError {
            throw error
        } catch {
            throw .invalid("\(path): \(error)")
        }
    }

    /// Applies `CUREC_*` environment variables (CUREC_LISTEN, CUREC_DATA_DIR, CUREC_DATASET_DIR,
    /// CUREC_DATASET_NAME, CUREC_PLUGIN_DIRS (colon-separated), CUREC_LOG_LEVEL,
    /// CUREC_MAX_MESSAGE_BYTES, CUREC_MINILM_DIR, CUREC_LM_PATH, CUREC_LM_WEIGHTS,
    /// CUREC_PIPELINE_ON_START).
    public mutating func applyEnvironment(_ environment: [String: String]) throws(ConfigurationError) {
        if let value = environment["CUREC_LISTEN"] { listen = value }
        if let value = environment["CUREC_DATA_DIR"] { data_dir = value }
        if let value = environment["CUREC_DATASET_DIR"] { dataset_dir = value }
        if let value = environment["CUREC_DATASET_NAME"] { dataset_name = value }
        if let value = environment["CUREC_PLUGIN_DIRS"] { plugin_dirs = value.split(separator: ":").map(String.init) }
        if let value = environment["CUREC_LOG_LEVEL"] { log_level = value }
        if let value = environment["CUREC_MINILM_DIR"] { minilm_dir = value }
        if let value = environment["CUREC_LM_PATH"] { lm_path = value }
        if let value = environment["CUREC_LM_WEIGHTS"] { lm_weights = value }
        if let value = environment["CUREC_PIPELINE_ON_START"] { pipeline_on_start = value }
        if let value = environment["CUREC_MAX_MESSAGE_BYTES"] {
            guard let bytes = Int(value), bytes > 0 else { throw .invalid("CUREC_MAX_MESSAGE_BYTES must be a positive integer") }
            max_message_bytes = bytes
        }
    }

    /// Checks values that cannot be checked by type alone.
    public func validate() throws(ConfigurationError) {
        do {
            _ = try RPCServerConfiguration.parseListenAddress(listen)
        } catch {
            throw .invalid("listen: \(error)")
        }
        guard max_message_bytes > 0 else { throw .invalid("max_message_bytes must be positive") }
        guard dataset_upload_max_bytes > 0 else { throw .invalid("dataset_upload_max_bytes must be positive") }
        guard (1...1_000_000).contains(pair_reason_cache_size) else {
            throw .invalid("pair_reason_cache_size must be between 1 and 1000000")
        }
        guard drain_timeout_seconds >= 0, idle_timeout_seconds > 0 else {
            throw .invalid("drain_timeout_seconds must be >= 0 and idle_timeout_seconds > 0")
        }
        guard event_loops >= 0 else { throw .invalid("event_loops must be >= 0 (0 = one per core)") }
        guard job_workers >= 1, job_queue_capacity >= 1 else {
            throw .invalid("job_workers and job_queue_capacity must be at least 1")
        }
        guard resolvedLMWeights != nil else {
            throw .invalid("lm_weights must be quantized or float32, not '\(lm_weights)'")
        }
        guard ["quick", "standard", "off"].contains(pipeline_on_start) else {
            throw .invalid("pipeline_on_start must be quick, standard or off, not '\(pipeline_on_start)'")
        }
        var names = Set<String>()
        for plugin in plugins {
            guard !plugin.name.isEmpty, !plugin.library.isEmpty else {
                throw .invalid("every plugin needs a name and a library")
            }
            guard names.insert(plugin.name).inserted else { throw .invalid("plugin name '\(plugin.name)' is used twice") }
            _ = try plugin.configBytes()
        }
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
        server.drainTimeout = .milliseconds(Int(drain_timeout_seconds * 1000))
        server.idleTimeout = .milliseconds(Int(idle_timeout_seconds * 1000))
        return server
    }
}
