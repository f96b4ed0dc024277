/// CURecPipeline: the CURec stages as plain functions with progress callbacks.
public enum CURecPipelineLibrary {
    /// Version of the pipeline's artifact layout.
    public static let formatVersion = 1
}
