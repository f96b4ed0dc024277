import CURecJobs
import CURecPipeline
import Testing
@testable import CURecServer

/// Every size a client can ask a job for is bounded where it is declared.
@Suite struct JobBoundsTests {
    @Test func everyNumericParameterOfEveryKindHasAnUpperBound() {
        for schema in JobKindParameters.all {
            for parameter in schema.parameters {
                switch parameter.type {
                case .integer(let range), .integerList(let range):
                    // A seed is a label, not a size: any value costs the same.
                    if parameter.name.contains("seed") { continue }
                    // An isolated worker's limits (time, memory, CPU) are ceilings that only
                    // lower what a job may use; they have the bounds of the Load request's.
                    if parameter.name.hasSuffix("_limit_ms") || parameter.name.hasSuffix("_limit_mb")
                        || parameter.name.hasSuffix("_limit_seconds") { continue }
                    #expect(range.upperBound <= 1_000_000, "\(schema.kind).\(parameter.name) has no upper bound")
                case .number(let range):
                    #expect(range.upperBound.isFinite, "\(schema.kind).\(parameter.name) has no upper bound")
                default:
                    continue
                }
            }
        }
    }

    @Test func pretrainRefusesSizesThatWouldNotFitInMemory() throws {
        let schema = PretrainJob.Parameters.schema
        let defaults = try schema.parse([:])
        #expect(PretrainJob.estimatedTrainingBytes(try PretrainJob.configuration(defaults)) < PretrainJob.maximumTrainingBytes)
        let huge = try schema.parse(["width": "2048", "layers": "24", "context": "2048", "batch": "256"])
        #expect(throws: JobError.self) { try PretrainJob.configuration(huge) }
    }

    @Test func reservedNamesAreRefusedExceptToTheKindThatPublishesThem() throws {
        #expect(throws: JobError.self) { try TrainPluginJob.Parameters.schema.parse(["library": "CURecBPR", "name": "report"]) }
        #expect(throws: JobError.self) { try FinetuneJob.Parameters.schema.parse(["dataset": "d", "output": "smollm2"]) }
        #expect(throws: JobError.self) { try FinetuneJob.Parameters.schema.parse(["dataset": "d", "output": "curec-reasons"]) }
        _ = try PretrainJob.Parameters.schema.parse(["name": "lm"])
        #expect(throws: JobError.self) { try PretrainJob.Parameters.schema.parse(["name": "lm-aligned"]) }
        for name in PublishedName.allCases {
            #expect(!PublishedName.isAvailable(name.rawValue, to: nil))
        }
        #expect(ResourceName.isValid("bpr-2.v1") && !ResourceName.isValid("../x") && !ResourceName.isValid(".x"))
        #expect(!ResourceName.isValid(String(repeating: "a", count: 65)) && !ResourceName.isValid(""))
    }
}
