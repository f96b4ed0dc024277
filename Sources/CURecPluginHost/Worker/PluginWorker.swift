import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The worker side of an isolated plugin instance: the body of `curec-plugin-worker`.
///
/// Started by the daemon as `curec-plugin-worker <library> <cache-dir> <channels>
/// <memory-bytes> <cpu-seconds>` with its channel sockets as descriptors 3, 4, .... It
/// applies its resource limits, opens the library through the same C ABI checks as the
/// daemon (``PluginLibrary``), and answers frames on every channel, one thread each, until
/// the daemon closes them. It trusts nothing it reads: a frame that breaks the format ends
/// the worker (the daemon sees the channel close and restarts it).
public enum PluginWorker {
    /// Runs the worker; never returns.
    public static func main(arguments: [String]) -> Never {
        guard arguments.count == 6,
              let channelCount = Int(arguments[3]), (1...64).contains(channelCount),
              let memoryBytes = UInt64(arguments[4]), let cpuSeconds = UInt64(arguments[5]) else {
            fail("usage: curec-plugin-worker <library> <cache-dir> <channels 1-64> <memory-bytes> <cpu-seconds>; "
                 + "it is started by curecd for plugin instances with `isolation: process`", status: 64)
        }
        closeInheritedDescriptors(from: Int32(3 + channelCount))
        if memoryBytes > 0 { limit(.memory, to: memoryBytes) }
        if cpuSeconds > 0 { limit(.cpu, to: cpuSeconds) }
        let cacheDirectory = arguments[2]
        let library: PluginLibrary
        do {
            library = try PluginLibrary(path: arguments[1], cacheDirectory: cacheDirectory)
        } catch {
            // The daemon reports the load failure it sees on channel 0; say why here too.
            fail("cannot open plugin library: \(error)", status: 65)
        }
        // The library is mapped; its staged copy is not needed on disk any longer.
        try? FileManager.default.removeItem(atPath: cacheDirectory)
        let worker = Worker(library: library)
        for index in 1..<channelCount {
            let thread = Thread { worker.serve(channel: Int32(3 + index)) }
            thread.stackSize = 8 << 20
            thread.start()
        }
        worker.serve(channel: 3)
    }

    /// Closes every descriptor from `first` on: the daemon marks its own close-on-exec, but
    /// a library in it may not have, and the plugin must see nothing of the daemon's.
    private static func closeInheritedDescriptors(from first: Int32) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return }
        for name in names {
            if let descriptor = Int32(name), descriptor >= first { close(descriptor) }
        }
    }

    private enum Resource { case memory, cpu }

    private static func limit(_ resource: Resource, to value: UInt64) {
        var limit = rlimit(rlim_cur: rlim_t(value), rlim_max: rlim_t(value))
        let which = resource == .memory ? RLIMIT_AS : RLIMIT_CPU
        if setrlimit(__rlimit_resource_t(which.rawValue), &limit) != 0 {
            fail("cannot set the worker's \(resource) limit: \(String(cString: strerror(errno)))", status: 71)
        }
    }

    static func fail(_ message: String, status: Int32) -> Never {
        FileHandle.standardError.write(Data("curec-plugin-worker: \(message)\n".utf8))
        _exit(status)
    }
}

/// The one instance a worker runs and the handling of each frame kind.
private final class Worker: Sendable {
    let library: PluginLibrary
    private let instance = Mutex<InProcessPlugin?>(nil)

    init(library: PluginLibrary) {
        self.library = library
    }

    /// Answers frames on `channel` until it closes (the daemon unloaded the instance or
    /// went away): then the whole worker exits.
    func serve(channel: Int32) -> Never {
        var buffer: [UInt8] = []
        while true {
            let kind: WorkerFrame.Kind
            do throws(WireIO.Failure) {
                kind = try WireIO.receive(on: channel, buffer: &buffer)
            } catch .closed {
                _exit(0)
            } catch {
                PluginWorker.fail("channel \(channel - 3): \(error)", status: 66)
            }
            let reply: [UInt8]?
            do throws(WireError) {
                reply = try handle(kind, WireReader(buffer, offset: WorkerFrame.headerSize), channel: channel)
            } catch {
                PluginWorker.fail("channel \(channel - 3): malformed \(kind) request: \(error)", status: 66)
            }
            guard let reply else { continue }
            do throws(WireIO.Failure) {
                try WireIO.send(reply, on: channel)
            } catch {
                _exit(0)
            }
        }
    }

    private func failure(_ error: PluginHostError) -> [UInt8] {
        if case .plugin(let code, let message, _, _) = error {
            return WorkerMessages.failure(code: code, message: message)
        }
        return WorkerMessages.failure(code: 13, message: error.description)
    }

    private func described(_ plugin: InProcessPlugin) -> [UInt8] {
        var writer = WireWriter(.described, capacity: 64)
        WorkerMessages.write(plugin.describe(), to: &writer)
        return writer.finish()
    }

    /// The reply to one request; nil for a frame that gets none.
    private func handle(_ kind: WorkerFrame.Kind, _ request: WireReader, channel: Int32) throws(WireError) -> [UInt8]? {
        var reader = request
        if kind == .create {
            let config = try reader.array(of: UInt8.self, "the config")
            try reader.finish("the config")
            do throws(PluginHostError) {
                let created = try InProcessPlugin(name: "worker", library: library, config: config)
                instance.withLock { $0 = created }
                return described(created)
            } catch {
                return failure(error)
            }
        }
        guard let plugin = instance.withLock({ $0 }) else {
            return WorkerMessages.failure(code: 9, message: "no instance: the worker was asked to \(kind) before create")
        }
        switch kind {
        case .describe:
            try reader.finish("describe")
            return described(plugin)
        case .scoreRecommender:
            let user = try reader.u32("the user")
            let history = try reader.array(of: UInt32.self, "the history", limit: WorkerMessages.maximumCandidates)
            let candidates = try reader.array(of: UInt32.self, "the candidates", limit: WorkerMessages.maximumCandidates)
            try reader.finish("a recommender request")
            var scores = [Float](repeating: 0, count: candidates.count)
            do throws(PluginHostError) {
                try candidates.withUnsafeBufferPointer { candidateBuffer throws(PluginHostError) in
                    try scores.withUnsafeMutableBufferPointer { output throws(PluginHostError) in
                        try plugin.scoreRecommender(user: user, history: history, candidates: candidateBuffer, scores: output)
                    }
                }
            } catch {
                return failure(error)
            }
            var writer = WireWriter(.scores, capacity: 4 + 4 * scores.count)
            writer.floats(scores)
            return writer.finish()
        case .scoreReward:
            let inputs = try WorkerMessages.readRewardInputs(&reader)
            do throws(PluginHostError) {
                let rewards = try plugin.scoreReward(inputs)
                var writer = WireWriter(.scores, capacity: 4 + 4 * rewards.count)
                writer.floats(rewards)
                return writer.finish()
            } catch {
                return failure(error)
            }
        case .train:
            let (data, checkpoint) = try WorkerMessages.readTraining(&reader)
            return train(plugin, data, checkpoint: checkpoint, channel: channel)
        case .save, .load:
            let directory = try reader.string("the directory", limit: 4096)
            try reader.finish("a directory")
            do throws(PluginHostError) {
                if kind == .save {
                    try plugin.save(to: directory)
                    return WireWriter(.done).finishing()
                }
                try plugin.load(from: directory)
                return described(plugin)
            } catch {
                return failure(error)
            }
        case .cancel:
            // A cancel that crossed the reply of its train call: nothing to stop, no reply.
            try reader.finish("cancel")
            return nil
        case .create, .done, .failed, .progress, .scores, .described:
            throw WireError("a \(kind) frame is not a request")
        }
    }

    /// Trains, writing progress frames on `channel` and reading a cancel frame from it.
    private func train(_ plugin: InProcessPlugin, _ data: PluginTrainingData, checkpoint: String?,
                       channel: Int32) -> [UInt8] {
        final class Cancellation: @unchecked Sendable {
            var requested = false
            var buffer: [UInt8] = []
        }
        let cancellation = Cancellation()
        do throws(PluginHostError) {
            try PluginInstance.checkFeatures(data.itemFeatures, rows: data.itemCount, dimension: data.itemFeatureDimension, what: "item")
            try PluginInstance.checkFeatures(data.userFeatures, rows: data.userCount, dimension: data.userFeatureDimension, what: "user")
            try plugin.train(data, checkpointDirectory: checkpoint, progress: { step, total, metrics in
                var writer = WireWriter(.progress, capacity: 20 + metrics.utf8.count)
                writer.u64(step)
                writer.u64(total)
                writer.string(String(decoding: metrics.utf8.prefix(64 << 10), as: UTF8.self))
                do throws(WireIO.Failure) {
                    try WireIO.send(writer.finish(), on: channel)
                } catch {
                    _exit(0)
                }
            }, isCancelled: {
                if cancellation.requested { return true }
                // Only a cancel frame may arrive while training; anything else breaks the channel.
                while (try? WireIO.waitReadable(channel, milliseconds: 0)) == true {
                    do throws(WireIO.Failure) {
                        let kind = try WireIO.receive(on: channel, buffer: &cancellation.buffer)
                        guard kind == .cancel else {
                            PluginWorker.fail("a \(kind) frame arrived during training", status: 66)
                        }
                        cancellation.requested = true
                    } catch .closed {
                        _exit(0)
                    } catch {
                        PluginWorker.fail("channel \(channel - 3) during training: \(error)", status: 66)
                    }
                }
                return cancellation.requested
            })
        } catch {
            return failure(error)
        }
        return described(plugin)
    }
}
