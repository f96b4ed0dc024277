import CURecTensor

extension Array {
    /// Moves a uniformly drawn sample of `n` elements (without replacement) to the front, in
    /// draw order: the first `min(n, count)` steps of a Fisher-Yates shuffle, one draw each.
    mutating func shuffleRandomPrefix(_ n: Int, using generator: inout Xoshiro256) {
        for index in 0..<Swift.min(n, count) {
            swapAt(index, index + Int(generator.next() % UInt64(count - index)))
        }
    }
}
