import Foundation

/// One user-item interaction, with dense indices.
public struct Interaction: Sendable, Hashable {
    /// Dense user index (0..<userCount).
    public var user: Int32
    /// Dense item index (0..<itemCount).
    public var item: Int32
    /// The rating, or 1 when the file has none.
    public var rating: Float
    /// Seconds since the epoch, or the row number when the file has no timestamp.
    public var timestamp: Int64

    public init(user: Int32, item: Int32, rating: Float, timestamp: Int64) {
        self.user = user
        self.item = item
        self.rating = rating
        self.timestamp = timestamp
    }
}

/// Metadata of one item, from the `.item` file (fields absent there are empty).
public struct ItemInfo: Sendable, Hashable {
    /// The dataset's own id (a token of the files).
    public var externalID: String
    public var title: String
    public var year: Int?
    /// Genre or class tokens.
    public var genres: [String]
}

/// Profile of one user, from the `.user` file (fields absent there are empty).
public struct UserInfo: Sendable, Hashable {
    public var externalID: String
    public var age: Int?
    public var gender: String
    public var occupation: String
}

/// A recommendation dataset: users, items, their metadata and timestamped interactions, with
/// the dataset's ids mapped to dense indices.
public struct RecDataset: Sendable {
    /// The dataset name (file prefix), e.g. `ml-100k`.
    public let name: String
    public let users: [UserInfo]
    public let items: [ItemInfo]
    public let interactions: [Interaction]
    private let userIndexByID: [String: Int32]
    private let itemIndexByID: [String: Int32]

    public var userCount: Int { users.count }
    public var itemCount: Int { items.count }

    /// The dense index of a user id, if known.
    public func userIndex(_ externalID: String) -> Int32? {
        NumericIDTable.lookup(externalID, in: userNumericIndex) ?? userIndexByID[externalID]
    }
    /// The dense index of an item id, if known.
    public func itemIndex(_ externalID: String) -> Int32? {
        NumericIDTable.lookup(externalID, in: itemNumericIndex) ?? itemIndexByID[externalID]
    }

    /// Index by numeric value for ids that are canonical small decimal numbers (-1: none).
    private let userNumericIndex: [Int32]
    private let itemNumericIndex: [Int32]

    /// Column names of the atomic files.
    public struct Columns: Sendable {
        public var user = "user_id", item = "item_id", rating = "rating", timestamp = "timestamp"
        public var title = "movie_title", year = "release_year", genres = "class"
        public var age = "age", gender = "gender", occupation = "occupation"
        public init() {}
    }

    /// Loads `<directory>/<name>.inter` and, when present, `.item` and `.user`.
    ///
    /// Users and items are indexed in order of first appearance: the `.user`/`.item` files
    /// first, then any ids seen only in interactions.
    public static func load(directory: String, name: String, columns: Columns = Columns()) throws(DatasetError) -> RecDataset {
        let base = (directory as NSString).appendingPathComponent(name)
        let interFile = try AtomicFile.read(path: base + ".inter")
        var users: [UserInfo] = []
        var items: [ItemInfo] = []
        var userIndex: [String: Int32] = [:]
        var itemIndex: [String: Int32] = [:]

        if FileManager.default.fileExists(atPath: base + ".item") {
            let file = try AtomicFile.read(path: base + ".item")
            let idColumn = try file.column(columns.item)
            let titleColumn = file.columnNames.firstIndex(of: columns.title)
            let yearColumn = file.columnNames.firstIndex(of: columns.year)
            let genreColumn = file.columnNames.firstIndex(of: columns.genres)
            for row in file.rows {
                let id = String(row[idColumn])
                guard itemIndex[id] == nil else { continue }
                itemIndex[id] = Int32(items.count)
                items.append(ItemInfo(
                    externalID: id,
                    title: titleColumn.map { String(row[$0]) } ?? id,
                    year: yearColumn.flatMap { Int(row[$0]) },
                    genres: genreColumn.map { row[$0].split(separator: " ").map(String.init) } ?? []))
            }
        }
        if FileManager.default.fileExists(atPath: base + ".user") {
            let file = try AtomicFile.read(path: base + ".user")
            let idColumn = try file.column(columns.user)
            let ageColumn = file.columnNames.firstIndex(of: columns.age)
            let genderColumn = file.columnNames.firstIndex(of: columns.gender)
            let occupationColumn = file.columnNames.firstIndex(of: columns.occupation)
            for row in file.rows {
                let id = String(row[idColumn])
                guard userIndex[id] == nil else { continue }
                userIndex[id] = Int32(users.count)
                users.append(UserInfo(
                    externalID: id,
                    age: ageColumn.flatMap { Int(row[$0]) },
                    gender: genderColumn.map { String(row[$0]) } ?? "",
                    occupation: occupationColumn.map { String(row[$0]) } ?? ""))
            }
        }

        let userColumn = try interFile.column(columns.user)
        let itemColumn = try interFile.column(columns.item)
        let ratingColumn = interFile.columnNames.firstIndex(of: columns.rating)
        let timeColumn = interFile.columnNames.firstIndex(of: columns.timestamp)
        var interactions: [Interaction] = []
        interactions.reserveCapacity(interFile.rows.count)
        for (rowNumber, row) in interFile.rows.enumerated() {
            let userID = String(row[userColumn])
            let itemID = String(row[itemColumn])
            let user: Int32
            if let known = userIndex[userID] { user = known } else {
                user = Int32(users.count)
                userIndex[userID] = user
                users.append(UserInfo(externalID: userID, age: nil, gender: "", occupation: ""))
            }
            let item: Int32
            if let known = itemIndex[itemID] { item = known } else {
                item = Int32(items.count)
                itemIndex[itemID] = item
                items.append(ItemInfo(externalID: itemID, title: itemID, year: nil, genres: []))
            }
            var rating: Float = 1
            if let ratingColumn {
                guard let value = Float(row[ratingColumn]) else {
                    throw .badRow(file: interFile.path, line: rowNumber + 2, detail: "rating '\(row[ratingColumn])' is not a number")
                }
                rating = value
            }
            var timestamp = Int64(rowNumber)
            if let timeColumn {
                guard let value = Double(row[timeColumn]) else {
                    throw .badRow(file: interFile.path, line: rowNumber + 2, detail: "timestamp '\(row[timeColumn])' is not a number")
                }
                timestamp = Int64(value)
            }
            interactions.append(Interaction(user: user, item: item, rating: rating, timestamp: timestamp))
        }
        guard !interactions.isEmpty else { throw .empty("\(base).inter has no interactions") }
        return RecDataset(name: name, users: users, items: items, interactions: interactions,
                          userIndexByID: userIndex, itemIndexByID: itemIndex)
    }

    /// Builds a dataset from parts (tests, synthetic data).
    public init(name: String, users: [UserInfo], items: [ItemInfo], interactions: [Interaction]) {
        self.name = name
        self.users = users
        self.items = items
        self.interactions = interactions
        var userIndex: [String: Int32] = [:]
        for (index, user) in users.enumerated() { userIndex[user.externalID] = Int32(index) }
        var itemIndex: [String: Int32] = [:]
        for (index, item) in items.enumerated() { itemIndex[item.externalID] = Int32(index) }
        self.userIndexByID = userIndex
        self.itemIndexByID = itemIndex
        self.userNumericIndex = NumericIDTable.build(userIndex)
        self.itemNumericIndex = NumericIDTable.build(itemIndex)
    }

    private init(name: String, users: [UserInfo], items: [ItemInfo], interactions: [Interaction],
                 userIndexByID: [String: Int32], itemIndexByID: [String: Int32]) {
        self.name = name
        self.users = users
        self.items = items
        self.interactions = interactions
        self.userIndexByID = userIndexByID
        self.itemIndexByID = itemIndexByID
        self.userNumericIndex = NumericIDTable.build(userIndexByID)
        self.itemNumericIndex = NumericIDTable.build(itemIndexByID)
    }
}

/// A direct-indexed table for ids written as canonical decimal numbers ("1", "1682"): a
/// lookup parses the digits and reads an array instead of hashing a string. Ids of other
/// shapes (and numbers beyond the table) fall back to the dictionary.
enum NumericIDTable {
    static let maxValue = 1 << 22

    static func build(_ index: [String: Int32]) -> [Int32] {
        var table: [Int32] = []
        for (id, position) in index {
            guard let value = canonicalValue(id), value < maxValue else { continue }
            if value >= table.count { table.append(contentsOf: repeatElement(-1, count: value + 1 - table.count)) }
            table[value] = position
        }
        return table
    }

    /// The id's index if it is canonical decimal and in the table; nil means "ask the dictionary".
    @inline(__always)
    static func lookup(_ id: String, in table: [Int32]) -> Int32? {
        guard let value = canonicalValue(id), value < table.count else { return nil }
        let position = table[value]
        return position >= 0 ? position : nil
    }

    /// The value of an id made only of decimal digits without a leading zero (or "0").
    @inline(__always)
    static func canonicalValue(_ id: String) -> Int? {
        let utf8 = id.utf8
        return utf8.withContiguousStorageIfAvailable { bytes -> Int? in
            guard !bytes.isEmpty, bytes.count <= 7 else { return nil }
            if bytes.count > 1 && bytes[0] == UInt8(ascii: "0") { return nil }
            var value = 0
            for byte in bytes {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        } ?? nil
    }
}
