/// Simple content features of items from their metadata: a multi-hot of genres followed by
/// a one-hot of release decade, L2-normalised. Used where no text embeddings exist yet.
public struct ContentFeatures: Sendable {
    /// Feature dimension.
    public let dimension: Int
    /// Row-major `[itemCount x dimension]`.
    public let values: [Float]

    /// Builds features for every item of `dataset`.
    public init(dataset: RecDataset) {
        let genres = Array(Set(dataset.items.flatMap(\.genres))).sorted()
        let decades = Array(Set(dataset.items.compactMap { $0.year.map { $0 / 10 } })).sorted()
        let genreIndex = Dictionary(uniqueKeysWithValues: genres.enumerated().map { ($1, $0) })
        let decadeIndex = Dictionary(uniqueKeysWithValues: decades.enumerated().map { ($1, $0) })
        let dimension = max(1, genres.count + decades.count)
        var values = [Float](repeating: 0, count: dataset.itemCount * dimension)
        for (item, info) in dataset.items.enumerated() {
            let row = item * dimension
            for genre in info.genres { if let index = genreIndex[genre] { values[row + index] = 1 } }
            if let year = info.year, let index = decadeIndex[year / 10] { values[row + genres.count + index] = 1 }
            var norm: Float = 0
            for d in 0..<dimension { norm += values[row + d] * values[row + d] }
            if norm > 0 {
                let scale = 1 / norm.squareRoot()
                for d in 0..<dimension { values[row + d] *= scale }
            }
        }
        self.dimension = dimension
        self.values = values
    }
}
