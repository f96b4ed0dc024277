import CURecJobs
import CURecProto
import CURecRPC
import Foundation

/// `curec.v1.JobService`: submit, inspect, cancel and watch durable jobs.
struct JobService: RPCService {
    let jobs: JobManager

    func register(into router: inout RPCRouter) {
        router.registerUnary(Curec_V1_JobService.Method.submit) { request, _ in
            guard !request.kind.isEmpty else {
                throw RPCError(.invalidArgument, "kind is empty; known kinds: \(jobs.kindNames.joined(separator: ", "))")
            }
            return try Self.job(mapping { try jobs.submit(kind: request.kind, parameters: request.parameters) })
        }
        router.registerUnary(Curec_V1_JobService.Method.get) { request, _ in
            try Self.requireID(request.id)
            return try Self.job(mapping { try jobs.get(request.id) })
        }
        router.registerUnary(Curec_V1_JobService.Method.list) { request, _ in
            guard request.limit <= 10_000 else { throw RPCError(.invalidArgument, "limit is \(request.limit); at most 10000") }
            let state: JobState?
            switch request.state {
            case .unspecified: state = nil
            case .UNRECOGNIZED(let value): throw RPCError(.invalidArgument, "state \(value) is not a JobState")
            default: state = Self.state(request.state)
            }
            let records = try mapping {
                try jobs.list(state: state, kind: request.kind.isEmpty ? nil : request.kind,
                              limit: request.limit == 0 ? 100 : Int(request.limit))
            }
            return .with { $0.jobs = records.map(Self.job) }
        }
        router.registerUnary(Curec_V1_JobService.Method.cancel) { request, _ in
            try Self.requireID(request.id)
            return try Self.job(mapping { try jobs.cancel(request.id) })
        }
        router.registerServerStreaming(Curec_V1_JobService.Method.watch) { request, writer, _ in
            try Self.requireID(request.id)
            let events = try mapping { try jobs.watch(request.id) }
            for await event in events {
                try await writer.send(Self.event(event))
                if event.isFinal { return }
            }
            try Task.checkCancellation()
        }
    }

    private static func requireID(_ id: String) throws(RPCError) {
        guard !id.isEmpty else { throw RPCError(.invalidArgument, "id is empty; give a job id from Submit or List") }
    }

    static func state(_ state: JobState) -> Curec_V1_JobState {
        switch state {
        case .queued: return .queued
        case .running: return .running
        case .succeeded: return .succeeded
        case .failed: return .failed
        case .cancelled: return .cancelled
        }
    }

    static func state(_ state: Curec_V1_JobState) -> JobState? {
        switch state {
        case .queued: return .queued
        case .running: return .running
        case .succeeded: return .succeeded
        case .failed: return .failed
        case .cancelled: return .cancelled
        default: return nil
        }
    }

    static func job(_ record: JobRecord) -> Curec_V1_Job {
        .with {
            $0.id = record.id
            $0.kind = record.kind
            $0.parameters = record.parameters
            $0.state = state(record.state)
            $0.stage = record.stage
            $0.step = record.step
            $0.total = record.total
            $0.metrics = record.metrics
            $0.error = record.error
            $0.createdUnixMs = record.createdMS
            $0.startedUnixMs = record.startedMS
            $0.finishedUnixMs = record.finishedMS
            $0.attempts = UInt32(record.attempts)
            $0.artifact = record.artifact
        }
    }

    static func event(_ event: CURecJobs.JobEvent) -> Curec_V1_JobEvent {
        .with {
            $0.jobID = event.jobID
            $0.state = state(event.state)
            $0.stage = event.stage
            $0.step = event.step
            $0.total = event.total
            $0.metrics = event.metrics
            $0.logLine = event.logLine
            $0.timeUnixMs = event.timeMS
            $0.final = event.isFinal
            $0.error = event.error
        }
    }
}

/// Runs `body`, turning a ``JobError`` into the gRPC error of the same meaning.
func mapping<T>(_ body: () throws -> T) throws(RPCError) -> T {
    do {
        return try body()
    } catch let error as JobError {
        throw RPCError(StatusCode(rawValue: error.statusCode) ?? .internal, error.description)
    } catch {
        throw RPCError.from(error)
    }
}

/// `curec.v1.ModelService`: the artifact store's models and versions.
struct ModelService: RPCService {
    let artifacts: ArtifactStore

    func register(into router: inout RPCRouter) {
        router.registerUnary(Curec_V1_ModelService.Method.list) { request, _ in
            let root = (artifacts.root as NSString).appendingPathComponent("models")
            var names = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
            if !request.name.isEmpty {
                guard names.contains(request.name) else { throw RPCError(.notFound, "no model named '\(request.name)'") }
                names = [request.name]
            }
            return .with { response in
                response.models = names.map { name in
                    .with { model in
                        model.name = name
                        model.versions = artifacts.versions(of: name).map { version in
                            .with {
                                $0.version = version
                                let directory = (artifacts.directory(of: name) as NSString).appendingPathComponent(version)
                                $0.metadata = PluginPreparer.metadata(in: directory) ?? [:]
                            }
                        }
                    }
                }
            }
        }
        router.registerUnary(Curec_V1_ModelService.Method.getReport) { request, _ in
            try report(request)
        }
    }

    /// Media types of the files a report holds.
    static func mediaType(of file: String) -> String {
        switch (file as NSString).pathExtension.lowercased() {
        case "md": return "text/markdown"
        case "svg": return "image/svg+xml"
        case "png": return "image/png"
        case "json": return "application/json"
        default: return "application/octet-stream"
        }
    }

    func report(_ request: Curec_V1_GetReportRequest) throws(RPCError) -> Curec_V1_GetReportResponse {
        let name = request.name.isEmpty ? "report" : request.name
        guard !name.contains("/"), !name.hasPrefix("."), !request.version.contains("/") else {
            throw RPCError(.invalidArgument, "name and version must be plain names (no '/', not starting with '.')")
        }
        let versions = artifacts.versions(of: name)
        guard let version = request.version.isEmpty ? versions.last : versions.first(where: { $0 == request.version }) else {
            if versions.isEmpty {
                throw RPCError(.notFound, "no report '\(name)' exists yet; a pipeline job writes one (curec jobs submit pipeline profile=quick)")
            }
            throw RPCError(.notFound, "report '\(name)' has no version '\(request.version)' (have \(versions.joined(separator: ", ")))")
        }
        let directory = (artifacts.directory(of: name) as NSString).appendingPathComponent(version)
        let markdownPath = (directory as NSString).appendingPathComponent("report.md")
        guard let markdown = FileManager.default.contents(atPath: markdownPath) else {
            throw RPCError(.notFound, "models/\(name)/\(version) is not a report (no report.md)")
        }
        var response = Curec_V1_GetReportResponse()
        response.name = name
        response.version = version
        response.markdown = String(decoding: markdown, as: UTF8.self)
        response.metadata = PluginPreparer.metadata(in: directory) ?? [:]
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
        for file in files where file != "metadata.json" {
            guard let content = FileManager.default.contents(atPath: (directory as NSString).appendingPathComponent(file)) else { continue }
            response.files.append(.with {
                $0.name = file
                $0.mediaType = Self.mediaType(of: file)
                $0.content = content
            })
        }
        return response
    }
}
