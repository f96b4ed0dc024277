import CURecJobs
import CURecPluginHost
import Foundation

/// The parameters of every job kind the daemon runs, in the order of docs/jobs.md. The docs
/// table and `curec jobs submit --help` are made from these (a test keeps both in step).
public enum JobKindParameters {
    public static let all: [JobParameterSchema] = [
        TrainPluginJob.Parameters.schema, EvaluateJob.Parameters.schema, PretrainJob.Parameters.schema,
        FinetuneJob.Parameters.schema, PipelineJob.Parameters.schema,
    ]

    /// The parameter tables of docs/jobs.md.
    public static var markdown: String {
        all.map { "### `\($0.kind)`\n\n\($0.markdownTable)" }.joined(separator: "\n\n")
    }

    /// The text `curec jobs submit --help` shows (Sources/curec/JobKindHelp.swift holds a copy).
    public static var help: String {
        "Parameters by kind (key=value; see docs/jobs.md):\n\n" + all.map(\.help).joined(separator: "\n\n")
    }
}

/// Numbers a plugin reports with its training progress (a JSON object; non-numbers are
/// ignored, unreadable text gives none).
enum PluginProgressMetrics {
    static func parse(_ json: String) -> [String: Double] {
        var metrics: [String: Double] = [:]
        if let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] {
            for (key, value) in object { if let number = value as? Double { metrics[key] = number } }
        }
        return metrics
    }
}

extension PluginHost {
    /// Serves instance `name` from a prepared state: hot-reloads it if it is loaded, loads it
    /// otherwise. If another caller loads or unloads the instance between the check and the
    /// call (`instanceExists` / `instanceNotFound`), the other branch is taken once; any
    /// other failure is thrown as it is.
    func loadOrReload(name: String, library: String, config: [UInt8], prepare: (PluginInstance) throws -> Void) throws {
        let loaded = instance(named: name) != nil
        do {
            if loaded {
                _ = try reload(name: name, library: library, config: config, prepare: prepare)
            } else {
                _ = try load(name: name, library: library, config: config, prepare: prepare)
            }
        } catch {
            switch error as? PluginHostError {
            case .instanceNotFound?:
                _ = try load(name: name, library: library, config: config, prepare: prepare)
            case .instanceExists?:
                _ = try reload(name: name, library: library, config: config, prepare: prepare)
            default:
                throw error
            }
        }
    }
}
