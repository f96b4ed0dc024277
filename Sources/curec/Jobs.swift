import ArgumentParser
import CURecProto
import CURecRPC
import Foundation

#if canImport(Glibc)
import Glibc
#endif

struct Jobs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Submit, list, inspect, cancel and watch jobs.",
        subcommands: [Submit.self, List.self, Get.self, Cancel.self, Watch.self])

    struct Submit: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Submit a job: curec jobs submit train library=CURecBPR config='{\"epochs\":20}' --watch",
            discussion: JobKindHelp.text)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Job kind: train, evaluate, pretrain, finetune or pipeline (see below and docs/jobs.md).") var kind: String
        @Argument(help: "Parameters as key=value.") var parameters: [String] = []
        @Flag(help: "Watch the job until it ends.") var watch = false

        func run() throws {
            var parsed: [String: String] = [:]
            for parameter in parameters {
                guard let equals = parameter.firstIndex(of: "=") else {
                    throw ValidationError("parameter '\(parameter)' is not key=value")
                }
                parsed[String(parameter[..<equals])] = String(parameter[parameter.index(after: equals)...])
            }
            let client = try global.client()
            let job: Curec_V1_Job = try CURec.run {
                try Curec_V1_JobServiceClient(client).submit(Curec_V1_SubmitJobRequest.with {
                    $0.kind = kind
                    $0.parameters = parsed
                }, timeout: global.timeout)
            }
            if global.json { printJSON(job) } else { print("submitted \(job.id) (\(job.kind))") }
            if watch { try watchJob(job.id, client: client, json: global.json) }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List jobs, newest first.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Only this state: queued, running, succeeded, failed, cancelled.") var state: String?
        @Option(help: "Only this kind.") var kind = ""
        @Option(help: "At most this many.") var limit: UInt32 = 20

        func run() throws {
            var wanted = Curec_V1_JobState.unspecified
            if let state {
                guard let value = Curec_V1_JobState(name: state) else {
                    throw ValidationError("--state must be queued, running, succeeded, failed or cancelled")
                }
                wanted = value
            }
            let client = try global.client()
            let response: Curec_V1_ListJobsResponse = try CURec.run {
                try Curec_V1_JobServiceClient(client).list(Curec_V1_ListJobsRequest.with {
                    $0.state = wanted
                    $0.kind = kind
                    $0.limit = limit
                }, timeout: global.timeout)
            }
            if global.json { response.jobs.forEach(printJSON); return }
            print(pad("ID", 24) + pad("KIND", 10) + pad("STATE", 11) + pad("PROGRESS", 16) + "ARTIFACT")
            for job in response.jobs {
                let progress = job.total > 0 ? "\(job.stage) \(job.step)/\(job.total)" : job.stage
                print(pad(job.id, 24) + pad(job.kind, 10) + pad(job.state.name, 11) + pad(progress, 16) + job.artifact)
            }
        }
    }

    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one job.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Job id.") var id: String

        func run() throws {
            let client = try global.client()
            let job: Curec_V1_Job = try CURec.run {
                try Curec_V1_JobServiceClient(client).get(Curec_V1_GetJobRequest.with { $0.id = id }, timeout: global.timeout)
            }
            if global.json { printJSON(job); return }
            print("id:        \(job.id)\nkind:      \(job.kind)\nstate:     \(job.state.name)")
            print("stage:     \(job.stage) \(job.step)/\(job.total)\nattempts:  \(job.attempts)")
            if !job.parameters.isEmpty {
                print("params:    " + job.parameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
            }
            if !job.metrics.isEmpty {
                print("metrics:   " + job.metrics.sorted { $0.key < $1.key }.map { String(format: "%@=%.4f", $0.key, $0.value) }
                    .joined(separator: " "))
            }
            if !job.artifact.isEmpty { print("artifact:  \(job.artifact)") }
            if !job.error.isEmpty { print("error:     \(job.error)") }
        }
    }

    struct Cancel: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cancel a queued or running job.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Job id.") var id: String

        func run() throws {
            let client = try global.client()
            let job: Curec_V1_Job = try CURec.run {
                try Curec_V1_JobServiceClient(client).cancel(Curec_V1_CancelJobRequest.with { $0.id = id }, timeout: global.timeout)
            }
            if global.json { printJSON(job) } else { print("cancellation requested for \(job.id)") }
        }
    }

    struct Watch: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Follow a job's progress until it ends (progress bar and ETA).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Job id.") var id: String

        func run() throws {
            try watchJob(id, client: try global.client(), json: global.json)
        }
    }
}

extension Curec_V1_JobState {
    /// The lower-case state name used in CLI output and --state.
    var name: String {
        switch self {
        case .queued: return "queued"
        case .running: return "running"
        case .succeeded: return "succeeded"
        case .failed: return "failed"
        case .cancelled: return "cancelled"
        default: return "unknown"
        }
    }

    init?(name: String) {
        switch name.lowercased() {
        case "queued": self = .queued
        case "running": self = .running
        case "succeeded": self = .succeeded
        case "failed": self = .failed
        case "cancelled": self = .cancelled
        default: return nil
        }
    }
}

/// Streams a job's events: a live progress bar with ETA on a terminal, one line per event
/// otherwise. Exits 1 if the job did not succeed.
func watchJob(_ id: String, client: RPCClient, json: Bool) throws {
    let terminal = isatty(STDOUT_FILENO) != 0 && !json
    var stageStarted: (stage: String, time: Date, step: UInt64)? = nil
    var last = Curec_V1_JobEvent()
    try CURec.run {
        try Curec_V1_JobServiceClient(client).watch(Curec_V1_WatchJobRequest.with { $0.id = id }, timeout: 0) {
            (event: Curec_V1_JobEvent) in
            last = event
            if json { printJSON(event); return }
            if !event.logLine.isEmpty {
                if terminal { print("\r\u{1B}[K", terminator: "") }
                print("[\(event.stage.isEmpty ? event.state.name : event.stage)] \(event.logLine)")
            }
            if stageStarted?.stage != event.stage { stageStarted = (event.stage, Date(), event.step) }
            guard event.total > 0 else { return }
            let fraction = min(1, Double(event.step) / Double(event.total))
            let width = 30
            let filled = Int(fraction * Double(width))
            var eta = "--:--"
            if let started = stageStarted, event.step > started.step {
                let rate = Double(event.step - started.step) / max(Date().timeIntervalSince(started.time), 1e-3)
                let seconds = Int(Double(event.total - event.step) / rate)
                eta = String(format: "%d:%02d", seconds / 60, seconds % 60)
            }
            let metrics = event.metrics.sorted { $0.key < $1.key }.prefix(2)
                .map { String(format: "%@=%.4f", $0.key, $0.value) }.joined(separator: " ")
            let bar = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
            let line = "\(bar) \(event.stage) \(event.step)/\(event.total) \(metrics) ETA \(eta)"
            if terminal {
                FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + line).utf8))
            } else {
                print(line)
            }
        }
    }
    if terminal { print("") }
    if !json {
        print("job \(id) \(last.state.name)" + (last.error.isEmpty ? "" : ": \(last.error)"))
    }
    if last.state != .succeeded { throw ExitCode(1) }
}
