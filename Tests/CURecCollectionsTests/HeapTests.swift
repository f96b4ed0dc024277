import Testing
import CURecCollections

/// A small seeded generator so every run checks the same sequences.
private struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Pops everything, in the order the heap gives it.
private func drain<Element>(_ heap: inout Heap<Element>) -> [Element] {
    var out: [Element] = []
    while let next = heap.popMin() { out.append(next) }
    return out
}

@Suite struct HeapTests {
    @Test func anEmptyHeapHasNoMinimum() {
        var heap = Heap<Int>()
        #expect(heap.isEmpty && heap.count == 0)
        #expect(heap.min == nil)
        #expect(heap.popMin() == nil)
    }

    @Test(arguments: [1, 2, 3, 7, 64, 1000])
    func insertedElementsComeOutSorted(count: Int) {
        var rng = SplitMix(state: UInt64(count))
        // Small range: many duplicates.
        let values = (0..<count).map { _ in Int.random(in: -20...20, using: &rng) }
        var heap = Heap<Int>(capacity: count)
        for value in values { heap.insert(value) }
        #expect(heap.count == count)
        #expect(heap.min == values.min())
        #expect(drain(&heap) == values.sorted())
        #expect(heap.isEmpty)
    }

    @Test(arguments: [0, 1, 2, 5, 100, 513])
    func buildingFromASequenceEqualsInsertingOneByOne(count: Int) {
        var rng = SplitMix(state: 99 + UInt64(count))
        let values = (0..<count).map { _ in Double.random(in: 0..<1, using: &rng) }
        var built = Heap(values)
        #expect(built.count == count)
        #expect(Set(built.unordered) == Set(values))
        #expect(drain(&built) == values.sorted())
    }

    @Test func interleavedInsertsAndPopsMatchASortedReference() {
        var rng = SplitMix(state: 7)
        var heap = Heap<Int>()
        var reference: [Int] = []
        for _ in 0..<5000 {
            if reference.isEmpty || Int.random(in: 0..<3, using: &rng) > 0 {
                let value = Int.random(in: 0..<500, using: &rng)
                heap.insert(value)
                reference.append(value)
            } else {
                reference.sort()
                #expect(heap.popMin() == reference.removeFirst())
            }
            #expect(heap.min == reference.min())
        }
        #expect(drain(&heap) == reference.sorted())
    }

    @Test func replaceMinKeepsTheLargestK() {
        // Top-k selection as the token sampler does it: a heap of the k best so far whose
        // root is the weakest; a better candidate replaces the root.
        var rng = SplitMix(state: 3)
        let values = (0..<2000).map { _ in Int.random(in: 0..<100_000, using: &rng) }
        let k = 37
        var heap = Heap<Int>(capacity: k)
        for value in values {
            if heap.count < k {
                heap.insert(value)
            } else if let weakest = heap.min, weakest < value {
                #expect(heap.replaceMin(with: value) == weakest)
            }
        }
        #expect(heap.unordered.sorted() == Array(values.sorted().suffix(k)))
    }

    /// An element whose `<` puts the larger priority first and, between equal priorities,
    /// the earlier sequence number: the wrapper pattern the heap's users follow.
    private struct Job: Comparable {
        let priority: Int
        let sequence: Int
        static func < (lhs: Job, rhs: Job) -> Bool {
            lhs.priority != rhs.priority ? lhs.priority > rhs.priority : lhs.sequence < rhs.sequence
        }
    }

    @Test func aWrapperOrderGivesAMaxHeapWithStableTies() {
        let jobs = [(1, 0), (5, 1), (3, 2), (5, 3), (1, 4), (5, 5)].map { Job(priority: $0.0, sequence: $0.1) }
        var heap = Heap(jobs)
        #expect(drain(&heap).map(\.sequence) == [1, 3, 5, 2, 0, 4])
    }
}
