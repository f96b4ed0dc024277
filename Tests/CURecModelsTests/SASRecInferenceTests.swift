import CURecTensor
import Foundation
import Testing
@testable import CURecModels

/// The inference forward (last block on the last positions only, pooled buffers) against the
/// training forward over every position: its hidden states are the full forward's rows at
/// each window's last item.
@Suite("SASRec inference forward")
struct SASRecInferenceTests {
    /// A model with weights large enough (std ≈ 0.3) that a wrong row or a missed position
    /// shows far above float rounding.
    static func model(_ config: SASRecConfig, seed: UInt64) throws -> SASRecModel {
        let users = config.userFeatureDimension > 0
        var rng = Xoshiro256(seed: seed)
        let userFeatures = users ? (0..<(config.userCount * config.userFeatureDimension)).map { _ in rng.nextGaussian() } : nil
        let m = try SASRecModel(config: config, userFeatures: userFeatures, seed: seed)
        for i in 0..<m.layout.total { m.parameters.data[i] = rng.nextGaussian() * 0.3 }
        for b in 0..<config.blocks {
            for q in [SASRecLayout.BlockParam.ln1w, .ln2w] {
                let o = m.layout.offset(q, block: b)
                for i in 0..<config.width { m.parameters.data[o + i] = 1 + rng.nextGaussian() * 0.1 }
            }
        }
        m.refreshItemTable()
        return m
    }

    /// Windows of every length up to `maxLength` and beyond (truncated), random items.
    static func windows(count: Int, config: SASRecConfig, seed: UInt64) -> [[Int32]] {
        var rng = Xoshiro256(seed: seed)
        return (0..<count).map { r in
            let length = 1 + r % (config.maxLength + 3)
            return (0..<length).map { _ in Int32(rng.next() % UInt64(config.itemCount)) }
        }
    }

    /// The training forward over `[B, T]` (every position), returning the rows at each
    /// window's last item.
    static func fullForwardLastRows(_ m: SASRecModel, windows: [[Int32]], users: [Int32]?) -> [Float] {
        let C = m.config.width
        let truncated = windows.map { Array($0.suffix(m.config.maxLength)) }
        let B = truncated.count, T = truncated.map(\.count).max()!
        var inputs = [Int32](repeating: 0, count: B * T)
        for (b, w) in truncated.enumerated() { for (t, item) in w.enumerated() { inputs[b * T + t] = item } }
        let a = SASRecActivations(config: m.config, B: B, T: T, training: false)
        inputs.withUnsafeBufferPointer { inp in
            (users ?? []).withUnsafeBufferPointer { usr in m.forward(inputs: inp.baseAddress!, users: usr.baseAddress, a: a) }
        }
        var out = [Float](repeating: 0, count: B * C)
        for (b, w) in truncated.enumerated() {
            for i in 0..<C { out[b * C + i] = a.lnf[(b * T + w.count - 1) * C + i] }
        }
        return out
    }

    static func maxDifference(_ x: [Float], _ y: [Float]) -> Float {
        zip(x, y).map { abs($0 - $1) }.max() ?? 0
    }

    @Test("hidden states equal the full forward's last rows, batched and one window at a time",
          arguments: [
              SASRecConfig(itemCount: 31, maxLength: 9, width: 16, blocks: 2, heads: 1, hidden: 16),
              SASRecConfig(itemCount: 31, maxLength: 9, width: 16, blocks: 3, heads: 2, hidden: 24),
              SASRecConfig(itemCount: 31, maxLength: 9, width: 16, blocks: 1, heads: 4, hidden: 8),
              SASRecConfig(itemCount: 31, maxLength: 9, width: 16, blocks: 2, heads: 2, hidden: 16,
                           userCount: 5, userFeatureDimension: 3),
          ])
    func lastRowsMatchTheFullForward(config: SASRecConfig) throws {
        let m = try Self.model(config, seed: 7)
        let windows = Self.windows(count: 14, config: config, seed: 3)
        let users: [Int32]? = config.userFeatureDimension > 0 ? windows.indices.map { Int32($0 % config.userCount) } : nil
        let expected = Self.fullForwardLastRows(m, windows: windows, users: users)
        #expect(expected.contains { abs($0) > 0.5 })
        // Batched: one forward over every window, right-padded to the longest.
        let batched = try m.hiddenStates(sequences: windows, users: users)
        #expect(Self.maxDifference(batched, expected) < 1e-4)
        // One window at a time (the unbatched Score path).
        let C = config.width
        for (b, window) in windows.enumerated() {
            let single = try m.hiddenStates(sequences: [window], users: users.map { [$0[b]] })
            #expect(Self.maxDifference(single, Array(expected[(b * C)..<((b + 1) * C)])) < 1e-4)
        }
    }

    @Test("windows beyond one chunk, empty windows and reused buffers")
    func chunksEmptyWindowsAndReuse() throws {
        let config = SASRecConfig(itemCount: 23, maxLength: 6, width: 8, blocks: 2, heads: 2, hidden: 8)
        let m = try Self.model(config, seed: 9)
        var windows = Self.windows(count: SASRecModel.inferenceChunk + 5, config: config, seed: 4)
        windows[3] = []
        windows[SASRecModel.inferenceChunk + 1] = []
        let C = config.width
        let hidden = try m.hiddenStates(sequences: windows)
        #expect(hidden[(3 * C)..<(4 * C)].allSatisfy { $0 == 0 })
        #expect(hidden[((SASRecModel.inferenceChunk + 1) * C)..<((SASRecModel.inferenceChunk + 2) * C)].allSatisfy { $0 == 0 })
        let nonEmpty = windows.indices.filter { !windows[$0].isEmpty }
        let expected = Self.fullForwardLastRows(m, windows: nonEmpty.map { windows[$0] }, users: nil)
        let got = nonEmpty.flatMap { hidden[($0 * C)..<(($0 + 1) * C)] }
        #expect(Self.maxDifference(got, expected) < 1e-4)
        // Pooled buffers hold the previous call's values: a second call gives the same rows.
        #expect(try m.hiddenStates(sequences: windows) == hidden)
        let short = try m.hiddenStates(sequences: [windows[0]])
        #expect(Self.maxDifference(Array(hidden[0..<C]), short) < 1e-4)
    }

    @Test("concurrent callers each get their own rows")
    func concurrentCallers() async throws {
        let config = SASRecConfig(itemCount: 41, maxLength: 12, width: 16, blocks: 2, heads: 2, hidden: 16)
        let m = try Self.model(config, seed: 5)
        let windows = Self.windows(count: 24, config: config, seed: 6)
        let expected = try m.hiddenStates(sequences: windows)
        let C = config.width
        try await withThrowingTaskGroup(of: (Int, [Float]).self) { group in
            for (b, window) in windows.enumerated() {
                group.addTask { (b, try m.hiddenStates(sequences: [window])) }
            }
            for try await (b, row) in group {
                #expect(Self.maxDifference(row, Array(expected[(b * C)..<((b + 1) * C)])) < 1e-4)
            }
        }
    }
}
