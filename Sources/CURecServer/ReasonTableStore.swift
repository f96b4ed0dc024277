import CURecPipeline
import CURecProto
import Foundation
import Synchronization

/// The newest corrected reason table (artifact `reasons`), loaded on first use and reloaded
/// when a newer version appears. Thread-safe.
final class ReasonTableStore: Sendable {
    /// A loaded table with an index by subject.
    struct Loaded: Sendable {
        let version: String
        let entries: [ReasonSubject: ReasonTableEntry]

        /// Gives every item of `response` that has a non-empty table entry its reason, with
        /// source "table" and the entry's reward.
        func attach(to response: inout Curec_V1_RecommendResponse, data: ServingData) {
            for index in response.items.indices {
                guard let item = data.dataset.itemIndex(response.items[index].itemID),
                      let entry = entries[.item(item)], !entry.text.isEmpty else { continue }
                response.items[index].reason = entry.text
                response.items[index].reasonSource = "table"
                response.items[index].reasonReward = Float(entry.reward)
            }
        }
    }

    private let artifacts: ArtifactStore
    /// The daemon's dataset name: a table written for another dataset is not used.
    private let datasetName: String
    /// The version last looked at and its table (nil: written for another dataset).
    private let cache = Mutex<(version: String, loaded: Loaded?)?>(nil)

    init(artifacts: ArtifactStore, datasetName: String) {
        self.artifacts = artifacts
        self.datasetName = datasetName
    }

    /// The newest table, or nil when the pipeline has not produced one for this dataset.
    /// Files are read only when a new version appears.
    func latest() throws(ServingError) -> Loaded? {
        guard let directory = artifacts.latest(of: PublishedName.reasonTable.rawValue) else { return nil }
        let version = "models/reasons/\((directory as NSString).lastPathComponent)"
        if let cached = cache.withLock({ $0 }), cached.version == version { return cached.loaded }
        if let dataset = ArtifactStore.manifest(in: directory)?.dataset, dataset != datasetName {
            cache.withLock { $0 = (version, nil) }
            return nil
        }
        let table: ReasonTable
        do {
            table = try ReasonTable.read(from: directory)
        } catch {
            throw ServingError.internalFailure("the reason table \(version) is unreadable: \(error)")
        }
        let loaded = Loaded(version: version, entries: table.entriesBySubject())
        cache.withLock { $0 = (version, loaded) }
        return loaded
    }
}
