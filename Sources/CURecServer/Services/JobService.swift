import CURecJobs
import CURecProto
import CURecRPC
import Foundation

/// `curec.v1.JobService` on the wire: each method forwards to ``JobOperations``.
struct JobService: Curec_V1_JobServiceHandler {
    let operations: JobOperations

    func submit(_ request: Curec_V1_SubmitJobRequest, context: ServerContext) async throws -> Curec_V1_Job {
        try operations.submit(request)
    }

    func get(_ request: Curec_V1_GetJobRequest, context: ServerContext) async throws -> Curec_V1_Job {
        try operations.get(request)
    }

    func list(_ request: Curec_V1_ListJobsRequest, context: ServerContext) async throws -> Curec_V1_ListJobsResponse {
        try operations.list(request)
    }

    func cancel(_ request: Curec_V1_CancelJobRequest, context: ServerContext) async throws -> Curec_V1_Job {
        try operations.cancel(request)
    }

    func watch(_ request: Curec_V1_WatchJobRequest, responses: ResponseWriter<Curec_V1_JobEvent>, context: ServerContext) async throws {
        try await operations.watch(request) { try await responses.send($0) }
    }
}

/// Submit, inspect, cancel and watch durable jobs.
struct JobOperations: Sendable {
    let jobs: JobManager

    /// Queues a job of `request.kind`.
    func submit(_ request: Curec_V1_SubmitJobRequest) throws -> Curec_V1_Job {
        guard !request.kind.isEmpty else {
            throw ServingError.invalidArgument("kind is empty; known kinds: \(jobs.kindNames.joined(separator: ", "))")
        }
        return Self.job(try jobs.submit(kind: request.kind, parameters: request.parameters))
    }

    func get(_ request: Curec_V1_GetJobRequest) throws -> Curec_V1_Job {
        try Self.requireID(request.id)
        return Self.job(try jobs.get(request.id))
    }

    /// The most jobs one List page holds.
    static let maximumPageSize: UInt32 = 1000

    /// One page of jobs, newest first (100 unless `page_size` says), optionally of one state
    /// and kind; `next_page_token` continues after it.
    func list(_ request: Curec_V1_ListJobsRequest) throws -> Curec_V1_ListJobsResponse {
        let pageSize = request.pageSize != 0 ? request.pageSize : request.limit
        guard pageSize <= Self.maximumPageSize else {
            throw ServingError.invalidArgument("page_size is \(pageSize); at most \(Self.maximumPageSize) (use page_token for more)")
        }
        guard request.kind.utf8.count <= 64 else { throw ServingError.invalidArgument("kind is longer than 64 bytes") }
        let after = try JobPageToken.decode(request.pageToken)
        let state: JobState?
        switch request.state {
        case .unspecified: state = nil
        case .UNRECOGNIZED(let value): throw ServingError.invalidArgument("state \(value) is not a JobState")
        default: state = Self.state(request.state)
        }
        let size = pageSize == 0 ? 100 : Int(pageSize)
        // One more than the page shows whether another page follows.
        let records = try jobs.list(state: state, kind: request.kind.isEmpty ? nil : request.kind, limit: size + 1, after: after)
        return .with {
            $0.jobs = records.prefix(size).map(Self.job)
            if records.count > size, let last = records.prefix(size).last {
                $0.nextPageToken = JobPageToken.encode(JobListPosition(createdMS: last.createdMS, id: last.id))
            }
        }
    }

    func cancel(_ request: Curec_V1_CancelJobRequest) throws -> Curec_V1_Job {
        try Self.requireID(request.id)
        return Self.job(try jobs.cancel(request.id))
    }

    /// Hands the job's events to `send` until the final one.
    func watch(_ request: Curec_V1_WatchJobRequest, send: (Curec_V1_JobEvent) async throws -> Void) async throws {
        try Self.requireID(request.id)
        let events = try jobs.watch(request.id)
        for await event in events {
            try await send(Self.event(event))
            if event.isFinal { return }
        }
        try Task.checkCancellation()
    }

    /// The longest job id accepted (the daemon's ids are about 20 characters).
    static let maximumIDLength = 128

    private static func requireID(_ id: String) throws(ServingError) {
        guard !id.isEmpty else { throw .invalidArgument("id is empty; give a job id from Submit or List") }
        guard id.utf8.count <= maximumIDLength else {
            throw .invalidArgument("id is \(id.utf8.count) bytes long; job ids are at most \(maximumIDLength) (give one from Submit or List)")
        }
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

/// The opaque `page_token` of JobService.List: where the previous page ended (creation
/// time and id), base64url-encoded.
enum JobPageToken {
    static func encode(_ position: JobListPosition) -> String {
        Data("\(position.createdMS):\(position.id)".utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// The position in `token`; nil for an empty token; INVALID_ARGUMENT for one this daemon
    /// did not hand out.
    static func decode(_ token: String) throws(JobError) -> JobListPosition? {
        guard !token.isEmpty else { return nil }
        guard token.utf8.count <= 256 else { throw .invalidPageToken }
        var base64 = token.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.utf8.count % 4) % 4)
        guard let data = Data(base64Encoded: base64), let text = String(data: data, encoding: .utf8),
              let colon = text.firstIndex(of: ":"), let created = Int64(text[..<colon]) else { throw .invalidPageToken }
        let id = String(text[text.index(after: colon)...])
        guard !id.isEmpty else { throw .invalidPageToken }
        return JobListPosition(createdMS: created, id: id)
    }
}

/// `curec.v1.ModelService` on the wire: each method forwards to ``ModelOperations``.
struct ModelService: Curec_V1_ModelServiceHandler {
    let operations: ModelOperations

    func list(_ request: Curec_V1_ListModelsRequest, context: ServerContext) async throws -> Curec_V1_ListModelsResponse {
        try operations.list(request)
    }

    func getReport(_ request: Curec_V1_GetReportRequest, context: ServerContext) async throws -> Curec_V1_GetReportResponse {
        try operations.report(request)
    }
}

/// The artifact store's models and versions, and the pipeline's reports.
struct ModelOperations: Sendable {
    let artifacts: ArtifactStore

    /// Every model with its versions and their metadata, or only `request.name`: as the model
    /// registry records them (what every daemon sharing it agrees on), else as the models
    /// directory holds them.
    func list(_ request: Curec_V1_ListModelsRequest) throws -> Curec_V1_ListModelsResponse {
        guard let registration = artifacts.registration else { return try listDirectories(request) }
        guard request.name.isEmpty || ResourceName.isValid(request.name) else {
            throw ServingError.notFound("no model named \(ResourceName.quoted(request.name))")
        }
        let recorded = try registration.registry.versions(of: request.name.isEmpty ? nil : request.name)
        if !request.name.isEmpty, recorded.isEmpty { throw ServingError.notFound("no model named '\(request.name)'") }
        var names: [String] = []
        var versions: [String: [ModelVersion]] = [:]
        for version in recorded {
            if versions[version.name] == nil { names.append(version.name) }
            versions[version.name, default: []].append(version)
        }
        return .with { response in
            response.models = names.sorted().map { name in
                .with { model in
                    model.name = name
                    model.versions = (versions[name] ?? []).map { version in
                        .with {
                            $0.version = version.label
                            var metadata = (try? ArtifactStore.manifestDecoder.decode(
                                ArtifactManifest.self, from: Data(version.manifest.utf8)))?.fields ?? [:]
                            metadata["publisher"] = version.publisher
                            metadata["serve"] = version.serve ? "true" : "false"
                            $0.metadata = metadata
                        }
                    }
                }
            }
        }
    }

    /// ``list(_:)`` from the models directory (an artifact store without a registry).
    private func listDirectories(_ request: Curec_V1_ListModelsRequest) throws(ServingError) -> Curec_V1_ListModelsResponse {
        let root = artifacts.collectionDirectory
        var names = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
        if !request.name.isEmpty {
            guard names.contains(request.name) else { throw .notFound("no model named '\(request.name)'") }
            names = [request.name]
        }
        return .with { response in
            response.models = names.map { name in
                .with { model in
                    model.name = name
                    model.versions = artifacts.versions(of: name).map { version in
                        .with {
                            $0.version = version
                            $0.metadata = artifacts.manifest(of: name, version: version)?.fields ?? [:]
                        }
                    }
                }
            }
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

    /// A report version (the newest unless `request.version` names one) with its files.
    func report(_ request: Curec_V1_GetReportRequest) throws(ServingError) -> Curec_V1_GetReportResponse {
        let name = request.name.isEmpty ? PublishedName.report.rawValue : request.name
        guard !name.contains("/"), !name.hasPrefix("."), !request.version.contains("/") else {
            throw .invalidArgument("name and version must be plain names (no '/', not starting with '.')")
        }
        let versions = artifacts.versions(of: name)
        guard let version = request.version.isEmpty ? versions.last : versions.first(where: { $0 == request.version }) else {
            if versions.isEmpty {
                throw .notFound("no report '\(name)' exists yet; a pipeline job writes one (curec jobs submit pipeline profile=quick)")
            }
            throw .notFound("report '\(name)' has no version '\(request.version)' (have \(versions.joined(separator: ", ")))")
        }
        let directory = (artifacts.directory(of: name) as NSString).appendingPathComponent(version)
        let markdownPath = (directory as NSString).appendingPathComponent("report.md")
        guard let markdown = FileManager.default.contents(atPath: markdownPath) else {
            throw .notFound("models/\(name)/\(version) is not a report (no report.md)")
        }
        var response = Curec_V1_GetReportResponse()
        response.name = name
        response.version = version
        response.markdown = String(decoding: markdown, as: UTF8.self)
        response.metadata = ArtifactStore.manifest(in: directory)?.fields ?? [:]
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
        for file in files where file != ArtifactStore.manifestFileName {
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
