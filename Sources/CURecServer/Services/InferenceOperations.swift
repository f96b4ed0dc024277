import CURecPluginHost
import CURecProto
import Foundation

/// The Open Inference Protocol over the daemon's plugin instances, transport-free: each
/// loaded instance is a model whose one ready version is its generation.
///
/// Inference goes through the same functions as curec.v1: a recommender's scores through
/// ``RecommendOperations/score(_:)``, its top-k through ``RecommendOperations/rank(_:)``, a
/// reward model's rewards through ``RewardOperations/score(_:)``, so whatever those do
/// (metrics, batching of the instance) applies to both protocols. docs/inference-protocol.md
/// describes the models' tensors.
struct InferenceOperations: Sendable {
    let plugins: PluginHost
    /// Nil without a dataset: inference then fails with FAILED_PRECONDITION.
    let recommendations: RecommendOperations?
    let rewards: RewardOperations?
    /// Loading and unloading, with PluginService's rules.
    let pluginOperations: PluginOperations
    /// The per-model totals ModelStatistics reports (the same ones `/metrics` exports).
    let statistics: ModelMetrics
    /// Whether the daemon serves (false once it drains).
    let isServing: @Sendable () -> Bool

    static let serverName = "curecd"
    static let serverVersion = "1"
    static let extensions = ["model_repository", "statistics"]

    // MARK: Server and model state

    func serverReady() -> Bool { isServing() && recommendations != nil }

    func serverMetadata() -> Inference_ServerMetadataResponse {
        .with {
            $0.name = Self.serverName
            $0.version = Self.serverVersion
            $0.extensions = Self.extensions
        }
    }

    /// The instance serving `name` at `version` (empty: the newest, i.e. the loaded generation).
    func model(_ name: String, version: String, field: String = "name") throws(ServingError) -> PluginInstance {
        guard !name.isEmpty else { throw .invalidArgument("\(field) is empty; name a model (see RepositoryIndex)") }
        guard let instance = plugins.instance(named: name) else {
            throw .notFound("model \(ResourceName.quoted(name)) is not loaded (see RepositoryIndex)")
        }
        guard version.isEmpty || version == String(instance.generation) else {
            throw .notFound("model \(name) has no ready version \(ResourceName.quoted(version)); its ready version is \(instance.generation)")
        }
        return instance
    }

    /// Whether the model serves: the daemon does, the version is the loaded one, and the
    /// instance takes calls (an isolated one is not ready while its worker is down or failed,
    /// as its health service name `plugin/<name>` says).
    func modelReady(_ request: Inference_ModelReadyRequest) throws(ServingError) -> Bool {
        guard !request.name.isEmpty else { throw .invalidArgument("name is empty; name a model (see RepositoryIndex)") }
        guard serverReady(), let instance = plugins.instance(named: request.name) else { return false }
        guard request.version.isEmpty || request.version == String(instance.generation) else { return false }
        return instance.readiness.isServing
    }

    func modelMetadata(_ request: Inference_ModelMetadataRequest) throws(ServingError) -> Inference_ModelMetadataResponse {
        let instance = try model(request.name, version: request.version)
        let signature = ModelSignature.of(instance)
        return .with {
            $0.name = instance.name
            $0.versions = [String(instance.generation)]
            $0.platform = signature.platform
            $0.inputs = signature.inputs.map(Self.metadata)
            $0.outputs = signature.outputs.map(Self.metadata)
        }
    }

    static func metadata(_ tensor: TensorSignature) -> Inference_ModelMetadataResponse.TensorMetadata {
        .with {
            $0.name = tensor.name
            $0.datatype = tensor.datatypes[0].rawValue
            $0.shape = tensor.shape
        }
    }

    // MARK: Inference

    /// One inference answered on the calling thread, or nil when it would wait: the model
    /// runs in a worker process (the call then goes through ``infer(_:)``, which suspends).
    /// Never blocks: plugin scoring in process is required to be fast, as for Score.
    func inferUnlessWaiting(_ request: Inference_ModelInferRequest) throws -> Inference_ModelInferResponse? {
        let instance = try model(request.modelName, version: request.modelVersion, field: "model_name")
        guard !instance.callsWaitOnAnotherProcess else { return nil }
        var inference = try prepare(request, instance: instance)
        let answer: Answer
        do {
            switch inference.work {
            case .score(let score): answer = .scores(try inference.recommendations().score(score))
            case .rank(let rank): answer = .ranked(try inference.recommendations().rank(rank))
            case .reward(let reward): answer = .rewards(try inference.rewards().score(reward))
            }
        } catch let error as ServingError {
            throw Self.renamingFields(error)
        }
        return inference.finish(answer)
    }

    /// One inference; suspends while an isolated model's worker computes.
    func infer(_ request: Inference_ModelInferRequest) async throws -> Inference_ModelInferResponse {
        let instance = try model(request.modelName, version: request.modelVersion, field: "model_name")
        var inference = try prepare(request, instance: instance)
        let answer: Answer
        do {
            switch inference.work {
            case .score(let score): answer = .scores(try await inference.recommendations().score(score, deadline: nil))
            case .rank(let rank): answer = .ranked(try await inference.recommendations().rank(rank, deadline: nil))
            case .reward(let reward): answer = .rewards(try await inference.rewards().scoreSuspending(reward))
            }
        } catch let error as ServingError {
            throw Self.renamingFields(error)
        }
        return inference.finish(answer)
    }

    /// One inference request checked and turned into the curec.v1 call that answers it.
    private struct Inference {
        enum Work {
            /// Scores of the input ITEM_IDS.
            case score(Curec_V1_ScoreRequest)
            /// The top K.
            case rank(Curec_V1_RecommendRequest)
            /// Rewards of (USER_ID, ITEM_ID, REASON_EMBEDDING) rows.
            case reward(Curec_V1_RewardRequest)
        }

        var work: Work
        var requested: [String]
        var encoder: InferenceOutputEncoder
        var response: Inference_ModelInferResponse
        var generation: UInt64
        let recommendations: () throws -> RecommendOperations
        let rewards: () throws -> RewardOperations

        /// The response with the answer's tensors.
        mutating func finish(_ answer: Answer) -> Inference_ModelInferResponse {
            let servedBy: String
            switch answer {
            case .scores(let scores):
                encoder.append(ModelSignature.scores, floats: scores.scores, to: &response)
                servedBy = scores.servedBy
            case .ranked(let ranked):
                for output in requested.isEmpty ? [ModelSignature.itemIDs, ModelSignature.scores] : requested {
                    if output == ModelSignature.itemIDs {
                        encoder.append(output, strings: ranked.items.map(\.itemID), to: &response)
                    } else {
                        encoder.append(output, floats: ranked.items.map(\.score), to: &response)
                    }
                }
                servedBy = ranked.servedBy
            case .rewards(let rewards):
                encoder.append(ModelSignature.rewards, floats: rewards.rewards, to: &response)
                servedBy = rewards.servedBy
            }
            response.modelVersion = servedBy.split(separator: "#").last.map(String.init) ?? String(generation)
            return response
        }
    }

    /// What answered an inference.
    private enum Answer {
        case scores(Curec_V1_ScoreResponse)
        case ranked(Curec_V1_RecommendResponse)
        case rewards(Curec_V1_RewardResponse)
    }

    /// Decodes and checks `request` for `instance` and says which call answers it.
    private func prepare(_ request: Inference_ModelInferRequest, instance: PluginInstance) throws -> Inference {
        let signature = ModelSignature.of(instance)
        let inputs = try InferenceInputDecoder(inputs: signature.inputs).decode(request)
        let requested = try requestedOutputs(request, signature: signature)
        let encoder = InferenceOutputEncoder(raw: InferenceOutputEncoder.wantsRaw(request))
        var response = Inference_ModelInferResponse()
        response.modelName = instance.name
        response.id = request.id
        let work: Inference.Work
        do {
            switch instance.kind {
            case .recommender:
                work = try recommendation(instance.name, inputs: inputs, request: request, requested: requested)
            case .rewardModel:
                work = try reward(instance, inputs: inputs)
            }
        } catch let error as ServingError {
            throw Self.renamingFields(error)
        }
        let recommendations = self.recommendations, rewards = self.rewards
        return Inference(work: work, requested: requested, encoder: encoder, response: response,
                         generation: instance.generation,
                         recommendations: { try ServingError.requireDataset(recommendations) },
                         rewards: { try ServingError.requireDataset(rewards) })
    }

    /// The outputs to answer, in the order the request names them (all, when it names none).
    func requestedOutputs(_ request: Inference_ModelInferRequest, signature: ModelSignature) throws(ServingError) -> [String] {
        guard !request.outputs.isEmpty else { return [] }
        var names: [String] = []
        for output in request.outputs {
            guard signature.outputs.contains(where: { $0.name == output.name }) else {
                throw .invalidArgument("unknown output \(ResourceName.quoted(output.name)); this model gives \(signature.outputs.map(\.name).joined(separator: ", "))")
            }
            guard !names.contains(output.name) else { throw .invalidArgument("output \(output.name) is requested more than once") }
            names.append(output.name)
        }
        return names
    }

    /// Scores (ITEM_IDS given) or top-k (K given), as RecommendService's requests.
    private func recommendation(_ name: String, inputs: [String: DecodedTensor], request: Inference_ModelInferRequest,
                                requested: [String]) throws -> Inference.Work {
        _ = try ServingError.requireDataset(self.recommendations)
        guard case .strings(let users)? = inputs[ModelSignature.userID]?.values, users.count == 1 else {
            throw ServingError.invalidArgument("input USER_ID is missing; give one user id, BYTES [1]")
        }
        let items = inputs[ModelSignature.itemIDs]
        let k = inputs[ModelSignature.k]
        switch (items?.values, k?.values) {
        case (.strings(let itemIDs)?, nil):
            if requested.contains(ModelSignature.itemIDs) {
                throw ServingError.invalidArgument("output ITEM_IDS is given for top-k only (input K); scoring answers SCORES in the order of the input ITEM_IDS")
            }
            var score = Curec_V1_ScoreRequest()
            score.userID = users[0]
            score.itemIds = itemIDs
            score.plugin = name
            return .score(score)
        case (nil, .integers(let values)?):
            var rank = Curec_V1_RecommendRequest()
            rank.userID = users[0]
            guard let first = values.first, (1...1000).contains(first) else {
                throw ServingError.invalidArgument("input K is \(values.first ?? 0); it must be between 1 and 1000")
            }
            rank.k = Int32(first)
            rank.plugin = name
            if let parameter = request.parameters["exclude_seen"] {
                guard case .boolParam(let exclude)? = parameter.parameterChoice else {
                    throw ServingError.invalidArgument("parameter exclude_seen must be a bool")
                }
                rank.excludeSeen = exclude
            }
            return .rank(rank)
        case (nil, nil):
            throw ServingError.invalidArgument("give input ITEM_IDS (BYTES [n], to score them) or K (INT64 [1], for the top k)")
        default:
            throw ServingError.invalidArgument("give input ITEM_IDS or K, not both")
        }
    }

    /// Rewards of (USER_ID, ITEM_ID, REASON_EMBEDDING) rows, as RewardService's request.
    private func reward(_ instance: PluginInstance, inputs: [String: DecodedTensor]) throws -> Inference.Work {
        _ = try ServingError.requireDataset(self.rewards)
        guard case .strings(let users)? = inputs[ModelSignature.userID]?.values else {
            throw ServingError.invalidArgument("input USER_ID is missing; give BYTES [n]")
        }
        guard case .strings(let items)? = inputs[ModelSignature.itemID]?.values else {
            throw ServingError.invalidArgument("input ITEM_ID is missing; give BYTES [n]")
        }
        guard let embeddings = inputs[ModelSignature.reasonEmbedding], case .floats(let values) = embeddings.values else {
            throw ServingError.invalidArgument("input REASON_EMBEDDING is missing; give FP32 [n, d]")
        }
        guard items.count == users.count, embeddings.shape[0] == users.count else {
            throw ServingError.invalidArgument(
                "inputs USER_ID, ITEM_ID and REASON_EMBEDDING have \(users.count), \(items.count) and \(embeddings.shape[0]) rows; give the same n")
        }
        let dimension = embeddings.shape[1]
        let expected = instance.knownDescription.reasonEmbeddingDimension
        if expected > 0 && dimension != expected {
            throw ServingError.invalidArgument("input REASON_EMBEDDING has \(dimension) columns; model \(instance.name) expects \(expected)")
        }
        var score = Curec_V1_RewardRequest()
        score.plugin = instance.name
        score.triples = users.indices.map { row in
            .with {
                $0.userID = users[row]
                $0.itemID = items[row]
                $0.reasonEmbedding = Array(values[(row * dimension)..<((row + 1) * dimension)])
            }
        }
        return .reward(score)
    }

    /// The curec.v1 field names in the messages of the shared functions, as tensor names.
    static func renamingFields(_ error: ServingError) -> ServingError {
        let renames: [(String, String)] = [
            ("item_ids is", "input ITEM_IDS is"), ("item_ids has", "input ITEM_IDS has"), ("item_ids[", "ITEM_IDS element ["),
            ("user_id", "USER_ID"), ("k is", "input K is"),
            ("triples has", "the inputs have"),
        ]
        func rename(_ message: String) -> String {
            for (old, new) in renames where message.hasPrefix(old) { return new + message.dropFirst(old.count) }
            if message.hasPrefix("triples["), let dot = message.firstIndex(of: ".") {
                let row = message[message.index(message.startIndex, offsetBy: 8)..<message.index(before: dot)]
                let rest = message[message.index(after: dot)...]
                for (field, tensor) in [("user_id", "USER_ID"), ("item_id", "ITEM_ID"), ("reason_embedding", "REASON_EMBEDDING")]
                where rest.hasPrefix(field) {
                    return "\(tensor) row \(row)" + rest.dropFirst(field.count)
                }
            }
            return message
        }
        switch error {
        case .invalidArgument(let message): return .invalidArgument(rename(message))
        case .notFound(let message): return .notFound(rename(message))
        default: return error
        }
    }

    // MARK: Statistics

    func modelStatistics(_ request: Inference_ModelStatisticsRequest) throws(ServingError) -> Inference_ModelStatisticsResponse {
        let instances: [PluginInstance]
        if request.name.isEmpty {
            guard request.version.isEmpty else { throw .invalidArgument("version is set without a name; name the model too") }
            instances = plugins.list().compactMap { plugins.instance(named: $0.name) }
        } else {
            instances = [try model(request.name, version: request.version)]
        }
        return .with { response in
            response.modelStats = instances.map { instance in
                let totals = statistics.totals(model: instance.name)
                return .with {
                    $0.name = instance.name
                    $0.version = String(instance.generation)
                    $0.lastInference = totals.lastRequestMilliseconds
                    $0.inferenceCount = totals.inferenceCount
                    $0.executionCount = totals.executionCount
                    $0.inferenceStats = .with {
                        $0.success = Self.duration(totals.successCount, totals.successNanoseconds)
                        $0.fail = Self.duration(totals.failureCount, totals.failureNanoseconds)
                        $0.queue = Self.duration(totals.queueCount, totals.queueNanoseconds)
                        $0.computeInfer = Self.duration(totals.executionCount, totals.computeNanoseconds)
                        $0.computeInput = Self.duration(0, 0)
                        $0.computeOutput = Self.duration(0, 0)
                    }
                }
            }
        }
    }

    static func duration(_ count: UInt64, _ nanoseconds: UInt64) -> Inference_StatisticDuration {
        .with {
            $0.count = count
            $0.ns = nanoseconds
        }
    }

    // MARK: Repository

    static func checkRepository(_ name: String) throws(ServingError) {
        guard name.isEmpty else {
            throw .notFound("repository \(ResourceName.quoted(name)) does not exist; the daemon has one, named by an empty repository_name")
        }
    }

    func repositoryIndex(_ request: Inference_RepositoryIndexRequest) throws(ServingError) -> Inference_RepositoryIndexResponse {
        try Self.checkRepository(request.repositoryName)
        let ready = serverReady()
        return .with { response in
            response.models = plugins.list().compactMap { status -> Inference_RepositoryIndexResponse.ModelIndex? in
                let (state, reason) = Self.state(serverReady: ready, readiness: status.readiness)
                if request.ready && state != "READY" { return nil }
                return .with {
                    $0.name = status.name
                    $0.version = String(status.generation)
                    $0.state = state
                    $0.reason = reason
                }
            }
        }
    }

    /// A model's repository state and its reason: READY when the daemon and the instance
    /// serve, UNAVAILABLE while the daemon cannot or the instance's worker is down or failed.
    static func state(serverReady: Bool, readiness: PluginReadiness) -> (state: String, reason: String) {
        guard serverReady else { return ("UNAVAILABLE", "the daemon has no dataset or is shutting down") }
        switch readiness {
        case .serving: return ("READY", "")
        case .restarting(let reason): return ("UNAVAILABLE", "its worker is restarting: \(reason.prefix(200))")
        case .failed(let reason): return ("UNAVAILABLE", "its worker is marked failed: \(reason.prefix(200))")
        }
    }

    /// Loads `model_name` from the plugin file named by parameter `library` (a file name in
    /// the operator's plugin directories, never a path), or reloads it when it is loaded.
    func repositoryModelLoad(_ request: Inference_RepositoryModelLoadRequest) async throws -> Inference_RepositoryModelLoadResponse {
        try Self.checkRepository(request.repositoryName)
        var library = ""
        var config: Data? = nil
        var train = false
        for (key, parameter) in request.parameters.sorted(by: { $0.key < $1.key }) {
            switch (key, parameter.parameterChoice) {
            case ("library", .stringParam(let value)?): library = value
            case ("config", .stringParam(let value)?): config = Data(value.utf8)
            case ("config", .bytesParam(let value)?): config = value
            case ("train", .boolParam(let value)?): train = value
            case ("library", _), ("config", _), ("train", _):
                throw ServingError.invalidArgument("parameter \(key) has the wrong type; library: string, config: string or bytes, train: bool")
            default:
                throw ServingError.invalidArgument("unknown parameter \(ResourceName.quoted(key)); known: library, config, train")
            }
        }
        guard !request.modelName.isEmpty else { throw ServingError.invalidArgument("model_name is empty; name the model to load") }
        if plugins.instance(named: request.modelName) != nil {
            _ = try await pluginOperations.reload(.with {
                $0.name = request.modelName
                $0.library = library
                if let config { $0.config = config }
            })
        } else {
            guard !library.isEmpty else {
                throw ServingError.invalidArgument(
                    "model \(ResourceName.quoted(request.modelName)) is not loaded; give parameter library, a plugin file name from PluginService.List")
            }
            _ = try await pluginOperations.load(.with {
                $0.name = request.modelName
                $0.library = library
                if let config { $0.config = config }
                $0.train = train
            })
        }
        return Inference_RepositoryModelLoadResponse()
    }

    func repositoryModelUnload(_ request: Inference_RepositoryModelUnloadRequest) throws -> Inference_RepositoryModelUnloadResponse {
        try Self.checkRepository(request.repositoryName)
        for (key, parameter) in request.parameters {
            guard key == "unload_dependents", case .boolParam(_)? = parameter.parameterChoice else {
                throw ServingError.invalidArgument("unknown parameter \(ResourceName.quoted(key)); known: unload_dependents (bool; no model has dependents)")
            }
        }
        guard !request.modelName.isEmpty else { throw ServingError.invalidArgument("model_name is empty; name the model to unload") }
        guard ResourceName.isValid(request.modelName) else {
            throw ServingError.invalidArgument("model_name \(ResourceName.quoted(request.modelName)) must \(ResourceName.requirement)")
        }
        _ = try pluginOperations.unload(.with { $0.name = request.modelName })
        return Inference_RepositoryModelUnloadResponse()
    }
}

/// The tensors a plugin instance takes and gives as a model.
struct ModelSignature: Sendable {
    static let userID = "USER_ID"
    static let itemIDs = "ITEM_IDS"
    static let itemID = "ITEM_ID"
    static let k = "K"
    static let scores = "SCORES"
    static let reasonEmbedding = "REASON_EMBEDDING"
    static let rewards = "REWARDS"

    let platform: String
    let inputs: [TensorSignature]
    let outputs: [TensorSignature]

    /// The signature of `instance`'s kind.
    static func of(_ instance: PluginInstance) -> ModelSignature {
        instance.kind == .recommender ? recommender : rewardModel
    }

    static let recommender = ModelSignature(
        platform: "curec_recommender",
        inputs: [
            TensorSignature(name: userID, datatypes: [.bytes], shape: [1]),
            TensorSignature(name: itemIDs, datatypes: [.bytes], shape: [-1]),
            TensorSignature(name: k, datatypes: [.int64, .int32], shape: [1]),
        ],
        outputs: [
            TensorSignature(name: scores, datatypes: [.fp32], shape: [-1]),
            TensorSignature(name: itemIDs, datatypes: [.bytes], shape: [-1]),
        ])

    static let rewardModel = ModelSignature(
        platform: "curec_reward_model",
        inputs: [
            TensorSignature(name: userID, datatypes: [.bytes], shape: [-1]),
            TensorSignature(name: itemID, datatypes: [.bytes], shape: [-1]),
            TensorSignature(name: reasonEmbedding, datatypes: [.fp32], shape: [-1, -1]),
        ],
        outputs: [TensorSignature(name: rewards, datatypes: [.fp32], shape: [-1])])
}
