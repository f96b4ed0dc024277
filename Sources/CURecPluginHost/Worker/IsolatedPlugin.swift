import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A plugin instance in its own worker process (`isolation: process`): each call is a frame
/// on one of the worker's channels (``WorkerFrame``). A crash, hang or leak in the plugin
/// ends only the worker, which ``WorkerSupervisor`` restarts; meanwhile calls fail fast with
/// ``PluginHostError/workerUnavailable(instance:reason:)`` (UNAVAILABLE).
final class IsolatedPlugin: PluginBackend {
    let name: String
    let kind: PluginKind
    let pluginVersion: String
    private let supervisor: WorkerSupervisor

    /// Starts the worker and creates the instance in it; throws what prevented that.
    init(name: String, launch: WorkerSupervisor.Launch,
         onChange: @escaping @Sendable (PluginReadiness) -> Void) throws(PluginHostError) {
        self.name = name
        supervisor = WorkerSupervisor(name: name, launch: launch, onChange: onChange)
        try supervisor.start()
        guard let description = supervisor.lastDescription else {
            supervisor.stop()
            throw .host("the worker of '\(name)' started without describing its instance")
        }
        kind = description.kind
        pluginVersion = description.pluginVersion
    }

    /// Unloading (or retiring after a reload) kills the worker: its memory goes with it.
    deinit {
        supervisor.stop()
        try? FileManager.default.removeItem(atPath: stateDirectory)
    }

    /// Where trained state is kept for restarts (see ``keepTrainedState(_:)``).
    private var stateDirectory: String {
        (supervisor.launch.cacheDirectory as NSString).appendingPathComponent("state-\(stateID)")
    }
    private let stateID = UUID().uuidString

    var readiness: PluginReadiness { supervisor.readiness }

    /// The process id of the serving worker, nil while it is down (for logs and tests).
    var workerProcessID: pid_t? { supervisor.workerProcessID }

    var callsWaitOnAnotherProcess: Bool { true }

    /// The last description the worker gave, without asking it again.
    var knownDescription: PluginDescription { supervisor.lastDescription ?? describe() }

    /// Waits until the worker serves or is marked failed; returns whether it serves.
    func waitUntilSettled() -> Bool { supervisor.waitUntilSettled() }

    private var callTimeLimit: Duration { supervisor.launch.limits.callTimeLimit }

    /// The worker's description, or the last known one when the worker is down or every
    /// channel is busy (listing never waits for a slow plugin).
    func describe() -> PluginDescription {
        let fresh = try? supervisor.withChannel(timeLimit: callTimeLimit, waitForIdle: false) {
            channel, deadline throws(WorkerCallFailure) in
            var buffer: [UInt8] = []
            return try WorkerCall.exchange(WireWriter(.describe).finishing(), on: channel, deadline: deadline,
                                           buffer: &buffer, expecting: .described, function: "describe",
                                           instance: name).description()
        }
        if let fresh {
            supervisor.remember(fresh)
            return fresh
        }
        // Known since the first worker started, so never absent.
        return supervisor.lastDescription ?? PluginDescription(
            pluginName: "", pluginVersion: pluginVersion, kind: kind, itemFeatureDimension: 0,
            userFeatureDimension: 0, reasonEmbeddingDimension: 0, isTrained: false)
    }

    func scoreRecommender(user: UInt32, history: [UInt32], candidates: UnsafeBufferPointer<UInt32>,
                          scores: UnsafeMutableBufferPointer<Float>) throws(PluginHostError) {
        var request = WireWriter(.scoreRecommender, capacity: 12 + 4 * (history.count + candidates.count))
        request.u32(user)
        request.array(history)
        request.array(candidates)
        let frame = request.finish()
        try supervisor.withChannel(timeLimit: callTimeLimit) { channel, deadline throws(WorkerCallFailure) in
            var buffer: [UInt8] = []
            var reply = try WorkerCall.exchange(frame, on: channel, deadline: deadline, buffer: &buffer,
                                                expecting: .scores, function: "score", instance: name).reader
            do throws(WireError) {
                try reply.floats(into: UnsafeMutableBufferPointer(rebasing: scores[0..<candidates.count]), "scores")
                try reply.finish("the scores")
            } catch {
                throw .broken(.malformed(error))
            }
        }
    }

    /// The scores of `request`, without blocking the calling thread: the request goes to
    /// the worker and its reply completes the call from the worker's reply thread.
    func scoreRecommender(_ request: RecommenderRequest,
                          completion: @escaping @Sendable (Result<[Float], PluginHostError>) -> Void) {
        var writer = WireWriter(.scoreRecommender, capacity: 12 + 4 * (request.history.count + request.candidates.count))
        writer.u32(request.user)
        writer.array(request.history)
        writer.array(request.candidates)
        let count = request.candidates.count
        supervisor.call(writer.finish(), expecting: .scores, function: "score", parse: { reader throws(WireError) in
            let scores = try reader.floats("scores", limit: count)
            try reader.finish("the scores")
            guard scores.count == count else { throw WireError("\(scores.count) scores for \(count) candidates") }
            return scores
        }, completion: completion)
    }

    /// The rewards of `inputs`, without blocking the calling thread.
    func scoreReward(_ inputs: [PluginInstance.RewardInput],
                     completion: @escaping @Sendable (Result<[Float], PluginHostError>) -> Void) {
        var writer = WireWriter(.scoreReward, capacity: 4 + inputs.count * 16)
        WorkerMessages.write(inputs, to: &writer)
        let count = inputs.count
        supervisor.call(writer.finish(), expecting: .scores, function: "score", parse: { reader throws(WireError) in
            let rewards = try reader.floats("rewards", limit: count)
            try reader.finish("the rewards")
            guard rewards.count == count else { throw WireError("\(rewards.count) rewards for \(count) triples") }
            return rewards
        }, completion: completion)
    }

    func scoreReward(_ inputs: [PluginInstance.RewardInput]) throws(PluginHostError) -> [Float] {
        var request = WireWriter(.scoreReward, capacity: 4 + inputs.count * 16)
        WorkerMessages.write(inputs, to: &request)
        let frame = request.finish()
        return try supervisor.withChannel(timeLimit: callTimeLimit) { channel, deadline throws(WorkerCallFailure) in
            var buffer: [UInt8] = []
            var reply = try WorkerCall.exchange(frame, on: channel, deadline: deadline, buffer: &buffer,
                                                expecting: .scores, function: "score", instance: name).reader
            do throws(WireError) {
                let rewards = try reply.floats("rewards", limit: inputs.count)
                try reply.finish("the rewards")
                guard rewards.count == inputs.count else {
                    throw WireError("\(rewards.count) rewards for \(inputs.count) triples")
                }
                return rewards
            } catch {
                throw .broken(.malformed(error))
            }
        }
    }

    /// Trains in the worker, relaying progress and cancellation. Training has no time limit.
    /// When the worker dies during training and a checkpoint directory was given, the call
    /// waits for the restarted worker and trains again, which resumes from the checkpoint
    /// (as many times as the restart limit allows).
    func train(_ data: PluginTrainingData, checkpointDirectory: String?,
               progress: @escaping (UInt64, UInt64, String) -> Void,
               isCancelled: @escaping () -> Bool) throws(PluginHostError) {
        var request = WireWriter(.train, capacity: data.users.count * 20 + 64)
        WorkerMessages.write(data, checkpointDirectory: checkpointDirectory, to: &request)
        let frame = request.finish()
        while true {
            do throws(PluginHostError) {
                let description = try supervisor.withChannel(timeLimit: nil) { channel, _ throws(WorkerCallFailure) in
                    try Self.runTraining(frame, on: channel, instance: name, progress: progress, isCancelled: isCancelled)
                }
                supervisor.remember(description)
                keepTrainedState(description)
                return
            } catch .workerUnavailable(let instance, let reason) {
                guard checkpointDirectory != nil, !isCancelled(), supervisor.waitUntilSettled() else {
                    throw .workerUnavailable(instance: instance, reason: reason)
                }
                // The restarted worker resumes from the checkpoint its predecessor wrote.
            }
        }
    }

    /// One train exchange: the request, progress frames until the reply, a cancel frame
    /// once `isCancelled` says so (checked every 100 ms).
    private static func runTraining(_ frame: [UInt8], on channel: Int32, instance: String,
                                    progress: (UInt64, UInt64, String) -> Void,
                                    isCancelled: () -> Bool) throws(WorkerCallFailure) -> PluginDescription {
        var buffer: [UInt8] = []
        // Cancelled already: the cancel frame goes in the same write as the request, so it is
        // waiting in the channel when the plugin first asks, however late this thread runs on.
        var cancelSent = isCancelled()
        do throws(WireIO.Failure) {
            try WireIO.send(cancelSent ? frame + WireWriter(.cancel).finishing() : frame, on: channel)
        } catch {
            throw .broken(error)
        }
        while true {
            if !cancelSent, isCancelled() {
                cancelSent = true
                do throws(WireIO.Failure) {
                    try WireIO.send(WireWriter(.cancel).finishing(), on: channel)
                } catch {
                    throw .broken(error)
                }
            }
            let readable: Bool
            do throws(WireIO.Failure) {
                readable = try WireIO.waitReadable(channel, milliseconds: 100)
            } catch {
                throw .broken(error)
            }
            if !readable { continue }
            let kind: WorkerFrame.Kind
            do throws(WireIO.Failure) {
                kind = try WireIO.receive(on: channel, buffer: &buffer)
            } catch {
                throw .broken(error)
            }
            if kind == .progress {
                var reader = WireReader(buffer, offset: WorkerFrame.headerSize)
                do throws(WireError) {
                    let step = try reader.u64("the step")
                    let total = try reader.u64("the total")
                    let metrics = try reader.string("the metrics", limit: 64 << 10)
                    try reader.finish("a progress report")
                    progress(step, total, metrics)
                } catch {
                    throw .broken(.malformed(error))
                }
                continue
            }
            return try WorkerCall.interpret(kind, buffer: buffer, expecting: .described, function: "train",
                                            instance: instance).description()
        }
    }

    /// Saves freshly trained state where a restarted worker loads it from (a private
    /// directory under the host's cache, removed with the instance), so a crash after
    /// training does not bring the instance back untrained.
    private func keepTrainedState(_ description: PluginDescription) {
        guard description.isTrained else { return }
        do {
            try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
            try save(to: stateDirectory)
            supervisor.remember(stateIn: stateDirectory, description: description)
        } catch {
            // The plugin cannot save: a restarted worker comes back untrained, as it says.
        }
    }

    func save(to directory: String) throws(PluginHostError) {
        var request = WireWriter(.save)
        request.string(directory)
        let frame = request.finish()
        try supervisor.withChannel(timeLimit: callTimeLimit) { channel, deadline throws(WorkerCallFailure) in
            var buffer: [UInt8] = []
            _ = try WorkerCall.exchange(frame, on: channel, deadline: deadline, buffer: &buffer,
                                        expecting: .done, function: "save", instance: name)
        }
    }

    func load(from directory: String) throws(PluginHostError) {
        var request = WireWriter(.load)
        request.string(directory)
        let frame = request.finish()
        let description = try supervisor.withChannel(timeLimit: supervisor.launch.limits.startTimeLimit) {
            channel, deadline throws(WorkerCallFailure) in
            var buffer: [UInt8] = []
            return try WorkerCall.exchange(frame, on: channel, deadline: deadline, buffer: &buffer,
                                           expecting: .described, function: "load", instance: name).description()
        }
        supervisor.remember(stateIn: directory, description: description)
    }
}

extension WireWriter {
    /// The finished frame of a writer that needs no payload.
    consuming func finishing() -> [UInt8] {
        var writer = self
        return writer.finish()
    }
}
