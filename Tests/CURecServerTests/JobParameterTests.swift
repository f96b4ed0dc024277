import CURecJobs
import CURecPluginHost
import Foundation
import CURecRPC
import Testing
@testable import CURecServer

@Suite struct JobParameterTests {
    func schema(_ kind: String) throws -> JobParameterSchema {
        try #require(JobKindParameters.all.first { $0.kind == kind })
    }

    /// The message `parameters` are refused with, or "accepted".
    func refusal(_ kind: String, _ parameters: [String: String]) throws -> String {
        do {
            _ = try schema(kind).parse(parameters)
            return "accepted"
        } catch let error as JobError {
            #expect(error.rpcError.status.code == .invalidArgument)
            return error.description
        }
    }

    @Test func everyKindIsDeclaredOnceWithDocs() throws {
        #expect(JobKindParameters.all.map(\.kind) == ["train", "evaluate", "pretrain", "finetune", "pipeline"])
        for schema in JobKindParameters.all {
            for parameter in schema.parameters {
                #expect(!parameter.doc.isEmpty, "\(schema.kind).\(parameter.name)")
                #expect(parameter.isRequired || parameter.defaultText != nil, "\(schema.kind).\(parameter.name)")
            }
        }
    }

    /// A `train` job asked for by a Load request or config entry with isolation makes its
    /// instance with that entry's worker limits, not the defaults; limits without process
    /// isolation are refused.
    @Test func trainJobsCarryTheWorkerLimitsTheyWereAskedWith() throws {
        let limits = WorkerLimits(callTimeLimit: .milliseconds(1500), memoryBytes: 512 << 20, cpuSeconds: 90)
        var parameters = TrainPluginJob.Parameters.values(for: .process(limits))
        #expect(parameters == ["isolation": "process", "call_time_limit_ms": "1500", "memory_limit_mb": "512",
                               "cpu_limit_seconds": "90"])
        parameters["library"] = "CURecBPR"
        let values = try schema("train").parse(parameters)
        #expect(TrainPluginJob.Parameters.isolation(values) == .process(limits))
        let defaults = try schema("train").parse(["library": "CURecBPR", "isolation": "process"])
        #expect(TrainPluginJob.Parameters.isolation(defaults) == .process(WorkerLimits()))
        #expect(TrainPluginJob.Parameters.values(for: .inProcess) == ["isolation": "in_process"])
        #expect(try refusal("train", ["library": "CURecBPR", "call_time_limit_ms": "0", "isolation": "process"])
                == "train: parameter 'call_time_limit_ms' must be an integer in 1...3600000, not '0'")
    }

    @Test func unknownMissingMistypedAndOutOfRangeParametersAreNamed() throws {
        #expect(try refusal("train", ["library": "CURecBPR", "epochs": "3"])
                == "train: unknown parameter 'epochs'; expected library (required), config, config_base64, name, serve, isolation, "
                + "call_time_limit_ms, memory_limit_mb, cpu_limit_seconds")
        #expect(try refusal("train", [:]).hasPrefix("train: parameter 'library' is required ("))
        #expect(try refusal("train", ["library": "CURecBPR", "serve": "maybe"])
                == "train: parameter 'serve' must be true or false, not 'maybe'")
        #expect(try refusal("train", ["library": "CURecBPR", "name": "../escape"])
                == "train: parameter 'name' must \(ResourceName.requirement), and not a name the daemon publishes "
                + "(\(PublishedName.list)), not '../escape'")
        #expect(try refusal("pretrain", ["steps": "many"])
                == "pretrain: parameter 'steps' must be an integer in 1...1000000, not 'many'")
        #expect(try refusal("pretrain", ["layers": "25"]) == "pretrain: parameter 'layers' must be an integer in 1...24, not '25'")
        #expect(try refusal("pretrain", ["seed": "-1"]) == "pretrain: parameter 'seed' must be an integer in >= 0, not '-1'")
        #expect(try refusal("evaluate", ["split": "future"]) == "evaluate: parameter 'split' must be validation or test, not 'future'")
        #expect(try refusal("evaluate", ["cutoffs": "10,x"])
                == "evaluate: parameter 'cutoffs' must be comma-separated integers in 1...1000, not '10,x'")
        #expect(try refusal("evaluate", ["cutoffs": "0"]).contains("'cutoffs'"))
        #expect(try refusal("finetune", ["dataset": "d", "output": "o", "dropout": "0.95"])
                == "finetune: parameter 'dropout' must be a number in 0...0.9, not '0.95'")
        #expect(try refusal("finetune", ["dataset": "d", "output": "o", "learning_rate": "nan"]).contains("'learning_rate' must be a number"))
        #expect(try refusal("finetune", ["dataset": "d", "output": "o", "targets": "q,attention"])
                == "finetune: parameter 'targets' must be a comma-separated list among q, k, v, o, gate, up, down, not 'q,attention'")
        #expect(try refusal("finetune", ["dataset": "d", "output": "smollm2"]).contains("parameter 'output' must be"))
        #expect(try refusal("finetune", ["dataset": "d@x", "output": "o"]).contains("parameter 'dataset' must be an uploaded dataset"))
        #expect(try refusal("finetune", ["dataset": "d", "output": "o", "method": "qlora"])
                == "finetune: parameter 'method' must be lora or full, not 'qlora'")
        #expect(try refusal("pipeline", ["stop_after": "lunch"])
                == "pipeline: parameter 'stop_after' must be one of align, content, reward, grpo, reasons, downstream, not 'lunch'")
        #expect(try refusal("pipeline", ["seeds": "1,-2"]).contains("'seeds' must be comma-separated integers in >= 0"))
    }

    @Test func clientTextInMessagesIsShort() throws {
        let long = String(repeating: "x", count: 10_000)
        let unknown = try refusal("train", [long: "1"])
        let value = try refusal("pretrain", ["steps": long])
        #expect(unknown.count < 200 && value.count < 200)
        #expect(value.hasSuffix("not '" + String(repeating: "x", count: 32) + "…'"))
    }

    @Test func valuesAreTypedWithTheirDefaults() throws {
        let train = try schema("train").parse(["library": "CURecBPR", "serve": "true", "name": ""])
        #expect(train[TrainPluginJob.Parameters.library] == "CURecBPR")
        #expect(train[TrainPluginJob.Parameters.serve] && train[TrainPluginJob.Parameters.config] == "")
        #expect(train[TrainPluginJob.Parameters.name] == nil && TrainPluginJob.modelName(train) == "bpr")

        let evaluate = try schema("evaluate").parse(["cutoffs": "5, 50"])
        #expect(evaluate[EvaluateJob.Parameters.cutoffs] == [5, 50] && evaluate[EvaluateJob.Parameters.split] == "test")
        #expect(try schema("evaluate").parse([:])[EvaluateJob.Parameters.cutoffs] == [10, 20])

        let pretrain = try PretrainJob.configuration(try schema("pretrain").parse(["steps": "50", "width": "64", "heads": "2"]))
        #expect(pretrain.steps == 50 && pretrain.warmupSteps == 5 && pretrain.width == 64 && pretrain.heads == 2)
        #expect(pretrain.layers == PretrainJob.Parameters.defaults.layers)
        #expect(throws: JobError.self) {
            try PretrainJob.configuration(try schema("pretrain").parse(["width": "100", "heads": "3"]))
        }
    }

    @Test func finetuneParametersMakeTheTrainingConfiguration() throws {
        let lora = try FinetuneJob.settings(try schema("finetune").parse([
            "dataset": "chats@v2", "output": "bot", "rank": "4", "targets": "v,q,v", "steps": "7"]))
        #expect(lora.dataset == "chats" && lora.datasetVersion == "v2" && lora.output == "bot" && lora.steps == 7)
        #expect(lora.maxLength == 512 && lora.checkpointEvery == 20)
        #expect(lora.training.learningRate == Float(FinetuneJob.Parameters.loraLearningRate))
        guard case .lora(let adapters) = lora.training.method else { Issue.record("not LoRA"); return }
        #expect(adapters.rank == 4 && adapters.alpha == 16 && adapters.dropout == 0.05)
        #expect(adapters.targets.map(\.shortName) == ["q", "v"])
        let full = try FinetuneJob.settings(try schema("finetune").parse(["dataset": "chats", "output": "bot", "method": "full"]))
        #expect(full.datasetVersion == nil && full.training.learningRate == Float(FinetuneJob.Parameters.fullLearningRate))
    }

    @Test func pipelineParametersMakeThePipelineConfiguration() throws {
        let values = try schema("pipeline").parse(["profile": "quick", "seeds": "7,8", "grpo_steps": "3", "run": "exp",
                                                   "stop_after": "grpo"])
        let config = try PipelineJob.configuration(values)
        #expect(config.profile == "quick" && config.seeds == [7, 8] && config.grpo.steps == 3)
        #expect(try PipelineJob.lastStage(values) == .grpo)
        #expect(try PipelineJob.configuration(try schema("pipeline").parse([:])).profile == "standard")
        #expect(try PipelineJob.lastStage(try schema("pipeline").parse([:])) == .report)
        #expect(throws: JobError.self) { try PipelineJob.lastStage(try schema("pipeline").parse(["stop_after": "grpo"])) }
    }
}
