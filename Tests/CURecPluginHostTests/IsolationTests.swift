import Foundation
import Logging
import Synchronization
import Testing
@testable import CURecPluginHost

/// The worker executable and the misbehaving fixtures, built beside the test binary.
extension Fixtures {
    static var worker: String { directory + "/curec-plugin-worker" }
    static var misbehaving: String { directory + "/libCURecTestMisbehaving.so" }
    static var isolationBuilt: Bool {
        built && [worker, misbehaving, directory + "/libCURecTestCrashOnLoad.so"].allSatisfy {
            FileManager.default.fileExists(atPath: $0)
        }
    }
}

/// Readiness changes a host reports, and a way to wait for one.
private final class ReadinessLog: Sendable {
    private let condition = NSCondition()
    private let changes = Mutex<[(String, PluginReadiness)]>([])

    func record(_ name: String, _ readiness: PluginReadiness) {
        condition.lock()
        changes.withLock { $0.append((name, readiness)) }
        condition.broadcast()
        condition.unlock()
    }

    var all: [(String, PluginReadiness)] { changes.withLock { $0 } }

    /// Waits until a change after the first `after` ones matches `matching`; returns its index.
    @discardableResult
    func wait(after: Int = 0, for name: String, _ matching: (PluginReadiness) -> Bool) -> Int {
        condition.lock()
        defer { condition.unlock() }
        while true {
            let seen = changes.withLock { $0 }
            if let index = seen.indices.dropFirst(after).first(where: { seen[$0].0 == name && matching(seen[$0].1) }) {
                return index
            }
            condition.wait()
        }
    }
}

private func isolatedHost(_ log: ReadinessLog? = nil) -> PluginHost {
    let host = PluginHost(searchDirectories: [Fixtures.directory], cacheDirectory: Fixtures.scratch("plugin-cache"),
                          logger: Logger(label: "test"), workerExecutable: Fixtures.worker)
    if let log { host.observeReadiness { log.record($0, $1) } }
    return host
}

private func score(_ instance: PluginInstance, user: UInt32 = 0, _ candidates: [UInt32]) throws(PluginHostError) -> [Float] {
    var out = [Float](repeating: -1, count: candidates.count)
    try candidates.withUnsafeBufferPointer { candidates throws(PluginHostError) in
        try out.withUnsafeMutableBufferPointer { buffer throws(PluginHostError) in
            try instance.scoreRecommender(user: user, history: [1, 2], candidates: candidates, scores: buffer)
        }
    }
    return out
}

/// Scores a healthy in-process instance from two threads until stopped; counts failures.
private final class Load: @unchecked Sendable {
    private let stopFlag = Atomic<Bool>(false)
    private let calls = Atomic<Int>(0)
    private let failures = Atomic<Int>(0)
    private let group = DispatchGroup()

    init(on instance: PluginInstance, expected: [Float]) {
        for _ in 0..<2 {
            group.enter()
            Thread { [self] in
                while !stopFlag.load(ordering: .relaxed) {
                    let result = try? score(instance, [1, 3])
                    calls.add(1, ordering: .relaxed)
                    if result != expected { failures.add(1, ordering: .relaxed) }
                }
                group.leave()
            }.start()
        }
    }

    /// Stops the threads; returns (calls, failed calls).
    func stop() -> (Int, Int) {
        stopFlag.store(true, ordering: .relaxed)
        group.wait()
        return (calls.load(ordering: .relaxed), failures.load(ordering: .relaxed))
    }
}

/// How many calls tasks have started.
private final class SentCalls: Sendable {
    let count = Atomic<Int>(0)
}

private func unavailableReason(_ body: () throws(PluginHostError) -> Void) -> String? {
    do throws(PluginHostError) {
        try body()
    } catch .workerUnavailable(_, let reason) {
        return reason
    } catch {
        Issue.record("expected workerUnavailable, got \(error)")
        return nil
    }
    Issue.record("expected workerUnavailable, the call succeeded")
    return nil
}

@Suite(.serialized, .enabled(if: Fixtures.isolationBuilt, "the worker or the misbehaving fixtures are missing: run swift build"))
struct IsolationTests {
    @Test func anIsolatedInstanceAnswersAsTheSameLibraryInProcess() throws {
        let host = isolatedHost()
        let config = Fixtures.config(version: "2.0.0", offset: 0.5)
        let inProcess = try host.makeInstance(name: "direct", library: "CURecTestRecommender", config: config) {
            try $0.train(Fixtures.data)
        }
        var steps: [UInt64] = []
        let isolated = try host.load(name: "isolated", library: "CURecTestRecommender", config: config,
                                     isolation: .process(WorkerLimits())) {
            try $0.train(Fixtures.data, progress: { step, _, _ in steps.append(step) })
        }
        #expect(steps == [1, 2, 3, 4, 5, 6])
        #expect(isolated.isolation == .process(WorkerLimits()) && isolated.readiness == .serving)
        #expect(isolated.servedBy == "isolated@2.0.0#1" && isolated.kind == .recommender)
        #expect(isolated.describe() == inProcess.describe())
        #expect(try score(isolated, [0, 1, 2, 3]) == score(inProcess, [0, 1, 2, 3]))
        // Plugin errors cross with their code and message.
        let untrained = try host.makeInstance(name: "untrained", library: "CURecTestRecommender", config: config,
                                              isolation: .process(WorkerLimits()))
        do throws(PluginHostError) {
            _ = try score(untrained, [0])
            Issue.record("an untrained instance scored")
        } catch {
            #expect(error.description == "plugin 'untrained' score failed: counting is not trained")
        }
        // Saved state loads into a fresh isolated instance.
        let directory = Fixtures.scratch("isolated-state")
        try isolated.save(to: directory)
        try untrained.load(from: directory)
        #expect(try score(untrained, [0, 1, 2, 3]) == score(inProcess, [0, 1, 2, 3]))
        // Cancellation reaches the plugin in the worker.
        let cancelled = hostError { try untrained.train(Fixtures.data, isCancelled: { true }) }
        #expect(cancelled?.isCancellation == true)
        #expect(host.list().map { $0.isolation.name } == ["process"])
    }

    @Test func aPluginThatCrashesWhileLoadingFailsTheLoadAndNothingElse() throws {
        let host = isolatedHost()
        let healthy = try host.load(name: "healthy", library: "CURecTestRecommender", config: []) { try $0.train(Fixtures.data) }
        let expected = try score(healthy, [1, 3])
        let load = Load(on: healthy, expected: expected)
        let onAbiVersion = hostError {
            _ = try host.load(name: "abi", library: "CURecTestCrashOnLoad", config: [], isolation: .process(WorkerLimits()))
        }
        let onCreate = hostError {
            _ = try host.load(name: "create", library: "CURecTestMisbehaving", config: Array("create-segv".utf8),
                              isolation: .process(WorkerLimits()))
        }
        let (calls, failures) = load.stop()
        #expect(calls > 0 && failures == 0)
        for error in [onAbiVersion, onCreate] {
            guard case .workerUnavailable(_, let reason) = error else {
                Issue.record("expected workerUnavailable, got \(String(describing: error))")
                continue
            }
            #expect(reason.contains("signal 11") || reason.contains("exited with status"), "\(reason)")
        }
        #expect(host.list().map(\.name) == ["healthy"])
    }

    /// Each way of misbehaving while scoring ends only the worker: the call fails with
    /// UNAVAILABLE, readiness goes down and comes back, the next call is answered, and an
    /// in-process instance under load meanwhile answers every call.
    @Test(arguments: ["segv", "hang", "alloc", "exit", "garbage"])
    func aMisbehavingWorkerIsRestartedWhileOthersServe(mode: String) throws {
        let log = ReadinessLog()
        let host = isolatedHost(log)
        let healthy = try host.load(name: "healthy", library: "CURecTestRecommender", config: []) { try $0.train(Fixtures.data) }
        let limits = WorkerLimits(callTimeLimit: .milliseconds(500), memoryBytes: 2 << 30)
        let bad = try host.load(name: "bad", library: "CURecTestMisbehaving", config: Array(mode.utf8),
                                isolation: .process(limits))
        #expect(try score(bad, [4, 5]) == [4, 5])
        let load = Load(on: healthy, expected: try score(healthy, [1, 3]))
        let reason = unavailableReason { () throws(PluginHostError) in _ = try score(bad, user: 666, [1]) }
        let down = log.wait(for: "bad") { if case .restarting = $0 { return true } else { return false } }
        log.wait(after: down, for: "bad") { $0 == .serving }
        #expect(try score(bad, [7]) == [7])
        let (calls, failures) = load.stop()
        #expect(calls > 0 && failures == 0)
        if mode == "hang" { #expect(reason?.contains("time limit of 500 ms") == true) }
        if mode == "garbage" { #expect(reason?.contains("malformed") == true) }
        #expect(healthy.readiness == .serving && bad.readiness == .serving)
    }

    /// A call that suspends holds no thread while the worker computes: calls to a plugin that
    /// hangs (more of them than its worker has channels and the pool has threads) leave
    /// another isolated instance and an in-process one answering on the same pool; the
    /// hanging calls end only when their worker does, each with UNAVAILABLE.
    @Test(.timeLimit(.minutes(5)))
    func hangingCallsThatSuspendHoldNoThread() async throws {
        let log = ReadinessLog()
        let host = isolatedHost(log)
        // An hour: the hanging calls cannot end by their time limit while the test runs.
        let hanging = try host.load(name: "hanging", library: "CURecTestMisbehaving", config: Array("hang".utf8),
                                    isolation: .process(WorkerLimits(callTimeLimit: .seconds(3600))))
        let calm = try host.load(name: "calm", library: "CURecTestMisbehaving", config: Array("hang".utf8),
                                 isolation: .process(WorkerLimits()))
        let direct = try host.load(name: "direct", library: "CURecTestRecommender", config: []) { try $0.train(Fixtures.data) }
        let count = 4 * ProcessInfo.processInfo.activeProcessorCount + 8
        let sent = SentCalls()
        let hangs = (0..<count).map { _ in
            Task { () -> PluginHostError? in
                sent.count.add(1, ordering: .relaxed)
                do throws(PluginHostError) {
                    _ = try await hanging.scoreSuspending(RecommenderRequest(user: 666, history: [], candidates: [1]))
                    return nil
                } catch {
                    return error
                }
            }
        }
        while sent.count.load(ordering: .relaxed) < count { await Task.yield() }
        for _ in 0..<20 {
            #expect(try await calm.scoreSuspending(RecommenderRequest(user: 1, history: [2], candidates: [4, 5])) == [4, 5])
            #expect(try await direct.scoreSuspending(RecommenderRequest(user: 0, history: [1, 2], candidates: [1, 3]))
                    == score(direct, [1, 3]))
        }
        #expect(hanging.readiness == .serving)
        // The hanging worker ends: every call on it or waiting for one of its channels fails.
        let worker = try #require((hanging.backend as? IsolatedPlugin)?.workerProcessID)
        _ = kill(worker, SIGKILL)
        for hang in hangs {
            let error = await hang.value
            guard case .workerUnavailable(_, let reason)? = error else {
                Issue.record("expected workerUnavailable, got \(String(describing: error))")
                continue
            }
            #expect(reason.contains("stopped during the call") || reason.contains("restarting"), "\(reason)")
        }
        let down = log.wait(for: "hanging") { if case .restarting = $0 { return true } else { return false } }
        log.wait(after: down, for: "hanging") { $0 == .serving }
        #expect(try await hanging.scoreSuspending(RecommenderRequest(user: 3, history: [], candidates: [8])) == [8])
    }

    /// A call that suspends past the instance's time limit kills the worker, fails with
    /// UNAVAILABLE naming the limit, and the restarted worker answers the next call.
    @Test func aSuspendedCallPastItsTimeLimitRestartsTheWorker() async throws {
        let log = ReadinessLog()
        let host = isolatedHost(log)
        let bad = try host.load(name: "slow", library: "CURecTestMisbehaving", config: Array("hang".utf8),
                                isolation: .process(WorkerLimits(callTimeLimit: .milliseconds(300))))
        var reason: String? = nil
        do throws(PluginHostError) {
            _ = try await bad.scoreSuspending(RecommenderRequest(user: 666, history: [], candidates: [1]))
            Issue.record("a hanging call was answered")
        } catch {
            if case .workerUnavailable(_, let why) = error { reason = why } else { Issue.record("got \(error)") }
        }
        #expect(reason?.contains("time limit of 300 ms") == true)
        let down = log.wait(for: "slow") { if case .restarting = $0 { return true } else { return false } }
        log.wait(after: down, for: "slow") { $0 == .serving }
        #expect(try await bad.scoreSuspending(RecommenderRequest(user: 2, history: [], candidates: [6, 7])) == [6, 7])
        // A plugin's own error crosses as it does for a blocking call, and the worker stays.
        let wrong = try host.makeInstance(name: "untrained", library: "CURecTestRecommender", config: [],
                                          isolation: .process(WorkerLimits()))
        do throws(PluginHostError) {
            _ = try await wrong.scoreSuspending(RecommenderRequest(user: 0, history: [], candidates: [0]))
            Issue.record("an untrained instance scored")
        } catch {
            #expect(error.description == "plugin 'untrained' score failed: counting is not trained")
        }
        #expect(wrong.readiness == .serving)
    }

    @Test func aWorkerThatKeepsCrashingIsMarkedFailed() throws {
        let log = ReadinessLog()
        let host = isolatedHost(log)
        let bad = try host.load(name: "bad", library: "CURecTestMisbehaving", config: Array("segv".utf8),
                                isolation: .process(WorkerLimits(restartLimit: 3)))
        guard let isolated = bad.backend as? IsolatedPlugin else {
            Issue.record("not isolated")
            return
        }
        var crashes = 0
        while isolated.waitUntilSettled() {
            _ = unavailableReason { () throws(PluginHostError) in _ = try score(bad, user: 666, [1]) }
            crashes += 1
        }
        #expect(crashes == 3)
        guard case .failed(let why) = bad.readiness else {
            Issue.record("expected failed, got \(bad.readiness)")
            return
        }
        #expect(why.contains("stopped 3 times") && why.contains("signal 11"))
        log.wait(for: "bad") { if case .failed = $0 { return true } else { return false } }
        // Calls now fail at once, saying so; a reload brings up a fresh worker.
        let reason = unavailableReason { () throws(PluginHostError) in _ = try score(bad, [1]) }
        #expect(reason?.contains("marked failed") == true)
        let reloaded = try host.reload(name: "bad", config: [])
        #expect(try score(reloaded, user: 666, [2]) == [2])
        log.wait(for: "bad") { $0 == .serving }
    }

    @Test func aCrashDuringTrainingResumesFromTheCheckpoint() throws {
        let host = isolatedHost()
        let instance = try host.makeInstance(name: "trainer", library: "CURecTestMisbehaving",
                                             config: Array("train-segv".utf8), isolation: .process(WorkerLimits()))
        let checkpoints = Fixtures.scratch("isolated-checkpoints")
        let steps = Mutex<[UInt64]>([])
        try instance.train(Fixtures.data, checkpointDirectory: checkpoints,
                           progress: { step, _, _ in steps.withLock { $0.append(step) } })
        // Steps 1-4 before the crash, 5-10 after the restarted worker resumed at step 5.
        #expect(steps.withLock { $0 } == Array(1...10))
        let description = instance.describe()
        #expect(description.isTrained && description.pluginVersion == "1.0.0-resumed")
        #expect(FileManager.default.fileExists(atPath: checkpoints + "/crashed"))
    }

    @Test func trainingInAWorkerStopsWhenCancelled() throws {
        let host = isolatedHost()
        let instance = try host.makeInstance(name: "trainer", library: "CURecTestMisbehaving",
                                             config: Array("train-until-cancelled".utf8), isolation: .process(WorkerLimits()))
        let seen = Atomic<UInt64>(0)
        let error = hostError {
            try instance.train(Fixtures.data, progress: { step, _, _ in seen.store(step, ordering: .relaxed) },
                               isCancelled: { seen.load(ordering: .relaxed) >= 3 })
        }
        #expect(error?.isCancellation == true)
        #expect(instance.readiness == .serving)
    }

    @Test func aRestartedWorkerComesBackWithItsTrainedState() throws {
        let log = ReadinessLog()
        let host = isolatedHost(log)
        let instance = try host.load(name: "trained", library: "CURecTestMisbehaving", config: Array("exit".utf8),
                                     isolation: .process(WorkerLimits())) { try $0.train(Fixtures.data) }
        #expect(instance.describe().isTrained)
        _ = unavailableReason { () throws(PluginHostError) in _ = try score(instance, user: 666, [1]) }
        let down = log.wait(for: "trained") { $0 != .serving }
        log.wait(after: down, for: "trained") { $0 == .serving }
        #expect(instance.describe().isTrained)
    }

    @Test func hotReloadOfAnIsolatedInstanceRetiresTheOldWorker() throws {
        let host = isolatedHost()
        let first = try host.load(name: "swap", library: "CURecTestRecommender", config: Fixtures.config(offset: 0),
                                  isolation: .process(WorkerLimits())) { try $0.train(Fixtures.data) }
        let running = WorkerProcess.running.withLock { $0 }
        let second = try host.reload(name: "swap", config: Fixtures.config(offset: 1)) { try $0.train(Fixtures.data) }
        #expect(second.isolation == first.isolation && second.generation == 2)
        // The old instance still answers the caller holding it; the new one serves the name.
        #expect(try score(first, [1]) == [3])
        #expect(try host.instance(named: "swap").map { try score($0, [1]) } == [4])
        #expect(WorkerProcess.running.withLock { $0 } == running + 1)
    }

    /// Unloading kills and reaps the worker, so load/unload cycles leave no worker behind.
    /// (The daemon's memory and mappings over 200 cycles are measured on a live daemon, in
    /// `Tests/Service/python/test_hostile_trust.py`: this process runs other suites at once.)
    @Test func loadUnloadCyclesLeaveNoWorkerBehind() throws {
        let host = isolatedHost()
        func cycle() throws {
            try host.load(name: "cycled", library: "CURecTestRecommender", config: [],
                          isolation: .process(WorkerLimits(channels: 2))) { try $0.train(Fixtures.data) }
            try host.unload(name: "cycled")
        }
        let workersBefore = WorkerProcess.running.withLock { $0 }
        for _ in 0..<200 { try cycle() }
        #expect(WorkerProcess.running.withLock { $0 } == workersBefore)
    }

    /// A worker reads nothing it is sent on trust: an oversized length, an unknown type, a
    /// count beyond the frame, trailing bytes or a reply kind as a request end the worker
    /// (status 66) without the plugin seeing anything; a well-formed request is answered.
    @Test(arguments: [
        [0xff, 0xff, 0xff, 0xff, 3],                                   // length beyond the bound
        [1, 0, 0, 0, 0x42],                                            // unknown type
        [9, 0, 0, 0, 3, 0, 0, 0, 0, 0xff, 0xff, 0, 0],                  // history count beyond the frame
        [14, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7],        // describe with trailing bytes
        [1, 0, 0, 0, 67],                                              // a reply kind as a request
    ] as [[UInt8]])
    func aWorkerEndsOnAMalformedRequest(frame: [UInt8]) throws {
        let worker = try WorkerProcess.spawn(executable: Fixtures.worker, libraryPath: Fixtures.misbehaving,
                                             cacheDirectory: Fixtures.scratch("worker-cache"), limits: WorkerLimits(channels: 1))
        let channel = worker.channels[0]
        var buffer: [UInt8] = []
        var create = WireWriter(.create)
        create.array([UInt8]())
        try WireIO.send(create.finish(), on: channel)
        #expect(try WireIO.receive(on: channel, buffer: &buffer) == .described)
        try WireIO.send(WireWriter(.describe).finishing(), on: channel)
        #expect(try WireIO.receive(on: channel, buffer: &buffer) == .described)
        try WireIO.send(frame, on: channel)
        #expect(worker.waitForExit() == "exited with status 66")
    }

    @Test func aMissingWorkerExecutableIsASetupErrorNotACrash() {
        let host = PluginHost(searchDirectories: [Fixtures.directory], cacheDirectory: Fixtures.scratch("plugin-cache"),
                              logger: Logger(label: "test"), workerExecutable: "/nonexistent/curec-plugin-worker")
        let error = hostError {
            _ = try host.load(name: "x", library: "CURecTestRecommender", config: [], isolation: .process(WorkerLimits()))
        }
        #expect(error?.description.contains("is missing or not executable") == true)
    }
}
