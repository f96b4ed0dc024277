import CURecPluginHost
import Foundation
import Logging

/// Makes a new plugin instance ready to serve: loads the newest saved artifact made by the
/// same plugin with the same config, or else trains it on the dataset and saves a new
/// artifact version.
public struct PluginPreparer: Sendable {
    let artifacts: ArtifactStore
    let data: ServingData?
    let logger: Logger

    /// A stable fingerprint of config bytes (FNV-1a, 64 bit), to match artifacts to configs.
    static func fingerprint(_ bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return String(hash, radix: 16)
    }

    /// Whether the daemon has a dataset to train plugins on.
    var canTrain: Bool { data != nil }

    /// Loads the newest saved artifact of `instance`'s name made by the same plugin with the
    /// same config on the same dataset whose files match their registry row; false when none loads.
    public func loadSaved(_ instance: PluginInstance, config: [UInt8]) -> Bool {
        let description = instance.describe()
        let fingerprint = Self.fingerprint(config)
        let datasetName = data?.dataset.name ?? ""
        for version in artifacts.versions(of: instance.name).reversed() {
            let directory = artifacts.directory(of: instance.name, version: version)
            guard let manifest = ArtifactStore.manifest(in: directory),
                  manifest.plugin == description.pluginName,
                  manifest.configFingerprint == fingerprint,
                  manifest.dataset == datasetName else { continue }
            do {
                try artifacts.verify(instance.name, version: version)
                try instance.load(from: directory)
                logger.info("plugin state loaded", metadata: ["name": "\(instance.name)", "artifact": "\(directory)"])
                return true
            } catch {
                logger.warning("saved plugin state could not be loaded; trying an older one or training",
                               metadata: ["name": "\(instance.name)", "artifact": "\(directory)", "error": "\(error)"])
            }
        }
        return false
    }

    /// Loads the saved state of `instance` (``loadSaved(_:config:)``), or else, when `train`
    /// is true and there is a dataset, trains it here and saves a new artifact version.
    /// Blocking: the daemon calls it at start; clients' training runs as a `train` job.
    public func prepare(_ instance: PluginInstance, config: [UInt8], train: Bool) throws {
        if loadSaved(instance, config: config) { return }
        guard train, let data else { return }
        let description = instance.describe()
        let fingerprint = Self.fingerprint(config)
        let datasetName = data.dataset.name
        let started = Date()
        let name = instance.name
        let logger = self.logger
        try instance.train(data.trainingData(), progress: { step, total, metrics in
            logger.debug("training", metadata: ["name": "\(name)", "step": "\(step)", "total": "\(total)", "metrics": "\(metrics)"])
        })
        let seconds = Date().timeIntervalSince(started)
        var manifest = ArtifactManifest.pluginState(description, library: instance.libraryPath,
                                                    configFingerprint: fingerprint, dataset: datasetName)
        manifest.trainingSeconds = (seconds * 100).rounded() / 100
        let directory = try artifacts.addVersion(of: instance.name, manifest: manifest) { staging in
            try instance.save(to: staging)
        }
        logger.info("plugin trained", metadata: [
            "name": "\(instance.name)", "seconds": "\(String(format: "%.2f", seconds))", "artifact": "\(directory)"])
    }
}

extension ArtifactManifest {
    /// The manifest of a plugin's saved state.
    static func pluginState(_ description: PluginDescription, library: String, configFingerprint: String,
                            dataset: String) -> ArtifactManifest {
        var manifest = ArtifactManifest(kind: .pluginState)
        manifest.plugin = description.pluginName
        manifest.pluginVersion = description.pluginVersion
        manifest.library = library
        manifest.configFingerprint = configFingerprint
        manifest.dataset = dataset
        return manifest
    }
}
