import CURecTensor
import CURecCollections
import Foundation

/// Chooses the next token from a logits vector: repetition penalty, temperature, top-k and
/// top-p, with the caller's random stream.
struct TokenSampler {
    let options: SamplingOptions
    let vocabularySize: Int
    /// Unnormalised probabilities, reused between draws.
    private var probabilities: [Float]

    init(options: SamplingOptions, vocabularySize: Int) {
        self.options = options
        self.vocabularySize = vocabularySize
        self.probabilities = [Float](repeating: 0, count: vocabularySize)
    }

    /// Divides positive (multiplies negative) logits of `previous` tokens by the repetition
    /// penalty; nothing when it is 1.
    func penalise(_ logits: UnsafeMutablePointer<Float>, previous: [Int]) {
        let penalty = options.repetitionPenalty
        guard penalty > 1 else { return }
        for token in Set(previous) where token >= 0 && token < vocabularySize {
            let value = logits[token]
            logits[token] = value > 0 ? value / penalty : value * penalty
        }
    }

    /// Draws one token from `logits[vocabularySize]`.
    mutating func sample(_ logits: UnsafePointer<Float>, rng: inout Xoshiro256) -> Int {
        let V = vocabularySize
        if options.temperature == 0 {
            var best = 0
            for i in 1..<V where logits[i] > logits[best] { best = i }
            return best
        }
        let invT = 1 / options.temperature
        var mx = -Float.infinity
        for i in 0..<V where logits[i] > mx { mx = logits[i] }
        var sum: Float = 0
        for i in 0..<V {
            let e = expf((logits[i] - mx) * invT)
            probabilities[i] = e
            sum += e
        }
        let filtering = (options.topK > 0 && options.topK < V) || options.topP < 1
        if !filtering {
            var u = rng.nextUniform() * sum
            for i in 0..<V {
                u -= probabilities[i]
                if u < 0 { return i }
            }
            return V - 1
        }
        // Candidates in decreasing probability: the top k through a size-k min-heap (O(V log k)),
        // or every token when only top-p is active.
        let probs = probabilities
        let k = options.topK > 0 ? min(options.topK, V) : V
        var order = k < V ? Self.topIndices(probs, count: k) : Array(0..<V)
        order.sort { probs[$0] > probs[$1] || (probs[$0] == probs[$1] && $0 < $1) }
        var keep = k
        if options.topP < 1 {
            var cum: Float = 0
            let target = options.topP * sum
            for j in 0..<keep {
                cum += probs[order[j]]
                if cum >= target { keep = j + 1; break }
            }
        }
        var total: Float = 0
        for j in 0..<keep { total += probs[order[j]] }
        var u = rng.nextUniform() * total
        for j in 0..<keep {
            u -= probs[order[j]]
            if u < 0 { return order[j] }
        }
        return order[keep - 1]
    }

    /// Indices of the `count` largest values (ties to the lower index), in no particular order.
    static func topIndices(_ values: [Float], count: Int) -> [Int] {
        // The root is the weakest kept candidate; a stronger one replaces it.
        var heap = Heap<RankedIndex>(capacity: count)
        for i in 0..<values.count {
            let candidate = RankedIndex(value: values[i], index: i)
            if heap.count < count {
                heap.insert(candidate)
            } else if let weakest = heap.min, weakest < candidate {
                heap.replaceMin(with: candidate)
            }
        }
        return heap.unordered.map(\.index)
    }
}

/// An index ranked by its value: a smaller value is weaker, and between equal values the
/// higher index is weaker (so ties keep the lower index).
private struct RankedIndex: Comparable {
    let value: Float
    let index: Int

    static func < (lhs: RankedIndex, rhs: RankedIndex) -> Bool {
        lhs.value < rhs.value || (lhs.value == rhs.value && lhs.index > rhs.index)
    }

    static func == (lhs: RankedIndex, rhs: RankedIndex) -> Bool {
        lhs.value == rhs.value && lhs.index == rhs.index
    }
}
