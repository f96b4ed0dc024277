import Dispatch
import Foundation
import Logging
import SwiftProtobuf
import Synchronization
@testable import CURecRPC
@testable import CURecServer

// Input layout: byte 0 picks a method among every method the daemon routes (so a method
// added to a .proto and registered is fuzzed without edits here), byte 1 how many times a
// streaming-request method receives the message, the rest is the request message.
//
// The handler runs as the connection runs it, without a transport: the request is decoded,
// validated and served by a daemon on a scratch data directory with a small dataset (no
// plugins or models, job workers not started), and its response drained. The call must end with a
// status, and a response body only on OK.
//
// Every method runs, PluginService Load and Reload included: a library name is resolved only
// inside the daemon's plugin directories, and here those are empty scratch folders, so no
// fuzzed name can make the daemon open, copy or run a file.

private let scratchDirectory = FileManager.default.temporaryDirectory
    .appendingPathComponent("curec-fuzz-requests-\(getpid())").path

/// The daemon's plugin directories: its own under the data directory and one more, both
/// created empty.
private let emptyPluginDirectories: [String] = {
    let directories = [(scratchDirectory as NSString).appendingPathComponent("plugins"),
                       (scratchDirectory as NSString).appendingPathComponent("plugin-dir")]
    for directory in directories {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            fatalError("cannot create the fuzzing plugin directory \(directory): \(error)")
        }
    }
    return directories
}()

/// Writes a small dataset in RecBole's atomic format: users "1"..."12", items "1"..."20"
/// (titles, years, genres), seven interactions per user, so requests are validated against
/// real ids (user and item lookups, history, splits) as they are with MovieLens.
private func writeDataset(in directory: String) -> String {
    let datasetDirectory = (directory as NSString).appendingPathComponent("tiny")
    let genres = ["Action", "Comedy", "Drama", "Animation Children's", "Thriller Crime"]
    var items = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    for item in 1...20 { items += "\(item)\tFilm \(item)\t\(1980 + item)\t\(genres[item % genres.count])\n" }
    var interactions = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    for user in 1...12 {
        for step in 0..<7 {
            let item = (user * 3 + step * 5) % 20 + 1
            interactions += "\(user)\t\(item)\t\(1 + (user + step) % 5)\t\(880_000_000 + user * 1000 + step)\n"
        }
    }
    do {
        try FileManager.default.createDirectory(atPath: datasetDirectory, withIntermediateDirectories: true)
        try items.write(toFile: (datasetDirectory as NSString).appendingPathComponent("tiny.item"), atomically: true, encoding: .utf8)
        try interactions.write(toFile: (datasetDirectory as NSString).appendingPathComponent("tiny.inter"),
                               atomically: true, encoding: .utf8)
    } catch {
        fatalError("cannot write the fuzzing dataset: \(error)")
    }
    return datasetDirectory
}

private let daemon: Daemon = {
    var options = DaemonOptions()
    options.configuration.data_dir = scratchDirectory
    options.configuration.dataset_dir = writeDataset(in: scratchDirectory)
    options.configuration.dataset_name = "tiny"
    options.configuration.plugins = []
    options.configuration.plugin_dirs = Array(emptyPluginDirectories.dropFirst())
    options.configuration.pipeline_on_start = "off"
    options.configuration.listen = "127.0.0.1:0"
    options.configuration.enable_interop_testing = true
    options.configuration.lm_path = (scratchDirectory as NSString).appendingPathComponent("no-model.gguf")
    options.configuration.minilm_dir = (scratchDirectory as NSString).appendingPathComponent("no-minilm")
    options.executableDirectory = nil
    do {
        return try Daemon(options: options, logger: Logger(label: "fuzz-requests", factory: { _ in SwiftLogNoOpLogHandler() }))
    } catch {
        fatalError("the daemon does not start on an empty data directory: \(error)")
    }
}()

private let routes: [Route] = {
    // Nothing in the plugin directories a fuzzed Load could open (checked, not assumed).
    let directories = daemon.plugins.searchDirectories
    guard directories.allSatisfy({ emptyPluginDirectories.contains($0) }),
          directories.allSatisfy({ (try? FileManager.default.contentsOfDirectory(atPath: $0))?.isEmpty == true }) else {
        fatalError("the fuzzing daemon's plugin directories are not the empty scratch folders: \(directories)")
    }
    return daemon.router.methods.compactMap { daemon.router.route(for: $0.path) }
}()

/// Wakes the fuzzing thread whenever the handler queued output or ended, and tells it when
/// the handler's task has returned.
private final class Signals: Sendable {
    let wake = DispatchSemaphore(value: 0)
    let handlerReturned = DispatchSemaphore(value: 0)
}

/// A response delivered once through a responder, from any thread, awaited by the call's task.
private final class AsyncAnswer: Sendable {
    private let state = Mutex<(result: Result<[UInt8], any Error>?, waiter: CheckedContinuation<[UInt8], any Error>?)>((nil, nil))

    func resolve(_ result: Result<[UInt8], any Error>) {
        let waiter = state.withLock { state -> CheckedContinuation<[UInt8], any Error>? in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(with: result)
    }

    func value() async throws -> [UInt8] {
        try await withCheckedThrowingContinuation { continuation in
            let ready = state.withLock { state -> Result<[UInt8], any Error>? in
                if let result = state.result { return result }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}

/// How long a call may run before its deadline ends it, as `grpc-timeout` would. Methods
/// that stream until the client leaves (Health/Watch, the interop streams) end this way.
private let callDeadlineMilliseconds = 250
/// How long a handler may keep running after its call was ended by the deadline.
private let stopGrace: DispatchTimeInterval = .seconds(5)

/// Runs `route` on `messages` and drains its response; returns the final status.
private func call(_ route: Route, messages: [[UInt8]]) -> (RPCStatus, responseBytes: Int) {
    let signals = Signals()
    let channel = CallChannel(wakeLoop: { signals.wake.signal() })
    let deadline = ContinuousClock.now.advanced(by: .milliseconds(callDeadlineMilliseconds))
    let context = ServerContext(path: route.method.path, requestMetadata: Metadata(), deadline: deadline, channel: channel)
    let request = messages.first ?? []
    @Sendable func end(_ error: any Error) {
        let (status, trailers) = HTTP2Connection.status(for: error)
        channel.finish(status, trailingMetadata: trailers)
    }
    // As the connection starts handlers (HTTP2Connection.startHandler), plus a signal when done.
    func start(_ body: @escaping @Sendable () async throws -> Void) {
        channel.attach(task: Task {
            do {
                try await body()
                channel.finish(.ok)
            } catch { end(error) }
            signals.handlerReturned.signal()
        })
    }
    switch route.handler {
    case .inlineUnary(let handler, let deferred):
        // Inline, or as a task when the handler declines (as the connection runs it).
        start {
            if let response = try handler(request, context) {
                try await channel.send(framed: MessageFramer.frame(response))
            } else if let deferred {
                try await channel.send(framed: MessageFramer.frame(try await deferred(request, context)))
            } else {
                throw RPCError(.internal, "the handler gave no response")
            }
        }
    case .inlineUnaryAnswering(let handler, let deferred):
        // Answered now, later through the responder (from any thread), or as a task.
        start {
            let answer = AsyncAnswer()
            switch try handler(request, context, { answer.resolve($0) }) {
            case .now(let response):
                try await channel.send(framed: MessageFramer.frame(response))
            case .later:
                try await channel.send(framed: MessageFramer.frame(try await answer.value()))
            case .declined:
                try await channel.send(framed: MessageFramer.frame(try await deferred(request, context)))
            }
        }
    case .unary(let handler):
        start { try await channel.send(framed: MessageFramer.frame(try await handler(request, context))) }
    case .serverStreaming(let handler):
        start { try await handler(request, context) }
    case .streamingRequests(let handler):
        for message in messages { channel.deliver(message) }
        channel.finishInbound()
        start { try await handler(context) }
    }
    // Drain as the loop does: clear the wake flag, pull everything queued, until the end;
    // past the deadline, abort the call as the connection's deadline timer does.
    let expiry = DispatchTime.now() + .milliseconds(callDeadlineMilliseconds)
    var scratch = [UInt8](repeating: 0, count: 64 * 1024)
    var responseBytes = 0
    var ended = false
    while !ended {
        if signals.wake.wait(timeout: expiry) == .timedOut {
            channel.abort(with: RPCStatus(code: .deadlineExceeded, message: "the call's deadline passed"))
        }
        _ = channel.takeOutboundSnapshot()
        pulling: while true {
            let pulled = scratch.withUnsafeMutableBufferPointer { channel.pull(into: $0.baseAddress!, capacity: $0.count) }
            switch pulled {
            case .copied(let count): responseBytes += count
            case .wouldBlock: break pulling
            case .endOfData:
                ended = true
                break pulling
            }
        }
    }
    // Work stops when its caller goes: the handler must return soon after the call ended.
    if signals.handlerReturned.wait(timeout: .now() + stopGrace) == .timedOut {
        fatalError("\(route.method.path) kept running \(stopGrace) after its call ended")
    }
    return (channel.trailers().0, responseBytes)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequests(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2, !routes.isEmpty else { return 0 }
    let input = UnsafeBufferPointer(start: data, count: size)
    let route = routes[Int(input[0]) % routes.count]
    let message = Array(input[2...])
    let copies = route.kind == .clientStreaming || route.kind == .bidirectionalStreaming ? Int(input[1] % 4) : 1
    let (status, responseBytes) = call(route, messages: Array(repeating: message, count: copies))
    precondition(status.code == .ok || responseBytes == 0 || route.kind != .unary,
                 "\(route.method.path) failed with \(status.code) after sending a response")
    precondition(status.code != .ok || route.kind != .unary || responseBytes >= 5,
                 "\(route.method.path) succeeded without a response message")
    return 0
}
