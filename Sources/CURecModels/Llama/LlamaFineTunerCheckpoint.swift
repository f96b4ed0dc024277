import CURecTensor
import Foundation

/// What a checkpoint's `state.json` records besides the tensors.
struct LlamaFineTuningCheckpointState: Codable, Equatable {
    var format: Int
    var config: LlamaFineTuningConfig
    var modelConfig: LlamaConfig
    /// Hexadecimal fingerprints of the data set and (LoRA) the frozen base weights.
    var dataset: String
    var base: String
    var step: Int
    var epoch: Int
    var cursor: Int
    var order: [Int]
    var optimizerStep: Int
    /// Generator states as hexadecimal words (exact in any JSON reader).
    var generator: [String]
    var dropoutGenerator: [String]?
}

extension LlamaFineTuner {
    /// Name of the file in a checkpoint directory naming the current checkpoint.
    public static let latestCheckpointFileName = "latest"

    /// Whether `directory` holds a checkpoint.
    public static func hasCheckpoint(directory: String) -> Bool {
        FileManager.default.fileExists(atPath: (directory as NSString).appendingPathComponent(latestCheckpointFileName))
    }

    /// Saves the complete training state into `directory` (created if needed), atomically:
    ///
    ///     directory/latest                       the name of the current checkpoint
    ///     directory/step-00000012/state.json     configuration, fingerprints, data position, generators
    ///     directory/step-00000012/weights.safetensors    "adapters" (LoRA) or "model" (full), flat F32
    ///     directory/step-00000012/optimizer.safetensors  AdamW "m" and "v", flat F32
    ///
    /// The checkpoint is written into a temporary folder, renamed into place, and only then named
    /// in `latest` (itself replaced by a rename); older checkpoints are removed afterwards. A run
    /// stopped at any point leaves `latest` naming a complete checkpoint (the files are not
    /// flushed to disk with fsync, so this holds for a stopped process, not for a power cut).
    public func saveCheckpoint(directory: String) throws(LlamaFineTuningError) {
        let fm = FileManager.default
        // A fresh name even when this step was saved before (the data position may differ), so
        // the checkpoint `latest` names is never replaced in place.
        var name = String(format: "step-%08d", progress.step)
        var attempt = 1
        while fm.fileExists(atPath: (directory as NSString).appendingPathComponent(name)) {
            name = String(format: "step-%08d.%d", progress.step, attempt)
            attempt += 1
        }
        let final = (directory as NSString).appendingPathComponent(name)
        let temporary = (directory as NSString).appendingPathComponent(".\(name).tmp-\(getpid())")
        func fail(_ why: String) -> LlamaFineTuningError { .checkpoint(why, directory: directory) }
        do {
            try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
            if fm.fileExists(atPath: temporary) { try fm.removeItem(atPath: temporary) }
            try fm.createDirectory(atPath: temporary, withIntermediateDirectories: false)
        } catch {
            throw fail("cannot create \(temporary): \(error.localizedDescription)")
        }
        let weights = adapters?.parameters ?? model.parameters
        do {
            try SafeTensorsFile.write(path: temporary + "/weights.safetensors",
                                      tensors: [(adapters == nil ? "model" : "adapters", [weights.count], weights.values)],
                                      metadata: ["format": "pt"])
            try SafeTensorsFile.write(path: temporary + "/optimizer.safetensors",
                                      tensors: [("m", [optimizer.m.count], optimizer.m.values),
                                                ("v", [optimizer.v.count], optimizer.v.values)],
                                      metadata: ["step": "\(optimizer.step)"])
        } catch {
            try? fm.removeItem(atPath: temporary)
            throw fail(error.description)
        }
        let state = LlamaFineTuningCheckpointState(
            format: 1, config: config, modelConfig: model.config, dataset: Self.hex(dataset.fingerprint),
            base: Self.hex(baseFingerprint), step: progress.step, epoch: progress.epoch, cursor: progress.cursor,
            order: progress.order, optimizerStep: optimizer.step, generator: generator.state.map(Self.hex),
            dropoutGenerator: adapters?.dropoutGenerator.state.map(Self.hex))
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(state).write(to: URL(fileURLWithPath: temporary + "/state.json"))
            try fm.moveItem(atPath: temporary, toPath: final)
            try Data(name.utf8).write(to: URL(fileURLWithPath: (directory as NSString)
                .appendingPathComponent(Self.latestCheckpointFileName)), options: .atomic)
        } catch {
            try? fm.removeItem(atPath: temporary)
            throw fail("cannot write: \(error.localizedDescription)")
        }
        // Older checkpoints and leftovers of interrupted saves.
        for entry in (try? fm.contentsOfDirectory(atPath: directory)) ?? []
        where entry != name && (entry.hasPrefix("step-") || entry.hasPrefix(".step-")) {
            try? fm.removeItem(atPath: (directory as NSString).appendingPathComponent(entry))
        }
    }

    /// Restores the state saved by ``saveCheckpoint(directory:)`` into this fine-tuner, which
    /// must have been made with the same configuration, model shape and data set (and, for
    /// adapters, the same base weights). Everything is read and checked before anything changes.
    public func loadCheckpoint(directory: String) throws(LlamaFineTuningError) {
        func fail(_ why: String) -> LlamaFineTuningError { .checkpoint(why, directory: directory) }
        let latest = (directory as NSString).appendingPathComponent(Self.latestCheckpointFileName)
        guard let nameData = FileManager.default.contents(atPath: latest),
              let name = String(data: nameData, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines),
              name.hasPrefix("step-"), !name.contains("/")
        else { throw fail("no checkpoint (\(Self.latestCheckpointFileName) is missing or malformed)") }
        let folder = (directory as NSString).appendingPathComponent(name)
        let state: LlamaFineTuningCheckpointState
        do {
            state = try JSONDecoder().decode(LlamaFineTuningCheckpointState.self,
                                             from: Data(contentsOf: URL(fileURLWithPath: folder + "/state.json")))
        } catch {
            throw fail("cannot read \(name)/state.json: \(error)")
        }
        guard state.format == 1 else { throw fail("unknown checkpoint format \(state.format)") }
        guard state.config == config else { throw fail("it was made with another fine-tuning configuration") }
        guard state.modelConfig == model.config else { throw fail("it was made for \(state.modelConfig)") }
        guard state.dataset == Self.hex(dataset.fingerprint) else { throw fail("it was made on another data set") }
        guard state.base == Self.hex(baseFingerprint) else { throw fail("it was made on other base weights") }
        guard let generator = Self.generator(state.generator) else { throw fail("malformed generator state") }
        var dropout: Xoshiro256?
        if adapters != nil {
            guard let words = state.dropoutGenerator, let g = Self.generator(words) else {
                throw fail("malformed dropout generator state")
            }
            dropout = g
        }
        let n = dataset.sequences.count
        guard state.step >= 0, state.optimizerStep >= 0, state.epoch >= 0, state.order.count == n,
              Set(state.order) == Set(0..<n), state.cursor >= 0, state.cursor <= n
        else { throw fail("inconsistent data position") }
        let weights = adapters?.parameters ?? model.parameters
        let w: [Float], m: [Float], v: [Float]
        do {
            let wf = try SafeTensorsFile.read(path: folder + "/weights.safetensors")
            w = try wf.floats(adapters == nil ? "model" : "adapters")
            let of = try SafeTensorsFile.read(path: folder + "/optimizer.safetensors")
            m = try of.floats("m")
            v = try of.floats("v")
        } catch {
            throw fail(error.description)
        }
        guard w.count == weights.count, m.count == optimizer.m.count, v.count == optimizer.v.count else {
            throw fail("tensor sizes differ from this run's (\(w.count), \(m.count), \(v.count))")
        }
        for (values, tensor) in [(w, weights), (m, optimizer.m), (v, optimizer.v)] {
            values.withUnsafeBufferPointer { src in
                guard let base = src.baseAddress else { return }
                tensor.data.update(from: base, count: values.count)
            }
        }
        optimizer.restoreStep(state.optimizerStep)
        self.generator = generator
        if let dropout { adapters?.dropoutGenerator = dropout }
        progress = LlamaFineTuningProgress(step: state.step, epoch: state.epoch, cursor: state.cursor, order: state.order)
    }

    static func hex(_ x: UInt64) -> String { String(x, radix: 16) }

    static func generator(_ words: [String]) -> Xoshiro256? {
        let values = words.compactMap { UInt64($0, radix: 16) }
        guard values.count == words.count else { return nil }
        return Xoshiro256(state: values)
    }
}
