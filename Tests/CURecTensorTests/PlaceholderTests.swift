import Testing
import CURecTensor

@Test func tensorLibraryLinks() { #expect(CURecTensorLibrary.formatVersion == 1) }
