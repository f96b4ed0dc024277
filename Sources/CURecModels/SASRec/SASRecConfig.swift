import CURecTensor
import Foundation

/// Shape of a SASRec sequential recommender (Kang & McAuley, 2018).
///
/// Items are dense indices `0..<itemCount`. An item's embedding is its ID embedding plus,
/// when `featureDimension > 0`, its fixed feature vector projected by a learned
/// `[featureDimension, width]` matrix. When `userFeatureDimension > 0`, every user also has a
/// fixed feature vector; its projection by a learned `[userFeatureDimension, width]` matrix is
/// added to the input embedding of every position of that user's sequence.
public struct SASRecConfig: Sendable, Equatable, Codable, CustomStringConvertible {
    /// Number of items (rows of the ID embedding).
    public var itemCount: Int
    /// Longest history the model reads (`L`, rows of the position embedding).
    public var maxLength: Int
    /// Model width `C`.
    public var width: Int
    /// Number of self-attention blocks.
    public var blocks: Int
    /// Attention heads per block; must divide `width`.
    public var heads: Int
    /// Hidden width of the point-wise feed-forward network (the paper uses `width`).
    public var hidden: Int
    /// Dimension `D` of the fixed item features, 0 for an ID-only model.
    public var featureDimension: Int
    /// Number of users (rows of the user feature matrix); 0 when `userFeatureDimension == 0`.
    public var userCount: Int
    /// Dimension `Du` of the fixed user features, 0 for a model without user features.
    public var userFeatureDimension: Int

    /// A configuration; `hidden` defaults to `width`. `userCount` matters only with
    /// `userFeatureDimension > 0`.
    public init(itemCount: Int, maxLength: Int = 50, width: Int = 64, blocks: Int = 2, heads: Int = 1,
                hidden: Int? = nil, featureDimension: Int = 0, userCount: Int = 0, userFeatureDimension: Int = 0) {
        self.itemCount = itemCount
        self.maxLength = maxLength
        self.width = width
        self.blocks = blocks
        self.heads = heads
        self.hidden = hidden ?? width
        self.featureDimension = featureDimension
        self.userCount = userCount
        self.userFeatureDimension = userFeatureDimension
    }

    /// Decodes a configuration; `userCount` and `userFeatureDimension` are optional so that
    /// configurations saved before user features existed still load (as 0).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        itemCount = try c.decode(Int.self, forKey: .itemCount)
        maxLength = try c.decode(Int.self, forKey: .maxLength)
        width = try c.decode(Int.self, forKey: .width)
        blocks = try c.decode(Int.self, forKey: .blocks)
        heads = try c.decode(Int.self, forKey: .heads)
        hidden = try c.decode(Int.self, forKey: .hidden)
        featureDimension = try c.decode(Int.self, forKey: .featureDimension)
        userCount = try c.decodeIfPresent(Int.self, forKey: .userCount) ?? 0
        userFeatureDimension = try c.decodeIfPresent(Int.self, forKey: .userFeatureDimension) ?? 0
    }

    /// Checks that every dimension is in range and the heads divide the width.
    public func validate() throws(SASRecError) {
        for (name, value) in [("itemCount", itemCount), ("maxLength", maxLength), ("width", width),
                              ("blocks", blocks), ("heads", heads), ("hidden", hidden)] where value <= 0 {
            throw .invalidConfig("\(name) must be positive, got \(value)")
        }
        guard itemCount >= 2 else { throw .invalidConfig("itemCount must be at least 2, got \(itemCount)") }
        guard featureDimension >= 0 else {
            throw .invalidConfig("featureDimension must be >= 0, got \(featureDimension)")
        }
        guard userFeatureDimension >= 0, userCount >= 0 else {
            throw .invalidConfig("userCount and userFeatureDimension must be >= 0, got \(userCount) and \(userFeatureDimension)")
        }
        guard userFeatureDimension == 0 || userCount > 0 else {
            throw .invalidConfig("userCount must be positive with user features (userFeatureDimension \(userFeatureDimension))")
        }
        guard width % heads == 0 else { throw .invalidConfig("width \(width) is not divisible by heads \(heads)") }
        guard maxLength <= 4096, width <= 4096, blocks <= 64, hidden <= 16384, featureDimension <= 65536,
              userFeatureDimension <= 65536, userCount <= 1 << 31 else {
            throw .invalidConfig("a dimension is unreasonably large: \(self)")
        }
    }

    public var description: String {
        "SASRec(items: \(itemCount), maxLength: \(maxLength), width: \(width), blocks: \(blocks), heads: \(heads), hidden: \(hidden), features: \(featureDimension)\(userFeatureDimension > 0 ? ", users: \(userCount), user features: \(userFeatureDimension)" : ""))"
    }
}

/// Why a SASRec operation was refused.
public enum SASRecError: Error, Equatable, CustomStringConvertible {
    /// The model configuration is not usable.
    case invalidConfig(String)
    /// A training option is out of range.
    case invalidOption(String)
    /// There is nothing to train on (no user with two or more interactions).
    case noTrainingData(String)
    /// An item index is outside `0..<itemCount`.
    case itemOutOfRange(item: Int, itemCount: Int)
    /// The feature matrix does not have `itemCount x featureDimension` values.
    case featureShapeMismatch(expected: Int, got: Int)
    /// The user feature matrix does not have `userCount x userFeatureDimension` values.
    case userFeatureShapeMismatch(expected: Int, got: Int)
    /// A user index is outside `0..<userCount` of a model with user features.
    case userOutOfRange(user: Int, userCount: Int)
    /// A batch or sequence does not fit the model (length, shape).
    case invalidInput(String)
    /// The loss or a gradient became NaN or infinite; training stopped.
    case nonFinite(String)
    /// The caller asked training to stop.
    case cancelled
    /// Saved state could not be read or written, or belongs to another model.
    case storage(String)

    public var description: String {
        switch self {
        case .invalidConfig(let why): return "invalid SASRec config: \(why)"
        case .invalidOption(let why): return "invalid SASRec training option: \(why)"
        case .noTrainingData(let why): return "no SASRec training data: \(why)"
        case let .itemOutOfRange(item, count): return "item index \(item) is outside 0..<\(count)"
        case let .featureShapeMismatch(expected, got):
            return "item features hold \(got) values, expected itemCount x featureDimension = \(expected)"
        case let .userFeatureShapeMismatch(expected, got):
            return "user features hold \(got) values, expected userCount x userFeatureDimension = \(expected)"
        case let .userOutOfRange(user, count): return "user index \(user) is outside 0..<\(count)"
        case .invalidInput(let why): return "invalid SASRec input: \(why)"
        case .nonFinite(let why): return "SASRec training diverged: \(why)"
        case .cancelled: return "SASRec training was cancelled"
        case .storage(let why): return "SASRec storage: \(why)"
        }
    }
}

/// Offsets of the parameter tensors inside the flat parameter buffer.
///
/// Order: item ID embedding `[n, C]`, position embedding `[L, C]`, feature projection
/// `[D, C]` (absent when `D = 0`), user feature projection `[Du, C]` (absent when `Du = 0`,
/// so models without user features keep their earlier layout), then per block `ln1w[C] ln1b[C] qkvw[C,3C] qkvb[3C]
/// projw[C,C] projb[C] ln2w[C] ln2b[C] fc1w[C,H] fc1b[H] fc2w[H,C] fc2b[C]`, then the final
/// LayerNorm `lnfw[C] lnfb[C]`. Matrices use the `[in, out]` layout of ``Matmul``.
public struct SASRecLayout: Sendable, Equatable {
    public enum BlockParam: Int, CaseIterable, Sendable {
        case ln1w, ln1b, qkvw, qkvb, projw, projb, ln2w, ln2b, fc1w, fc1b, fc2w, fc2b
    }

    public let itemEmbedding: Int
    public let positionEmbedding: Int
    public let featureProjection: Int
    /// Offset of the user feature projection `Wu [Du, C]` (equal to `blockStart` when `Du = 0`).
    public let userProjection: Int
    public let blockStart: Int
    public let blockSize: Int
    public let blockOffsets: [Int]
    public let blockSizes: [Int]
    public let finalNormWeight: Int
    public let finalNormBias: Int
    public let total: Int

    public init(config c: SASRecConfig) {
        let C = c.width, H = c.hidden
        itemEmbedding = 0
        positionEmbedding = c.itemCount * C
        featureProjection = positionEmbedding + c.maxLength * C
        userProjection = featureProjection + c.featureDimension * C
        blockStart = userProjection + c.userFeatureDimension * C
        let sizes = [C, C, C * 3 * C, 3 * C, C * C, C, C, C, C * H, H, H * C, C]
        var offsets: [Int] = []
        var running = 0
        for s in sizes {
            offsets.append(running)
            running += s
        }
        blockSizes = sizes
        blockOffsets = offsets
        blockSize = running
        finalNormWeight = blockStart + c.blocks * blockSize
        finalNormBias = finalNormWeight + C
        total = finalNormBias + C
    }

    /// Offset of a block parameter.
    @inline(__always) public func offset(_ p: BlockParam, block: Int) -> Int {
        blockStart + block * blockSize + blockOffsets[p.rawValue]
    }

    /// Segments for AdamW: weight decay on matrices and embeddings, none on biases and norms.
    public func segments(config c: SASRecConfig) -> [ParameterSegment] {
        var s = [ParameterSegment(range: 0..<blockStart, decay: true)]
        for b in 0..<c.blocks {
            for p in BlockParam.allCases {
                let o = offset(p, block: b)
                let decay = p == .qkvw || p == .projw || p == .fc1w || p == .fc2w
                s.append(ParameterSegment(range: o..<(o + blockSizes[p.rawValue]), decay: decay))
            }
        }
        s.append(ParameterSegment(range: finalNormWeight..<total, decay: false))
        return s
    }
}
