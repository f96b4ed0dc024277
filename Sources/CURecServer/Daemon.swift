import CURecData
import CURecJobs
import CURecModels
import CURecPipeline
import CURecPluginHost
import CURecProto
import CURecRPC
import Foundation
import Logging
import Synchronization

/// Options of a daemon run that are not part of the configuration file.
public struct DaemonOptions: Sendable {
    /// The merged configuration (defaults, file, environment, flags).
    public var configuration = DaemonConfiguration()
    /// If set, the bound port is written here (then a newline) once the server listens.
    public var portFile: String? = nil
    /// The directory of the running executable; searched first for plugin libraries.
    public var executableDirectory: String? = nil

    /// Creates the default options.
    public init() {}
}

/// The CURec daemon: loads the dataset, brings up the configured plugins (loading saved
/// state or training on first start), serves the RPC services, and shuts down gracefully.
public final class Daemon: Sendable {
    /// The health service, so callers can change serving status.
    public let health: HealthService
    /// Holds health NOT_SERVING while the job store fails.
    private let jobStoreHealth: JobStoreHealth
    /// The plugin host.
    public let plugins: PluginHost
    /// The job manager (queue, workers, records).
    public let jobs: JobManager
    /// Every method the daemon routes (reflection's and health's included).
    public let routedMethods: [RPCMethodDescriptor]
    /// The routes the server serves, for calling handlers without a transport (fuzzing).
    let router: RPCRouter
    private let server: RPCServer
    private let recommendations: RecommendOperations?
    private let options: DaemonOptions
    private let logger: Logger
    private let artifacts: ArtifactStore
    /// The model registry every committed model version is recorded in.
    private let modelRegistry: any ModelRegistry
    /// Loads what other daemons publish to be served; nil when the registry is this daemon's alone (SQLite).
    private let modelFollower: ModelFollower?
    /// Checks tokens and the admin split; nil when neither tokens nor an admin socket are configured.
    private let authorizer: TokenAuthorizer?
    /// The metrics every part records into; nil when `metrics_listen` is empty.
    public let metrics: DaemonMetrics?
    /// The `GET /metrics` endpoint once started.
    private let metricsServer = Mutex<MetricsHTTPServer?>(nil)

    /// Creates the daemon: loads data and plugins (training what is missing), builds the
    /// services. Nothing is bound until ``start()``.
    public init(options: DaemonOptions, logger: Logger) throws {
        self.options = options
        self.logger = logger
        let configuration = options.configuration
        try configuration.validate()

        let data: ServingData?
        do {
            let dataset = try RecDataset.load(directory: configuration.dataset_dir, name: configuration.dataset_name)
            data = ServingData(dataset: dataset)
            logger.info("dataset loaded", metadata: [
                "name": "\(dataset.name)", "users": "\(dataset.userCount)", "items": "\(dataset.itemCount)",
                "interactions": "\(dataset.interactions.count)"])
        } catch {
            data = nil
            logger.error("no dataset: recommendation RPCs will fail until one is configured",
                         metadata: ["error": "\(error)"])
        }

        var searchDirectories: [String] = []
        if let executableDirectory = options.executableDirectory { searchDirectories.append(executableDirectory) }
        searchDirectories.append((configuration.data_dir as NSString).appendingPathComponent("plugins"))
        searchDirectories.append(contentsOf: configuration.plugin_dirs)
        let pluginCache = (configuration.data_dir as NSString).appendingPathComponent("plugin-cache")
        Self.removeStaleCaches(in: pluginCache, logger: logger)
        let plugins = PluginHost(
            searchDirectories: searchDirectories,
            cacheDirectory: (pluginCache as NSString).appendingPathComponent(DaemonIdentity.current.tag),
            logger: logger)
        // The model registry lives in the job store's database: shared by every daemon on
        // PostgreSQL, this daemon's own in SQLite.
        let jobStoreSettings = try configuration.jobStoreSettings(readingPassword: true)
        let modelRegistry: any ModelRegistry
        if let postgres = jobStoreSettings {
            modelRegistry = try PostgresModelRegistry(settings: postgres, logger: logger)
        } else {
            modelRegistry = try SQLiteModelRegistry(path: (configuration.data_dir as NSString).appendingPathComponent("jobs.sqlite"))
        }
        let registration = ModelRegistration(registry: modelRegistry, publisher: Self.publisherName())
        let artifacts = ArtifactStore(root: configuration.data_dir, registration: registration)
        for store in [artifacts, ArtifactStore(root: configuration.data_dir, collection: "datasets")] {
            let removed = store.removeStaleStaging()
            if removed > 0 {
                logger.notice("removed unfinished \(store.collection) versions a stop left behind", metadata: ["count": "\(removed)"])
            }
        }
        let adopted = try artifacts.recordUnregisteredVersions()
        if adopted > 0 {
            logger.notice("recorded model versions the registry did not list yet", metadata: ["count": "\(adopted)"])
        }
        let preparer = PluginPreparer(artifacts: artifacts, data: data, logger: logger)
        for spec in configuration.plugins {
            do {
                let config = try spec.configBytes()
                try plugins.load(name: spec.name, library: spec.library, config: config,
                                 isolation: try spec.pluginIsolation(), batching: spec.dynamic_batching) { instance in
                    try preparer.prepare(instance, config: config, train: spec.train_on_start ?? true)
                }
            } catch {
                logger.error("plugin not loaded", metadata: ["name": "\(spec.name)", "error": "\(error)"])
            }
        }

        // The reason-aware recommender a pipeline left behind serves again after a restart.
        if !configuration.plugins.contains(where: { $0.name == Self.reasonAwareRecommender }), !configuration.plugins.isEmpty {
            do {
                if let served = try ReasonAwareRecommender.serveLatest(name: Self.reasonAwareRecommender, plugins: plugins,
                                                                       artifacts: artifacts) {
                    logger.info("serving '\(Self.reasonAwareRecommender)' from \(served)")
                }
            } catch {
                logger.error("the reason-aware recommender could not be loaded", metadata: ["error": "\(error)"])
            }
        }

        // With a shared registry, what other daemons publish to be served is loaded here too.
        let modelFollower = modelRegistry.sharedByDaemons
            ? ModelFollower(registration: registration, artifacts: artifacts, plugins: plugins, logger: logger) : nil
        modelFollower?.adoptServing()
        self.modelFollower = modelFollower
        self.modelRegistry = modelRegistry

        let metrics = configuration.metrics_listen.isEmpty ? nil : DaemonMetrics()
        self.metrics = metrics
        let health = HealthService()
        var router = RPCRouter()
        router.register(health)
        if configuration.enable_interop_testing {
            router.register(InteropTestService())
        }
        let chatModels = ChatModelStore(basePath: configuration.resolvedLMPath, artifacts: artifacts,
                                        weights: configuration.resolvedLMWeights ?? .quantized)
        let generationPool = GenerationPool(workers: configuration.generation_workers,
                                            queueLimit: configuration.generation_queue_limit)
        var recommendations: RecommendOperations? = nil
        var reasons: ReasonGenerator? = nil
        var servingCorpus: CorpusBuilder? = nil
        if let data {
            do {
                // Prompts as the pipeline aligned its models on them (history length included).
                var corpusConfiguration = CorpusConfiguration()
                corpusConfiguration.historyShown = PipelineConfig.standard.historyShown
                let corpus = try CorpusBuilder(dataset: data.dataset, split: data.split, configuration: corpusConfiguration)
                servingCorpus = corpus
                let verifier = ReasonVerifier(dataset: data.dataset)
                let cutoffs = data.split.trainTimesByUser.map { $0.last }
                reasons = ReasonGenerator(
                    models: LanguageModelStore(artifacts: artifacts),
                    prompt: { user, item in corpus.pairPrompt(user: Int32(bitPattern: user), item: Int32(bitPattern: item)) },
                    check: { user, item, reason in
                        verifier.filterSentences(reason, context: ReasonContext(
                            user: Int32(bitPattern: user), item: Int32(bitPattern: item), cutoff: cutoffs[Int(user)])).text
                    },
                    chatModels: chatModels)
            } catch {
                logger.error("reason generation is unavailable", metadata: ["error": "\(error)"])
            }
        }
        var rewards: RewardOperations? = nil
        var reasonStreaming: ReasonStreaming? = nil
        // Per-model totals are kept even when metrics are not exported: ModelStatistics reads them.
        let modelMetrics = metrics?.models ?? ModelMetrics.unexported()
        if let data {
            var operations = RecommendOperations(data: data, plugins: plugins, defaultRecommender: configuration.default_recommender)
            operations.reasons = reasons
            operations.generationPool = generationPool
            operations.metrics = modelMetrics
            if let reasons {
                var pairReasons = PairReasons(generator: reasons, chatModels: chatModels,
                                              cache: PairReasonCache(capacity: configuration.pair_reason_cache_size))
                pairReasons.pool = generationPool
                operations.pairReasons = pairReasons
            }
            operations.reasonTables = ReasonTableStore(artifacts: artifacts, datasetName: data.dataset.name)
            recommendations = operations
            var rewardOperations = RewardOperations(data: data, plugins: plugins, defaultRewardModel: configuration.default_reward_model)
            rewardOperations.metrics = modelMetrics
            if let corpus = servingCorpus {
                rewardOperations.reasonReward = ServingReasonReward(data: data, corpus: corpus, plugins: plugins,
                                                                    miniLMDirectory: configuration.resolvedMiniLMDirectory)
            }
            rewards = rewardOperations
            reasonStreaming = reasons.map { ReasonStreaming(data: data, generator: $0, pool: generationPool) }
        }
        // Every service is routed whatever the configuration: what a missing dataset or model
        // makes unavailable fails with FAILED_PRECONDITION, so UNIMPLEMENTED always means the
        // daemon does not have the method at all.
        router.register(RecommendService(operations: recommendations))
        router.register(RewardService(operations: rewards))
        let datasets = DatasetStore(dataDirectory: configuration.data_dir,
                                    maxUploadBytes: configuration.dataset_upload_max_bytes)
        var jobLimits = JobManager.Limits()
        jobLimits.workerCount = configuration.job_workers
        jobLimits.queueCapacity = configuration.job_queue_capacity
        jobLimits.retention = configuration.job_retention_days > 0 ? TimeInterval(configuration.job_retention_days) * 86_400 : nil
        jobLimits.crashLimit = configuration.job_crash_limit
        let sampleLogger = SampleRecommendationLogger()
        jobLimits.leaseDuration = configuration.job_lease_seconds
        let jobStore: any JobStore
        if let postgres = jobStoreSettings {
            logger.info("job store: PostgreSQL", metadata: ["url": "\(postgres.redacted)"])
            jobStore = try PostgresJobStore(settings: postgres, logger: logger)
        } else {
            jobStore = try SQLiteJobStore(path: (configuration.data_dir as NSString).appendingPathComponent("jobs.sqlite"))
        }
        let jobs = try JobManager(
            store: jobStore,
            jobsDirectory: (configuration.data_dir as NSString).appendingPathComponent("jobs"),
            kinds: [
                TrainPluginJob(plugins: plugins, data: data, artifacts: artifacts, preparer: preparer),
                EvaluateJob(plugins: plugins, data: data, defaultRecommender: configuration.default_recommender),
                PretrainJob(data: data, artifacts: artifacts),
                FinetuneJob(datasets: datasets, artifacts: artifacts, basePath: configuration.resolvedLMPath),
                PipelineJob(data: data, plugins: plugins, artifacts: artifacts,
                            miniLMDirectory: configuration.resolvedMiniLMDirectory, chatModelPath: configuration.resolvedLMPath,
                            servedName: Self.reasonAwareRecommender,
                            onFinished: { sampleLogger.log(); sampleLogger.logTuned() }),
            ],
            limits: jobLimits, logger: logger)
        router.register(JobService(operations: JobOperations(jobs: jobs)))
        // A job state that cannot be stored makes the daemon unhealthy rather than forgetful,
        // until the store answers again.
        let jobStoreHealth = JobStoreHealth(health: health)
        self.jobStoreHealth = jobStoreHealth
        jobs.onStorageFailure { [logger] reason in
            logger.critical("job storage is failing; health turns NOT_SERVING", metadata: ["reason": "\(reason)"])
            jobStoreHealth.storeFailed()
        }
        jobs.onStorageRecovered { [logger] in
            logger.notice("job storage answers again; health returns to what it was")
            jobStoreHealth.storeAnswered()
        }
        if let metrics { jobs.onJobEnded { metrics.jobEnded($0) } }
        var pluginOperations = PluginOperations(plugins: plugins, preparer: preparer, jobs: jobs)
        pluginOperations.follower = modelFollower
        router.register(PluginService(operations: pluginOperations))
        router.register(ModelService(operations: ModelOperations(artifacts: artifacts)))
        router.register(GenerationService(reasons: reasonStreaming,
                                          text: TextGeneration(models: chatModels, pool: generationPool,
                                                               metrics: metrics?.generation)))
        router.register(DatasetService(operations: DatasetOperations(datasets: datasets)))
        router.register(InferenceService(operations: InferenceOperations(
            plugins: plugins, recommendations: recommendations, rewards: rewards, pluginOperations: pluginOperations,
            statistics: modelMetrics, isServing: { health.status(of: "") == .serving })))
        for service in router.serviceNames { health.setStatus(.serving, for: service) }
        if data == nil {
            // Routed, but every call would fail until a dataset is configured.
            for service in [Curec_V1_RecommendService.name, Curec_V1_RewardService.name, Inference_GRPCInferenceService.name] {
                health.setStatus(.notServing, for: service)
            }
        }
        // Each plugin instance's readiness as health service `plugin/<name>`: NOT_SERVING while
        // an isolated instance's worker is down or failed, or after it is unloaded.
        plugins.observeReadiness { name, readiness in
            health.setStatus(readiness.isServing ? .serving : .notServing, for: Self.healthName(ofPlugin: name))
        }
        let reflection = try ReflectionService(
            descriptorSets: [ReflectionService.standardDescriptorSet, Self.curecDescriptorSet],
            methods: router.methods)
        router.register(reflection)
        self.routedMethods = router.methods
        self.router = router
        self.health = health
        self.plugins = plugins
        self.recommendations = recommendations
        self.jobs = jobs
        var serverConfiguration = try configuration.serverConfiguration()
        serverConfiguration.callObserver = metrics?.calls
        var authorizer: TokenAuthorizer? = nil
        if !configuration.tokens.isEmpty || !configuration.admin_socket.isEmpty {
            authorizer = TokenAuthorizer(
                policy: .daemon(healthRequiresToken: configuration.health_requires_token),
                tokens: try TokenTable(configuration.tokens), requireTokens: !configuration.tokens.isEmpty,
                adminSocketPath: configuration.admin_socket.isEmpty ? nil : configuration.admin_socket)
            serverConfiguration.security.authorizer = authorizer
        }
        self.authorizer = authorizer
        if configuration.isInsecurelyExposed {
            logger.warning("INSECURE: listening on \(configuration.listen), not a loopback address, without TLS and tokens: anyone who can connect may load plugins (run code) and use every method (see docs/security.md)")
        }
        self.server = try RPCServer(configuration: serverConfiguration, router: router, logger: logger)
        self.artifacts = artifacts
        let sampleAction: @Sendable () -> Void = { [weak self] in self?.logSampleRecommendations() }
        sampleLogger.action.withLock { $0 = sampleAction }
        let tunedAction: @Sendable () -> Void = { [weak self] in self?.logPairReasonSample(model: PipelineJob.tunedChatModel) }
        sampleLogger.tunedAction.withLock { $0 = tunedAction }
    }

    /// This daemon's name as a model publisher: host, process id and a random part.
    static func publisherName() -> String {
        "\(JobManager.hostName())/\(getpid())/\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
    }

    /// Removes the plugin-library copies of daemons that are no longer running:
    /// `plugin-cache/<host>+<pid>` left by an exited process of this host or an earlier process
    /// with this daemon's id, and `plugin-cache/<pid>` (the older layout) of an exited process.
    /// Other hosts' copies on a shared data directory are kept. Call before this daemon makes its own.
    static func removeStaleCaches(in directory: String, logger: Logger) {
        let me = DaemonIdentity.current
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            let maker: DaemonIdentity
            if let tagged = DaemonIdentity(tagPrefixOf: Substring(entry)), tagged.tag == entry {
                maker = tagged
            } else if let pid = Int32(entry), pid > 0, pid != me.pid {
                maker = DaemonIdentity(host: me.host, pid: pid)
            } else {
                continue
            }
            guard me.findsLeftover(from: maker) else { continue }
            try? FileManager.default.removeItem(atPath: (directory as NSString).appendingPathComponent(entry))
            logger.debug("removed a stale plugin cache", metadata: ["owner": "\(entry)"])
        }
    }

    /// Replaces the bearer tokens in effect with those of `configuration` (SIGHUP). Tokens
    /// are only checked when some were configured at start; a reload cannot turn checking
    /// off (an empty list refuses every token).
    public func reloadTokens(from configuration: DaemonConfiguration) throws(ConfigurationError) {
        let table = try TokenTable(configuration.tokens)
        guard let authorizer, !options.configuration.tokens.isEmpty else {
            if !configuration.tokens.isEmpty {
                logger.warning("tokens were added to the configuration, but token checks are set up at start only: restart curecd to require them")
            }
            return
        }
        let count = authorizer.reload(table)
        logger.notice("reloaded bearer tokens", metadata: ["tokens": "\(count)"])
    }

    /// Instance name of the SASRec recommender with CURec reason features the pipeline serves.
    public static let reasonAwareRecommender = PublishedName.reasonAwareRecommender.rawValue

    /// Submits the first-start pipeline when it is enabled, the dataset and MiniLM are
    /// present, no report exists yet and no pipeline job was ever submitted, by this daemon or
    /// any other sharing the job store (checked and submitted in one transaction, so daemons
    /// started at the same moment submit one).
    private func submitFirstStartPipeline() {
        let configuration = options.configuration
        guard configuration.pipeline_on_start != "off", recommendations != nil else { return }
        guard artifacts.latest(of: PublishedName.report.rawValue) == nil else { return }
        do {
            guard let record = try jobs.submitIfFirstOfKind(
                kind: "pipeline", parameters: ["profile": configuration.pipeline_on_start]) else { return }
            logger.info("first start: submitted the \(configuration.pipeline_on_start) CURec pipeline as job \(record.id); follow it with `curec jobs watch \(record.id)`")
            DispatchQueue.global(qos: .utility).async { [weak self] in
                self?.logPairReasonSample(model: ChatModelStore.baseName)
            }
        } catch {
            logger.notice("first start: the CURec pipeline was not submitted", metadata: ["reason": "\(error)"])
        }
    }

    static var curecDescriptorSet: Data {
        Data(base64Encoded: curecDescriptorSetBase64, options: .ignoreUnknownCharacters) ?? Data()
    }

    /// Binds and starts serving; returns the bound port and writes the port file if asked.
    @discardableResult
    public func start() throws -> Int {
        let port = try server.start()
        try startMetricsEndpoint()
        jobs.start()
        // As often as job leases are renewed: the safety net for announcements a lost
        // connection missed.
        modelFollower?.start(checkEvery: max(1, options.configuration.job_lease_seconds / 3))
        if let portFile = options.portFile {
            let temporary = portFile + ".tmp"
            try "\(port)\n".write(toFile: temporary, atomically: false, encoding: .utf8)
            guard rename(temporary, portFile) == 0 else {
                throw RPCServerError.system("rename(\(temporary), \(portFile))", errno)
            }
        }
        logSampleRecommendations()
        submitFirstStartPipeline()
        return port
    }

    /// Logs what the daemon recommends to the dataset's first user, so a newcomer sees it doing
    /// its job right away: by the reason-aware recommender with table reasons once the
    /// pipeline has run, else by the default recommender.
    private func logSampleRecommendations() {
        guard let recommendations, let user = recommendations.data.dataset.users.first else { return }
        var request = Curec_V1_RecommendRequest()
        request.userID = user.externalID
        request.k = 5
        request.excludeSeen = true
        if plugins.instance(named: Self.reasonAwareRecommender) != nil { request.plugin = Self.reasonAwareRecommender }
        do {
            var response = try recommendations.rank(request)
            try recommendations.reasonTables?.latest()?.attach(to: &response, data: recommendations.data)
            var lines = ["sample: top 5 for user \(user.externalID) by \(response.servedBy):"]
            for (rank, item) in response.items.enumerated() {
                lines.append("  \(rank + 1). \(item.title) (\(item.itemID))" + (item.reason.isEmpty ? "" : " - \(item.reason)"))
            }
            logger.info("\(lines.joined(separator: "\n"))")
        } catch {
            logger.info("no sample recommendations yet", metadata: ["reason": "\(error)"])
        }
    }

    /// User 1's top 5, each with a pair reason written through the serving path
    /// (``PairReasons``: the corpus pair prompt, the pipeline's reason writer, the verifier's
    /// sentence filter, regenerations): on first start, while the pipeline runs, by the
    /// untuned base `smollm2`; after a pipeline, by its tuned `curec-reasons`, for the items of
    /// the reason-aware recommender. Blocking: call it off the I/O loop.
    private func logPairReasonSample(model name: String) {
        guard let recommendations, let pairReasons = recommendations.pairReasons,
              let user = recommendations.data.dataset.users.first,
              let userIndex = recommendations.data.dataset.userIndex(user.externalID) else { return }
        do {
            let (model, version) = try pairReasons.resolveModel(name)
            var request = Curec_V1_RecommendRequest()
            request.userID = user.externalID
            request.k = 5
            request.excludeSeen = true
            if plugins.instance(named: Self.reasonAwareRecommender) != nil { request.plugin = Self.reasonAwareRecommender }
            let response = try recommendations.rank(request)
            let items = response.items.compactMap { recommendations.data.dataset.itemIndex($0.itemID) }.map { UInt32(bitPattern: $0) }
            let texts = try pairReasons.write(user: UInt32(bitPattern: userIndex), items: items, name: model, version: version)
            let tuned = model == ChatModelStore.baseName ? "untuned, claim-checked" : "claim-checked"
            var lines = ["sample: top 5 for user \(user.externalID) by \(response.servedBy), pair reasons by \(version) (\(tuned)):"]
            for (rank, item) in response.items.enumerated() {
                let reason = rank < texts.count && !texts[rank].isEmpty ? texts[rank] : "(every sentence failed the claim check)"
                lines.append("  \(rank + 1). \(item.title) (\(item.itemID)) - \(reason)")
            }
            logger.info("\(lines.joined(separator: "\n"))")
        } catch {
            logger.info("no sample pair reasons from \(name)", metadata: ["reason": "\(error)"])
        }
    }

    /// The port of the metrics endpoint, once started (nil when it is off).
    public var metricsPort: Int? { metricsServer.withLock { $0?.port } }

    /// Serves `GET /metrics` on `metrics_listen` when it is set.
    private func startMetricsEndpoint() throws {
        let configuration = options.configuration
        guard let metrics, !configuration.metrics_listen.isEmpty else { return }
        let address = try RPCServerConfiguration.parseListenAddress(configuration.metrics_listen)
        let server = self.server
        let jobs = self.jobs
        let plugins = self.plugins
        let sources = ScrapeSources(
            openConnections: { server.openConnectionCount },
            jobCounts: { (try? jobs.countsByKindAndState()) ?? [:] },
            pluginGenerations: { plugins.list().map { ($0.name, $0.generation) } })
        let endpoint = try MetricsHTTPServer(host: address.host, port: address.port, logger: logger) {
            metrics.exposition(sources)
        }
        metricsServer.withLock { $0 = endpoint }
        logger.info("serving metrics", metadata: ["address": "\(address.host):\(endpoint.port)", "path": "/metrics"])
        if !DaemonConfiguration.isLoopback(host: address.host) {
            logger.notice("the metrics endpoint is not on a loopback address: anyone who can connect reads it (plain HTTP, no token)")
        }
    }

    /// The health service name of a plugin instance's readiness.
    public static func healthName(ofPlugin name: String) -> String { "plugin/\(name)" }

    /// Starts graceful shutdown (the drain on SIGTERM): health turns NOT_SERVING for every
    /// service (load balancers stop sending), GOAWAY is sent and new connections are
    /// refused, calls in flight get `drain_timeout_seconds` to finish; meanwhile the job
    /// workers stop claiming, and a running job checkpoints at its next step and is released
    /// as `queued` (a pause, not a crash), so another daemon sharing the store resumes it at
    /// once, or this one at its next start. Returns once the workers ended or the drain
    /// timeout passed.
    public func beginShutdown() {
        metricsServer.withLock { $0 }?.stop()
        modelFollower?.stop()
        jobStoreHealth.shutdownBegan()
        health.markAllNotServing()
        server.beginGracefulShutdown()
        jobs.stop(timeout: options.configuration.drain_timeout_seconds)
    }

    /// Blocks until the server has stopped and the job workers have ended (at most
    /// `jobTimeout` for those, by default the drain timeout and 5 s more); false when a job
    /// was still running then. The process must not exit normally with a job running: exit
    /// handlers (OpenBLAS's among them) would wait on the threads it uses.
    @discardableResult
    public func waitUntilStopped(jobTimeout: TimeInterval? = nil) -> Bool {
        server.waitUntilStopped()
        let stopped = jobs.waitUntilStopped(timeout: jobTimeout ?? options.configuration.drain_timeout_seconds + 5)
        modelRegistry.close()
        return stopped
    }
}

/// Lets a job ask the daemon to log sample recommendations once it has been built (the job
/// kinds are created before the daemon exists).
final class SampleRecommendationLogger: Sendable {
    let action = Mutex<(@Sendable () -> Void)?>(nil)
    let tunedAction = Mutex<(@Sendable () -> Void)?>(nil)

    func log() {
        let action = self.action.withLock { $0 }
        action?()
    }

    func logTuned() {
        let action = self.tunedAction.withLock { $0 }
        action?()
    }
}
