import CURecTensor

/// CURecModels: the GPT-style language model, tokenizers and the MiniLM encoder.
public enum CURecModelsLibrary {
    /// Version of the model checkpoint conventions.
    public static let formatVersion = CURecTensorLibrary.formatVersion
}
