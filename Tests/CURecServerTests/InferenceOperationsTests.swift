import CURecPluginHost
import CURecProto
import CURecRPC
import Foundation
import Testing
@testable import CURecServer

/// The Open Inference Protocol's functions without a transport: tensor decoding (typed and
/// raw, every refusal naming the tensor), and inference, statistics and the repository over
/// the real popularity plugin on a small dataset, checked against Score and Recommend.
@Suite(.serialized) struct InferenceOperationsTests {
    typealias Input = Inference_ModelInferRequest.InferInputTensor

    static let recommender = InferenceInputDecoder(inputs: [
        TensorSignature(name: "USER_ID", datatypes: [.bytes], shape: [1]),
        TensorSignature(name: "ITEM_IDS", datatypes: [.bytes], shape: [-1]),
        TensorSignature(name: "K", datatypes: [.int64, .int32], shape: [1]),
        TensorSignature(name: "E", datatypes: [.fp32], shape: [-1, -1]),
    ])

    static func typed(_ name: String, _ values: [String], shape: [Int64]? = nil) -> Input {
        .with {
            $0.name = name
            $0.datatype = "BYTES"
            $0.shape = shape ?? [Int64(values.count)]
            $0.contents.bytesContents = values.map { Data($0.utf8) }
        }
    }

    static func raw(_ values: [String]) -> Data {
        var data = Data()
        for value in values {
            withUnsafeBytes(of: UInt32(value.utf8.count).littleEndian) { data.append(contentsOf: $0) }
            data.append(contentsOf: Array(value.utf8))
        }
        return data
    }

    /// The message of the INVALID_ARGUMENT `body` throws, or nil when it throws another or none.
    static func invalidArgument(_ body: () throws -> Void) -> String? {
        do {
            try body()
            return nil
        } catch let error as ServingError {
            if case .invalidArgument(let message) = error { return message }
            return nil
        } catch {
            return nil
        }
    }

    @Test func typedAndRawInputsDecodeToTheSameValues() throws {
        let typed = try Self.recommender.decode(.with {
            $0.inputs = [Self.typed("USER_ID", ["u1"]), Self.typed("ITEM_IDS", ["i1", "i22", ""]),
                         .with { $0.name = "E"; $0.datatype = "FP32"; $0.shape = [2, 2]; $0.contents.fp32Contents = [1, -2, 3.5, 0] }]
        })
        var floats = Data()
        for value: Float in [1, -2, 3.5, 0] { withUnsafeBytes(of: value.bitPattern.littleEndian) { floats.append(contentsOf: $0) } }
        let raw = try Self.recommender.decode(.with {
            $0.inputs = [.with { $0.name = "USER_ID"; $0.datatype = "BYTES"; $0.shape = [1] },
                         .with { $0.name = "ITEM_IDS"; $0.datatype = "BYTES"; $0.shape = [3] },
                         .with { $0.name = "E"; $0.datatype = "FP32"; $0.shape = [2, 2] }]
            $0.rawInputContents = [Self.raw(["u1"]), Self.raw(["i1", "i22", ""]), floats]
        })
        for decoded in [typed, raw] {
            guard case .strings(let items)? = decoded["ITEM_IDS"]?.values, case .floats(let e)? = decoded["E"]?.values else {
                Issue.record("wrong value kinds")
                return
            }
            #expect(items == ["i1", "i22", ""])
            #expect(e == [1, -2, 3.5, 0] && decoded["E"]?.shape == [2, 2])
        }
        var k = Data()
        withUnsafeBytes(of: Int32(7).littleEndian) { k.append(contentsOf: $0) }
        let int32 = try Self.recommender.decode(.with {
            $0.inputs = [.with { $0.name = "K"; $0.datatype = "INT32"; $0.shape = [1] }]
            $0.rawInputContents = [k]
        })
        guard case .integers(let values)? = int32["K"]?.values else { Issue.record("K is not integers"); return }
        #expect(values == [7])
    }

    @Test func badInputsAreRefusedNamingTheTensor() {
        let cases: [(Inference_ModelInferRequest, String)] = [
            (.with { $0.inputs = [Self.typed("NOPE", ["x"])] }, "unknown input 'NOPE'"),
            (.with { $0.inputs = [Self.typed("USER_ID", ["u1"]), Self.typed("USER_ID", ["u1"])] }, "USER_ID appears more than once"),
            (.with { $0.inputs = [.with { $0.name = "K"; $0.datatype = "FP32"; $0.shape = [1]; $0.contents.fp32Contents = [1] }] }, "K has datatype"),
            (.with { $0.inputs = [Self.typed("ITEM_IDS", ["a", "b"], shape: [3])] }, "ITEM_IDS has 2 BYTES elements"),
            (.with { $0.inputs = [Self.typed("USER_ID", ["a", "b"])] }, "USER_ID has shape [2]"),
            (.with { $0.inputs = [Self.typed("ITEM_IDS", ["a"], shape: [1, 1])] }, "ITEM_IDS has 2 dimensions"),
            (.with { $0.inputs = [Self.typed("ITEM_IDS", [], shape: [-1])] }, "ITEM_IDS has a dimension of -1"),
            (.with { $0.inputs = [Self.typed("ITEM_IDS", [], shape: [Int64.max])] }, "ITEM_IDS has a dimension"),
            (.with { $0.inputs = [.with { $0.name = "E"; $0.datatype = "FP32"; $0.shape = [1 << 15, 1 << 15] }] }, "E declares more than"),
            (.with {
                $0.inputs = [.with { $0.name = "K"; $0.datatype = "INT64"; $0.shape = [1] }]
                $0.rawInputContents = [Data(count: 7)]
            }, "K has 7 raw bytes"),
            (.with {
                $0.inputs = [.with { $0.name = "ITEM_IDS"; $0.datatype = "BYTES"; $0.shape = [1] }]
                $0.rawInputContents = [Data([0xFF, 0xFF, 0xFF, 0x7F, 0x41])]
            }, "ITEM_IDS raw element 0 declares"),
            (.with {
                $0.inputs = [.with { $0.name = "ITEM_IDS"; $0.datatype = "BYTES"; $0.shape = [2] }]
                $0.rawInputContents = [Self.raw(["a"]) + Data([1, 0])]
            }, "ITEM_IDS raw element 1 has a cut length prefix"),
            (.with {
                $0.inputs = [.with { $0.name = "ITEM_IDS"; $0.datatype = "BYTES"; $0.shape = [1] }]
                $0.rawInputContents = [Self.raw(["a", "b"])]
            }, "ITEM_IDS has more raw BYTES elements"),
            (.with {
                $0.inputs = [Self.typed("USER_ID", ["u"]), .with { $0.name = "ITEM_IDS"; $0.datatype = "BYTES"; $0.shape = [1] }]
                $0.rawInputContents = [Self.raw(["u"]), Self.raw(["a"])]
            }, "USER_ID has both contents and raw_input_contents"),
            (.with {
                $0.inputs = [.with { $0.name = "USER_ID"; $0.datatype = "BYTES"; $0.shape = [1] }]
                $0.rawInputContents = [Self.raw(["u"]), Self.raw(["a"])]
            }, "raw_input_contents has 2 entries for 1 inputs"),
            (.with { $0.inputs = [.with { $0.name = "USER_ID"; $0.datatype = "BYTES"; $0.shape = [1]; $0.contents.bytesContents = [Data([0xFF])] }] },
             "USER_ID element 0 is not UTF-8"),
            (.with { $0.inputs = [Self.typed(String(repeating: "X", count: 100_000), ["x"])] }, "unknown input 'XXXX"),
        ]
        for (request, words) in cases {
            let message = Self.invalidArgument { _ = try Self.recommender.decode(request) }
            #expect(message?.contains(words) == true, "\(words): \(message ?? "no INVALID_ARGUMENT")")
            #expect((message?.count ?? 0) < 300)
        }
    }

    @Test func outputsAreRawWhenInputsWereRawOrBinaryIsAsked() {
        #expect(!InferenceOutputEncoder.wantsRaw(.with { $0.inputs = [Self.typed("USER_ID", ["u"])] }))
        #expect(InferenceOutputEncoder.wantsRaw(.with { $0.rawInputContents = [Self.raw(["u"])] }))
        #expect(InferenceOutputEncoder.wantsRaw(.with {
            $0.outputs = [.with { $0.name = "SCORES"; $0.parameters["binary_data"] = .with { $0.boolParam = true } }]
        }))
        var response = Inference_ModelInferResponse()
        InferenceOutputEncoder(raw: true).append("ITEM_IDS", strings: ["i1", "i22"], to: &response)
        InferenceOutputEncoder(raw: true).append("SCORES", floats: [1.5, -2], to: &response)
        #expect(response.rawOutputContents == [Self.raw(["i1", "i22"]), Data([0, 0, 0xC0, 0x3F, 0, 0, 0, 0xC0])])
        #expect(response.outputs.map(\.shape) == [[2], [2]] && response.outputs.allSatisfy { $0.contents == .init() })
        var typed = Inference_ModelInferResponse()
        InferenceOutputEncoder(raw: false).append("SCORES", floats: [1.5, -2], to: &typed)
        #expect(typed.outputs[0].contents.fp32Contents == [1.5, -2] && typed.rawOutputContents.isEmpty)
    }

    @Test func inferenceEqualsScoreAndRecommendAndIsCounted() async throws {
        let (plugins, host, data) = try RecommendAndPluginOperationsTests.plugins()
        defer { plugins.jobs.stop(timeout: 5) }
        let metrics = ModelMetrics.unexported()
        var recommend = RecommendOperations(data: data, plugins: host, defaultRecommender: "pop")
        recommend.metrics = metrics
        let operations = InferenceOperations(plugins: host, recommendations: recommend, rewards: nil, pluginOperations: plugins,
                                             statistics: metrics, isServing: { true })
        // Loaded and trained through the repository extension.
        _ = try await operations.repositoryModelLoad(.with {
            $0.modelName = "pop"
            $0.parameters["library"] = .with { $0.stringParam = "CURecPopularity" }
            $0.parameters["train"] = .with { $0.boolParam = true }
        })
        #expect(try operations.modelReady(.with { $0.name = "pop" }))
        #expect(try operations.modelMetadata(.with { $0.name = "pop" }).versions == ["1"])
        let items = ["i1", "i2", "i8", "i5"]
        let scores = try recommend.score(.with { $0.userID = "u2"; $0.itemIds = items; $0.plugin = "pop" }).scores
        // In process the inference is answered on the calling thread (inline on the I/O loop).
        let typed = try #require(try operations.inferUnlessWaiting(.with {
            $0.modelName = "pop"
            $0.id = "r1"
            $0.inputs = [Self.typed("USER_ID", ["u2"]), Self.typed("ITEM_IDS", items)]
        }))
        #expect(typed.id == "r1" && typed.modelVersion == "1")
        #expect(typed.outputs.map(\.name) == ["SCORES"] && typed.outputs[0].contents.fp32Contents == scores)
        let top = try recommend.rank(.with { $0.userID = "u2"; $0.k = 3; $0.plugin = "pop"; $0.excludeSeen = true })
        let raw = try await operations.infer(.with {
            $0.modelName = "pop"
            $0.inputs = [.with { $0.name = "USER_ID"; $0.datatype = "BYTES"; $0.shape = [1] },
                         .with { $0.name = "K"; $0.datatype = "INT64"; $0.shape = [1] }]
            var k = Data()
            withUnsafeBytes(of: Int64(3).littleEndian) { k.append(contentsOf: $0) }
            $0.rawInputContents = [Self.raw(["u2"]), k]
            $0.parameters["exclude_seen"] = .with { $0.boolParam = true }
        })
        #expect(raw.outputs.map(\.name) == ["ITEM_IDS", "SCORES"])
        #expect(raw.rawOutputContents.first == Self.raw(top.items.map(\.itemID)))
        // Score once, typed inference once, top-k twice (rank above and the raw inference).
        let totals = metrics.totals(model: "pop")
        #expect(totals.successCount == 4 && totals.executionCount == 4 && totals.inferenceCount == 4)
        let statistics = try operations.modelStatistics(.with { $0.name = "pop"; $0.version = "1" }).modelStats
        #expect(statistics.count == 1 && statistics[0].inferenceCount == 4 && statistics[0].executionCount == 4)
        #expect(statistics[0].inferenceStats.success.count == 4 && statistics[0].inferenceStats.computeInfer.count == 4)
        #expect(statistics[0].lastInference > 0)
        // Reload through the repository: version 2; version 1 is no longer ready.
        _ = try await operations.repositoryModelLoad(.with { $0.modelName = "pop" })
        #expect(try operations.modelReady(.with { $0.name = "pop"; $0.version = "2" }))
        #expect(try !operations.modelReady(.with { $0.name = "pop"; $0.version = "1" }))
        #expect(try operations.repositoryIndex(.init()).models.map { "\($0.name) \($0.version) \($0.state)" } == ["pop 2 READY"])
        _ = try operations.repositoryModelUnload(.with { $0.modelName = "pop" })
        #expect(try !operations.modelReady(.with { $0.name = "pop" }))
        do {
            _ = try await operations.infer(.with { $0.modelName = "pop"; $0.inputs = [Self.typed("USER_ID", ["u2"])] })
            Issue.record("an unloaded model answered")
        } catch let error as ServingError {
            guard case .notFound = error else { Issue.record("\(error)"); return }
        }
    }

    /// A model's repository state follows its instance's readiness, as its health name does.
    @Test func repositoryStateFollowsTheInstancesReadiness() {
        #expect(InferenceOperations.state(serverReady: true, readiness: .serving) == ("READY", ""))
        let restarting = InferenceOperations.state(serverReady: true, readiness: .restarting(reason: "its worker exited with status 3"))
        #expect(restarting == ("UNAVAILABLE", "its worker is restarting: its worker exited with status 3"))
        let failed = InferenceOperations.state(serverReady: true, readiness: .failed(reason: String(repeating: "x", count: 5000)))
        #expect(failed.state == "UNAVAILABLE" && failed.reason.hasPrefix("its worker is marked failed: ") && failed.reason.count < 300)
        #expect(InferenceOperations.state(serverReady: false, readiness: .serving).state == "UNAVAILABLE")
    }

    @Test func fieldNamesOfTheSharedFunctionsBecomeTensorNames() {
        #expect(InferenceOperations.renamingFields(.notFound("item_ids[3] 'x' is not an item")) == .notFound("ITEM_IDS element [3] 'x' is not an item"))
        #expect(InferenceOperations.renamingFields(.notFound("user_id 'x' is not a user")) == .notFound("USER_ID 'x' is not a user"))
        #expect(InferenceOperations.renamingFields(.notFound("triples[2].item_id 'x' is not an item")) == .notFound("ITEM_ID row 2 'x' is not an item"))
    }

    @Test func everyMethodHasTheScopeItNeeds() {
        let policy = AccessPolicy.daemon()
        let service = Inference_GRPCInferenceService.Method.self
        #expect(Inference_GRPCInferenceService.methods.allSatisfy { policy.methods[$0.path] != nil })
        #expect(policy.requirement(for: service.serverLive.descriptor) == .open)
        #expect(AccessPolicy.daemon(healthRequiresToken: true).requirement(for: service.serverReady.descriptor) == .anyToken)
        #expect(policy.requirement(for: service.modelMetadata.descriptor) == .scope(.score))
        #expect(policy.requirement(for: service.modelInfer.descriptor) == .scope(.score))
        #expect(policy.requirement(for: service.modelStatistics.descriptor) == .scope(.jobs))
        #expect(policy.requirement(for: service.repositoryIndex.descriptor) == .scope(.jobs))
        #expect(policy.requirement(for: service.repositoryModelLoad.descriptor) == .scope(.admin))
        #expect(policy.requirement(for: service.repositoryModelUnload.descriptor) == .scope(.admin))
    }
}
