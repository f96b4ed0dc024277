import CURecJobs
import CURecPluginHost
import Foundation

/// Reading job parameters.
enum JobParameters {
    /// The integer parameter `key` if present, or `.invalidParameter` naming the job kind, the
    /// key, the range and the text given.
    static func integer(_ parameters: [String: String], _ key: String, in range: ClosedRange<Int>,
                        kind: String) throws(JobError) -> Int? {
        guard let text = parameters[key] else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw .invalidParameter("\(kind): parameter '\(key)' must be an integer in \(range.lowerBound)...\(range.upperBound), not '\(text)'")
        }
        return value
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
