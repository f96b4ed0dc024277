import Testing
import CURecModels

@Test func modelsLibraryLinks() { #expect(CURecModelsLibrary.formatVersion == 1) }
