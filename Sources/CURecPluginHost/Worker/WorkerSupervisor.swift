import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Keeps one plugin instance's worker process running.
///
/// The first worker is started by ``start()`` (its failure is the load's failure). From then
/// on a thread waits for the worker to exit; when it does, calls fail fast (the instance is
/// ``PluginReadiness/restarting(reason:)``) and a new worker is started after a backoff
/// (50 ms doubling to 5 s), recreated with the same config and, when the instance had
/// loaded or saved state, that state. A worker that stops ``WorkerLimits/restartLimit``
/// times within ``WorkerLimits/restartWindow`` is ``PluginReadiness/failed(reason:)`` and
/// left down. ``stop()`` kills the worker for good (unload, or a retired generation).
final class WorkerSupervisor: @unchecked Sendable {
    /// What a worker is started from.
    struct Launch: Sendable {
        var executable: String
        var libraryPath: String
        var cacheDirectory: String
        var config: [UInt8]
        var limits: WorkerLimits
    }

    let name: String
    let launch: Launch
    private let onChange: @Sendable (PluginReadiness) -> Void

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var process: WorkerProcess?
    /// Completes the calls made without blocking on the serving worker.
    private var replies: WorkerReplyReader?
    private var idle: [Int32] = []
    /// Calls made without blocking that wait for an idle channel, oldest first.
    private var queued: [QueuedCall] = []
    private var phase: PluginReadiness = .restarting(reason: "starting")
    private var stopped = false
    private var stops: [ContinuousClock.Instant] = []
    private var restoreDirectory: String?
    private var description: PluginDescription?
    /// A worker being started (not serving yet), so ``stop()`` can end a start that hangs.
    private var starting: WorkerProcess?
    /// Whether the supervising thread runs (``stop()`` waits until it has reaped the worker).
    private var supervising = false

    init(name: String, launch: Launch, onChange: @escaping @Sendable (PluginReadiness) -> Void) {
        self.name = name
        self.launch = launch
        self.onChange = onChange
    }

    var readiness: PluginReadiness {
        condition.lock()
        defer { condition.unlock() }
        return phase
    }

    /// The process id of the serving worker, nil while it is down.
    var workerProcessID: pid_t? {
        condition.lock()
        defer { condition.unlock() }
        return process?.pid
    }

    /// The last description a worker gave.
    var lastDescription: PluginDescription? {
        condition.lock()
        defer { condition.unlock() }
        return description
    }

    /// Starts the first worker and, once it serves, the thread that supervises it. Throws
    /// what stopped the worker from starting (the plugin's own error, or how it died).
    func start() throws(PluginHostError) {
        let (first, replies) = try startWorker()
        condition.lock()
        install(first, replies: replies)
        supervising = true
        condition.unlock()
        let thread = Thread { [self] in
            supervise(first)
            condition.lock()
            supervising = false
            condition.broadcast()
            condition.unlock()
        }
        thread.name = "plugin-worker-\(name.prefix(12))"
        thread.start()
    }

    /// Kills the worker and restarts nothing more; calls fail from now on. Returns once the
    /// worker is reaped, so its memory is back when an unload returns.
    func stop() {
        condition.lock()
        stopped = true
        phase = .failed(reason: "the instance was unloaded or replaced")
        let current = process, pending = starting
        condition.broadcast()
        condition.unlock()
        current?.kill()
        pending?.kill()
        condition.lock()
        while supervising { condition.wait() }
        condition.unlock()
    }

    /// State a restarted worker loads (set after a successful load or save).
    func remember(stateIn directory: String, description: PluginDescription) {
        condition.lock()
        restoreDirectory = directory
        self.description = description
        condition.unlock()
    }

    func remember(_ description: PluginDescription) {
        condition.lock()
        self.description = description
        condition.unlock()
    }

    // MARK: calls

    /// Runs `body` on an idle channel of the serving worker. Fails fast with
    /// ``PluginHostError/workerUnavailable(instance:reason:)`` while the worker is down. A
    /// channel that broke (timeout, malformed frame, closed) kills the worker. With
    /// `waitForIdle` false, a worker whose channels are all busy fails the call at once too.
    func withChannel<T>(timeLimit: Duration?, waitForIdle: Bool = true,
                        _ body: (Int32, ContinuousClock.Instant?) throws(WorkerCallFailure) -> T)
        throws(PluginHostError) -> T {
        condition.lock()
        while waitForIdle, phase == .serving, idle.isEmpty { condition.wait() }
        guard phase == .serving, let process, let channel = idle.popLast() else {
            let reason = Self.unavailableReason(phase)
            condition.unlock()
            throw .workerUnavailable(instance: name, reason: reason)
        }
        condition.unlock()
        let deadline = timeLimit.map { ContinuousClock.now.advanced(by: $0) }
        do {
            let result = try body(channel, deadline)
            giveBack(channel, of: process)
            return result
        } catch {
            switch error {
            case .plugin(let pluginError):
                giveBack(channel, of: process)
                throw pluginError
            case .broken(let broken):
                throw channelBroke(broken, process: process)
            }
        }
    }

    /// Returns a channel whose call ended cleanly: to the oldest queued call made without
    /// blocking, else to the idle ones.
    private func giveBack(_ channel: Int32, of owner: WorkerProcess) {
        condition.lock()
        guard process === owner, phase == .serving else {
            condition.unlock()
            return
        }
        if !queued.isEmpty, let replies {
            let next = queued.removeFirst()
            condition.unlock()
            begin(next, on: channel, of: owner, replies: replies)
            return
        }
        idle.append(channel)
        condition.signal()
        condition.unlock()
    }

    /// Kills a worker whose channel broke, marks the instance down, and returns the error
    /// the call fails with.
    private func channelBroke(_ failure: WireIO.Failure, process owner: WorkerProcess) -> PluginHostError {
        let reason: String
        switch failure {
        case .closed: reason = "its worker process stopped during the call; it is being restarted"
        case .timedOut:
            reason = "the call exceeded the instance's time limit of \(Self.text(launch.limits.callTimeLimit)); its worker was killed and is being restarted"
        case .malformed(let error):
            reason = "its worker sent a malformed reply (\(error.description.prefix(120))); the worker was killed and is being restarted"
        case .system(let code):
            reason = "talking to its worker failed (\(String(cString: strerror(code)))); the worker was killed and is being restarted"
        }
        markDown(owner, reason: reason)
        owner.kill()
        return .workerUnavailable(instance: name, reason: reason)
    }

    private func markDown(_ owner: WorkerProcess, reason: String) {
        condition.lock()
        guard process === owner, !stopped else {
            condition.unlock()
            return
        }
        process = nil
        idle = []
        let waiting = queued
        queued = []
        phase = .restarting(reason: reason)
        condition.broadcast()
        condition.unlock()
        failQueued(waiting, phase: .restarting(reason: reason))
        onChange(.restarting(reason: reason))
    }

    /// Fails calls that were waiting for a channel of a worker that went down.
    private func failQueued(_ calls: [QueuedCall], phase: PluginReadiness) {
        guard !calls.isEmpty else { return }
        let error = PluginHostError.workerUnavailable(instance: name, reason: Self.unavailableReason(phase))
        for call in calls { call.fail(error) }
    }

    // MARK: calls that do not block

    /// A call made without blocking, until it has a channel.
    struct QueuedCall: Sendable {
        var request: [UInt8]
        /// Runs on the reader thread with the reply (or how the channel broke); returns
        /// whether the channel is still usable.
        var finish: @Sendable (Result<(WorkerFrame.Kind, [UInt8]), WireIO.Failure>) -> WireIO.Failure?
        var fail: @Sendable (PluginHostError) -> Void
    }

    /// Sends `request` to the serving worker and returns at once; `completion` gets what
    /// `parse` makes of the reply, on the worker's reply thread, or the error that ended
    /// the call. A call waits (without blocking) while every channel is busy; it fails with
    /// ``PluginHostError/workerUnavailable(instance:reason:)`` while the worker is down, and
    /// after the instance's time limit, which kills the worker as a blocking call does.
    func call<T>(_ request: [UInt8], expecting: WorkerFrame.Kind, function: String,
                 parse: @escaping @Sendable (inout WireReader) throws(WireError) -> T,
                 completion: @escaping @Sendable (Result<T, PluginHostError>) -> Void) {
        let instance = name
        let queuedCall = QueuedCall(request: request, finish: { result in
            let reply: WorkerCall.Reply
            do throws(WorkerCallFailure) {
                switch result {
                case .success(let (kind, buffer)):
                    reply = try WorkerCall.interpret(kind, buffer: buffer, expecting: expecting, function: function,
                                                     instance: instance)
                case .failure(let failure):
                    return failure
                }
            } catch {
                switch error {
                case .plugin(let pluginError):
                    completion(.failure(pluginError))
                    return nil
                case .broken(let failure):
                    return failure
                }
            }
            var reader = reply.reader
            do throws(WireError) {
                let value = try parse(&reader)
                completion(.success(value))
                return nil
            } catch {
                return .malformed(error)
            }
        }, fail: { error in completion(.failure(error)) })
        condition.lock()
        guard phase == .serving, let process, let replies else {
            let reason = Self.unavailableReason(phase)
            condition.unlock()
            completion(.failure(.workerUnavailable(instance: name, reason: reason)))
            return
        }
        guard let channel = idle.popLast() else {
            queued.append(queuedCall)
            condition.unlock()
            return
        }
        condition.unlock()
        begin(queuedCall, on: channel, of: process, replies: replies)
    }

    /// Starts a call on `channel` of `owner`, with the instance's time limit.
    private func begin(_ call: QueuedCall, on channel: Int32, of owner: WorkerProcess, replies: WorkerReplyReader) {
        let deadline = ContinuousClock.now.advanced(by: launch.limits.callTimeLimit)
        replies.start(call.request, on: channel, deadline: deadline) { [self] result in
            if let broken = call.finish(result) {
                call.fail(channelBroke(broken, process: owner))
            } else {
                giveBack(channel, of: owner)
            }
        }
    }

    private static func unavailableReason(_ phase: PluginReadiness) -> String {
        switch phase {
        case .serving: return "it has no connection to its worker"
        case .restarting(let reason): return "its worker is restarting (\(reason.prefix(200))); retry shortly"
        case .failed(let reason): return "its worker is marked failed (\(reason.prefix(200))); reload or unload it"
        }
    }

    /// Waits until the instance serves or is marked failed; returns whether it serves.
    func waitUntilSettled() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while true {
            switch phase {
            case .serving: return true
            case .failed: return false
            case .restarting: condition.wait()
            }
        }
    }

    // MARK: supervision

    private func install(_ worker: WorkerProcess, replies: WorkerReplyReader) {
        process = worker
        self.replies = replies
        replies.startThread(named: "plugin-replies-\(name.prefix(10))")
        idle = worker.channels
        phase = .serving
        condition.broadcast()
    }

    /// Stops the reply reader of a worker that was reaped (its waiting calls fail) and takes
    /// the calls queued for it. Called with `condition` held.
    private func retireReplies() -> (WorkerReplyReader?, [QueuedCall]) {
        let retired = (replies, queued)
        replies = nil
        queued = []
        return retired
    }

    /// The supervising thread: reaps each worker, restarts it with backoff, gives up after
    /// too many stops in the window.
    private func supervise(_ first: WorkerProcess) {
        var current: WorkerProcess? = first
        var consecutive = 0
        while true {
            var reason: String
            if let worker = current {
                reason = worker.waitForExit()
                current = nil
                condition.lock()
                let wasServing = process === worker
                if wasServing {
                    process = nil
                    idle = []
                }
                let (oldReplies, waiting) = retireReplies()
                let phaseNow = phase
                if stopped {
                    condition.unlock()
                    oldReplies?.stop()
                    failQueued(waiting, phase: phaseNow)
                    return
                }
                if case .restarting(let known) = phase, !wasServing { reason = "\(known); it \(reason)" } else {
                    reason = "its worker \(reason)"
                }
                phase = .restarting(reason: reason)
                condition.broadcast()
                condition.unlock()
                oldReplies?.stop()
                failQueued(waiting, phase: .restarting(reason: reason))
                onChange(.restarting(reason: reason))
            } else {
                condition.lock()
                if case .restarting(let known) = phase { reason = known } else { reason = "its worker did not start" }
                condition.unlock()
            }
            // Count the stop and decide whether to try again.
            condition.lock()
            let now = ContinuousClock.now
            stops.append(now)
            stops.removeAll { $0 < now.advanced(by: .zero - launch.limits.restartWindow) }
            if stops.count >= launch.limits.restartLimit {
                let final = "stopped \(stops.count) times within \(Self.text(launch.limits.restartWindow)), last: \(reason)"
                phase = .failed(reason: final)
                condition.broadcast()
                condition.unlock()
                onChange(.failed(reason: final))
                return
            }
            consecutive += 1
            let backoff = Duration.milliseconds(min(5000, 50 << min(consecutive - 1, 7)))
            let wake = Date().addingTimeInterval(Double(backoff.components.seconds) + Double(backoff.components.attoseconds) / 1e18)
            while !stopped, condition.wait(until: wake) {}
            if stopped {
                condition.unlock()
                return
            }
            condition.unlock()
            do {
                let (worker, replies) = try startWorker()
                condition.lock()
                if stopped {
                    condition.unlock()
                    worker.kill()
                    _ = worker.waitForExit()
                    return
                }
                install(worker, replies: replies)
                condition.unlock()
                onChange(.serving)
                current = worker
                consecutive = 0
            } catch {
                condition.lock()
                phase = .restarting(reason: error.description)
                condition.unlock()
                current = nil
            }
        }
    }

    /// Spawns a worker, creates the instance in it and loads the remembered state; on any
    /// failure the worker is killed and reaped and the error says why.
    private func startWorker() throws(PluginHostError) -> (WorkerProcess, WorkerReplyReader) {
        let worker = try WorkerProcess.spawn(
            executable: launch.executable, libraryPath: launch.libraryPath,
            cacheDirectory: launch.cacheDirectory, limits: launch.limits)
        condition.lock()
        let restore = restoreDirectory
        starting = worker
        if stopped { worker.kill() }
        condition.unlock()
        defer {
            condition.lock()
            starting = nil
            condition.unlock()
        }
        let deadline = ContinuousClock.now.advanced(by: launch.limits.startTimeLimit)
        var buffer: [UInt8] = []
        func fail(_ step: String, _ failure: WorkerCallFailure) -> PluginHostError {
            switch failure {
            case .plugin(let error):
                worker.kill()
                _ = worker.waitForExit()
                return error
            case .broken(let broken):
                worker.kill()
                let exit = worker.waitForExit()
                switch broken {
                case .timedOut:
                    return .workerUnavailable(instance: name, reason: "its worker did not finish \(step) within \(Self.text(launch.limits.startTimeLimit)) and was killed")
                case .closed:
                    return .workerUnavailable(instance: name, reason: "its worker \(exit) during \(step)")
                case .malformed(let error):
                    return .workerUnavailable(instance: name, reason: "its worker sent a malformed reply during \(step): \(error.description.prefix(120))")
                case .system(let code):
                    return .workerUnavailable(instance: name, reason: "talking to its worker failed during \(step): \(String(cString: strerror(code)))")
                }
            }
        }
        let channel = worker.channels[0]
        var created = WireWriter(.create, capacity: launch.config.count + 4)
        created.array(launch.config)
        do throws(WorkerCallFailure) {
            var description = try WorkerCall.exchange(created.finish(), on: channel, deadline: deadline, buffer: &buffer,
                                                      expecting: .described, function: "create", instance: name)
                .description()
            if let restore {
                var load = WireWriter(.load)
                load.string(restore)
                description = try WorkerCall.exchange(load.finish(), on: channel, deadline: deadline, buffer: &buffer,
                                                      expecting: .described, function: "load", instance: name)
                    .description()
            }
            remember(description)
        } catch {
            throw fail(restore == nil ? "create" : "create and load", error)
        }
        do throws(PluginHostError) {
            return (worker, try WorkerReplyReader(process: worker, idleWake: launch.limits.callTimeLimit))
        } catch {
            worker.kill()
            _ = worker.waitForExit()
            throw error
        }
    }

    static func text(_ duration: Duration) -> String {
        let milliseconds = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        return milliseconds % 1000 == 0 ? "\(milliseconds / 1000) s" : "\(milliseconds) ms"
    }
}

/// How one exchange with a worker failed: the plugin answered with an error (the channel is
/// fine), or the channel broke (the worker is killed).
enum WorkerCallFailure: Error {
    case plugin(PluginHostError)
    case broken(WireIO.Failure)
}

/// One request and its reply on a channel.
enum WorkerCall {
    /// A reply frame: its kind and payload reader.
    struct Reply {
        var kind: WorkerFrame.Kind
        var reader: WireReader

        func description() throws(WorkerCallFailure) -> PluginDescription {
            var reader = reader
            do throws(WireError) {
                return try WorkerMessages.readDescription(&reader)
            } catch {
                throw .broken(.malformed(error))
            }
        }
    }

    /// Sends `request` and reads the reply; a `.failed` reply becomes the plugin's error,
    /// any other kind than `expecting` breaks the channel.
    static func exchange(_ request: [UInt8], on channel: Int32, deadline: ContinuousClock.Instant?,
                         buffer: inout [UInt8], expecting: WorkerFrame.Kind, function: String,
                         instance: String) throws(WorkerCallFailure) -> Reply {
        do throws(WireIO.Failure) {
            try WireIO.send(request, on: channel)
        } catch {
            throw .broken(error)
        }
        return try receiveReply(on: channel, deadline: deadline, buffer: &buffer, expecting: expecting,
                                function: function, instance: instance)
    }

    static func receiveReply(on channel: Int32, deadline: ContinuousClock.Instant?, buffer: inout [UInt8],
                             expecting: WorkerFrame.Kind, function: String,
                             instance: String) throws(WorkerCallFailure) -> Reply {
        let kind: WorkerFrame.Kind
        do throws(WireIO.Failure) {
            kind = try WireIO.receive(on: channel, deadline: deadline, buffer: &buffer)
        } catch {
            throw .broken(error)
        }
        return try interpret(kind, buffer: buffer, expecting: expecting, function: function, instance: instance)
    }

    static func interpret(_ kind: WorkerFrame.Kind, buffer: [UInt8], expecting: WorkerFrame.Kind, function: String,
                          instance: String) throws(WorkerCallFailure) -> Reply {
        var reader = WireReader(buffer, offset: WorkerFrame.headerSize)
        if kind == .failed {
            let failure: (code: Int32, message: String)
            do throws(WireError) {
                failure = try WorkerMessages.readFailure(&reader)
            } catch {
                throw .broken(.malformed(error))
            }
            throw .plugin(.plugin(code: failure.code, message: failure.message, function: function, instance: instance))
        }
        guard kind == expecting else {
            throw .broken(.malformed(WireError("a \(kind) frame where \(expecting) was expected")))
        }
        return Reply(kind: kind, reader: reader)
    }
}
