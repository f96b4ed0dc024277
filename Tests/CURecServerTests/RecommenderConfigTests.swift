import CURecModels
import CURecPipeline
import Foundation
import Testing
@testable import CURecServer

@Suite struct RecommenderConfigTests {
    func run(config: String, items: Int, users: Int) -> RecommenderRun {
        RecommenderRun(variant: "curec", seed: 7, itemFeatures: [], itemFeatureDimension: items, userFeatures: [],
                       userFeatureDimension: users, config: config, keep: false)
    }

    @Test func aRunSetsSeedFeaturesAndLabelOnTheSharedConfig() throws {
        let data = try PluginPipelineEnvironment.recommenderConfig(
            for: run(config: #"{"epochs": 6, "patience": 3, "width": 32, "learning_rate": 0.002}"#, items: 8, users: 0))
        #expect(String(decoding: data, as: UTF8.self)
                == #"{"checkpoint_every":0,"epochs":6,"learning_rate":0.002,"patience":3,"seed":7,"use_item_features":true,"use_user_features":false,"version_label":"pipeline-curec","width":32}"#)
        let read = try JSONDecoder().decode(SASRecPluginConfig.self, from: data)
        #expect(read.width == 32 && read.seed == 7 && read.useItemFeatures == true && read.checkpointEvery == 0)
    }

    @Test func aConfigThatIsNotSASRecsIsAnError() {
        #expect(throws: PipelineError.self) { try PluginPipelineEnvironment.recommenderConfig(for: run(config: "[1]", items: 0, users: 0)) }
        #expect(throws: PipelineError.self) {
            try PluginPipelineEnvironment.recommenderConfig(for: run(config: #"{"width": "wide"}"#, items: 0, users: 0))
        }
    }
}
