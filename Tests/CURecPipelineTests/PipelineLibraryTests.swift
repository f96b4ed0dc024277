import Testing
import CURecPipeline

@Test func pipelineLibraryLinks() { #expect(CURecPipelineLibrary.formatVersion == 1) }
