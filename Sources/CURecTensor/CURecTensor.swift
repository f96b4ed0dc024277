/// CURecTensor: float32 tensors and explicit forward/backward kernels on OpenBLAS.
public enum CURecTensorLibrary {
    /// Version of the tensor library's on-disk formats.
    public static let formatVersion = 1
}
