import CURecPipeline
import CURecRPC
import Foundation
import Synchronization

/// The newest corrected reason table (artifact `reasons`), loaded on first use and reloaded
/// when a newer version appears. Thread-safe.
final class ReasonTableStore: Sendable {
    /// A loaded table with an index by subject.
    struct Loaded: Sendable {
        let version: String
        let entries: [ReasonSubject: ReasonTableEntry]
    }

    private let artifacts: ArtifactStore
    /// The daemon's dataset name: a table written for another dataset is not used.
    private let datasetName: String
    private let cache = Mutex<Loaded?>(nil)

    init(artifacts: ArtifactStore, datasetName: String) {
        self.artifacts = artifacts
        self.datasetName = datasetName
    }

    /// The newest table, or nil when the pipeline has not produced one for this dataset.
    func latest() throws(RPCError) -> Loaded? {
        guard let directory = artifacts.latest(of: "reasons") else { return nil }
        if let dataset = PluginPreparer.metadata(in: directory)?["dataset"], dataset != datasetName { return nil }
        let version = "models/reasons/\((directory as NSString).lastPathComponent)"
        if let cached = cache.withLock({ $0 }), cached.version == version { return cached }
        let table: ReasonTable
        do {
            table = try ReasonTable.read(from: directory)
        } catch {
            throw RPCError(.internal, "the reason table \(version) is unreadable: \(error)")
        }
        let loaded = Loaded(version: version, entries: table.entriesBySubject())
        cache.withLock { $0 = loaded }
        return loaded
    }
}
