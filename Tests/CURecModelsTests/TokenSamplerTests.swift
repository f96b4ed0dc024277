import Testing
@testable import CURecModels

@Suite struct TokenSamplerTests {
    /// The reference: every index sorted by value (larger first), ties to the lower index.
    private func reference(_ values: [Float], _ count: Int) -> Set<Int> {
        Set(values.indices.sorted { values[$0] > values[$1] || (values[$0] == values[$1] && $0 < $1) }.prefix(count))
    }

    @Test func topIndicesKeepsTheLargestValuesAndBreaksTiesToTheLowerIndex() {
        // Many ties: values from a small set.
        var state: UInt64 = 11
        let values: [Float] = (0..<4000).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float((state >> 33) % 23) / 4
        }
        for count in [1, 2, 5, 40, 999, 4000] {
            let top = TokenSampler.topIndices(values, count: count)
            #expect(top.count == count)
            #expect(Set(top) == reference(values, count), "count \(count)")
        }
    }
}
