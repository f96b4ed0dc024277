/// Maps the rows of Llama's query and key projections between GGUF order (used by this
/// engine) and Hugging Face order.
///
/// llama.cpp's converter permutes the rows of `attn_q` and `attn_k` inside every head so that
/// rotary embedding turns ADJACENT pairs `(x[2i], x[2i+1])` (ggml's normal rope, and
/// ``RotaryEmbedding``); Hugging Face checkpoints keep the original order, in which
/// `rotate_half` pairs `x[i]` with `x[i + hs/2]`. Inside a head of size `hs`, GGUF row
/// `2i + h` (`h` 0 or 1, `i < hs/2`) is Hugging Face row `h·hs/2 + i`; heads keep their
/// order, so the map depends only on the head size and is the same for query (`heads` heads)
/// and key (`kvHeads` heads) projections. Every other matrix, the value projection included,
/// has the same order in both.
///
/// Exporting a low-rank adapter of `q_proj` or `k_proj` for Hugging Face / peft: reorder the
/// rows of `lora_B` (`[out, r]`) with ``huggingFaceOrder(_:columns:headSize:)``; `lora_A`
/// (`[r, in]`) is unchanged.
public enum LlamaRowOrder {
    /// The Hugging Face row holding GGUF row `ggufRow` (`headSize` even).
    public static func huggingFaceRow(ggufRow: Int, headSize: Int) -> Int {
        let head = ggufRow / headSize, j = ggufRow % headSize
        return head * headSize + (j % 2) * (headSize / 2) + j / 2
    }

    /// The GGUF row holding Hugging Face row `huggingFaceRow` (`headSize` even); inverse of
    /// ``huggingFaceRow(ggufRow:headSize:)``.
    public static func ggufRow(huggingFaceRow: Int, headSize: Int) -> Int {
        let head = huggingFaceRow / headSize, j = huggingFaceRow % headSize
        let half = headSize / 2
        return head * headSize + 2 * (j % half) + j / half
    }

    /// The rows of `matrix` (`[rows, columns]` row-major, GGUF order) in Hugging Face order.
    public static func huggingFaceOrder(_ matrix: [Float], columns: Int, headSize: Int) throws(LlamaError) -> [Float] {
        try permuteRows(matrix, columns: columns, headSize: headSize) { ggufRow(huggingFaceRow: $0, headSize: headSize) }
    }

    /// The rows of `matrix` (`[rows, columns]` row-major, Hugging Face order) in GGUF order.
    public static func ggufOrder(_ matrix: [Float], columns: Int, headSize: Int) throws(LlamaError) -> [Float] {
        try permuteRows(matrix, columns: columns, headSize: headSize) { huggingFaceRow(ggufRow: $0, headSize: headSize) }
    }

    /// `out[r] = matrix[source(r)]` row by row.
    private static func permuteRows(_ matrix: [Float], columns: Int, headSize: Int,
                                    source: (Int) -> Int) throws(LlamaError) -> [Float] {
        guard headSize > 0, headSize % 2 == 0 else {
            throw .invalidArgument("head size must be even and positive, got \(headSize)")
        }
        guard columns > 0, matrix.count % columns == 0, (matrix.count / columns) % headSize == 0 else {
            throw .invalidArgument("a matrix of \(matrix.count) values with \(columns) columns is not a whole number of heads of \(headSize) rows")
        }
        var out = [Float](repeating: 0, count: matrix.count)
        for r in 0..<(matrix.count / columns) {
            let s = source(r)
            for c in 0..<columns { out[r * columns + c] = matrix[s * columns + c] }
        }
        return out
    }
}
