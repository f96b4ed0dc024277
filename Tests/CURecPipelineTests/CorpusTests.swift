import Foundation
import Testing
@testable import CURecData
@testable import CURecPipeline

/// A small synthetic catalogue: comedies from the 1990s, sci-fi/thrillers from the 1970s-80s,
/// dramas across decades, and two planted held-out items with unique titles that every user
/// consumes last (validation, then test).
enum Synthetic {
    static let validationTitle = "Quokka Validation Only"
    static let testTitle = "Zyzzyva Planted Test"

    static func dataset() -> RecDataset {
        var items: [ItemInfo] = []
        let comedies = ["Laughing Matters", "Office Party", "Big Wedding Day", "Summer Camp Blues", "Pizza Night", "Goofy Uncle"]
        for (i, title) in comedies.enumerated() {
            items.append(ItemInfo(externalID: "c\(i)", title: title, year: 1991 + i, genres: ["Comedy"] + (i % 2 == 0 ? ["Romance"] : [])))
        }
        let scifi = ["Orbit Station", "Red Planet Run", "Machine Dawn", "Night Signal", "Cold Circuit", "Deep Space Nine Lives"]
        for (i, title) in scifi.enumerated() {
            items.append(ItemInfo(externalID: "s\(i)", title: title, year: 1975 + 2 * i, genres: ["Sci-Fi"] + (i % 2 == 1 ? ["Thriller"] : [])))
        }
        let dramas = ["Quiet Harbor", "Long Road Home", "Usual Strangers, The", "Bitter Harvest", "Glass Garden", "Winter Letters"]
        for (i, title) in dramas.enumerated() {
            items.append(ItemInfo(externalID: "d\(i)", title: title, year: 1950 + 9 * i, genres: ["Drama"]))
        }
        items.append(ItemInfo(externalID: "v", title: validationTitle, year: 2001, genres: ["Western"]))
        items.append(ItemInfo(externalID: "t", title: testTitle, year: 2002, genres: ["Western"]))

        let occupations = ["student", "engineer", "writer", "educator"]
        var users: [UserInfo] = []
        var interactions: [Interaction] = []
        for u in 0..<12 {
            users.append(UserInfo(externalID: "u\(u)", age: [16, 22, 30, 41, 50, 60][u % 6], gender: u % 3 == 0 ? "F" : "M",
                                  occupation: occupations[u % 4]))
            let likesComedy = u % 2 == 0
            let own = likesComedy ? Array(0..<6) : Array(6..<12)
            var watched = own.filter { ($0 + u) % 5 != 0 }
            watched += [12 + (u % 6), 12 + ((u + 2) % 6)]
            watched.append(likesComedy ? 6 + (u % 6) : u % 6)
            var time: Int64 = 1_000 + Int64(u) * 10_000
            for item in watched {
                interactions.append(Interaction(user: Int32(u), item: Int32(item), rating: 4, timestamp: time))
                time += 100
            }
            interactions.append(Interaction(user: Int32(u), item: 18, rating: 4, timestamp: time))
            interactions.append(Interaction(user: Int32(u), item: 19, rating: 4, timestamp: time + 100))
        }
        return RecDataset(name: "synthetic", users: users, items: items, interactions: interactions)
    }

    static func corpus(seed: UInt64 = 7, pairs: Int = 3) throws -> (RecDataset, LeaveOneOutSplit, CorpusBuilder, [CorpusExample]) {
        let dataset = dataset()
        let split = LeaveOneOutSplit(dataset)
        var configuration = CorpusConfiguration()
        configuration.seed = seed
        configuration.pairsPerUser = pairs
        configuration.nextItemsPerUser = 2
        configuration.minimumAudience = 3
        let builder = try CorpusBuilder(dataset: dataset, split: split, configuration: configuration)
        return (dataset, split, builder, builder.build())
    }
}

@Suite struct CorpusTests {
    @Test func usesNoValidationOrTestInteractions() throws {
        let (dataset, split, _, examples) = try Synthetic.corpus()
        #expect(!examples.isEmpty)
        let heldOut: Set<Int32> = [18, 19]
        for example in examples {
            #expect(!example.text.contains("Zyzzyva"), "test title leaked into \(example.task)")
            #expect(!example.text.contains("Quokka"), "validation title leaked into \(example.task)")
            #expect(!example.text.lowercased().contains("western"))
            if let item = example.item { #expect(!heldOut.contains(item)) }
            if let user = example.user, let cutoff = example.cutoff {
                #expect(cutoff <= (split.trainTimesByUser[Int(user)].last ?? .min))
            }
        }
        // The held-out interactions really exist in the dataset (the plant is effective).
        #expect(split.test.allSatisfy { $0.item == 19 } && split.validation.allSatisfy { $0.item == 18 })
        #expect(dataset.items[19].title == Synthetic.testTitle)
        // Every task type is produced.
        #expect(Set(examples.map(\.task)) == Set(CorpusExample.Task.allCases))
    }

    @Test func everyStatedFactIsTrueOfTheTrainingData() throws {
        let (dataset, split, _, examples) = try Synthetic.corpus()
        try FactAudit(dataset: dataset, split: split).check(examples)
    }

    @Test func wordingVariesAcrossExamples() throws {
        let (_, _, _, examples) = try Synthetic.corpus()
        for task in CorpusExample.Task.allCases {
            let subset = examples.filter { $0.task == task }
            let openings = Set(subset.map { $0.reason.split(separator: " ").prefix(2).joined(separator: " ") })
            #expect(openings.count >= 3, "\(task): reasons open in only \(openings.count) ways over \(subset.count) examples")
            let stepOpenings = Set(subset.compactMap { $0.steps.first?.split(separator: " ").prefix(2).joined(separator: " ") })
            #expect(stepOpenings.count >= 2, "\(task): first steps open in only \(stepOpenings.count) ways")
        }
    }

    @Test func deterministicForASeed() throws {
        let first = try Synthetic.corpus(seed: 11).3
        let second = try Synthetic.corpus(seed: 11).3
        #expect(first == second)
        let other = try Synthetic.corpus(seed: 12).3
        #expect(first.map(\.text) != other.map(\.text))
    }

    @Test func renderingHasMarkersAndProgressIsReported() throws {
        let (_, _, builder, examples) = try Synthetic.corpus()
        let example = try #require(examples.first { $0.task == .pair })
        let text = example.text
        #expect(text.hasPrefix("### Task: pair\n### Instruction\n"))
        #expect(text.contains("\n### Reasoning\n1. "))
        #expect(text.contains("\n### Reason\n" + example.reason + "\n### End\n"))
        #expect(example.promptText + example.completionText == text)
        var reports: [CorpusProgress] = []
        _ = builder.build { reports.append($0) }
        #expect(reports.contains { $0.task == .itemAudience && $0.completed == $0.total })
        #expect(reports.last?.examples == examples.count)
    }

    @Test func everySyntheticExamplePassesTheVerifier() throws {
        let (dataset, _, _, examples) = try Synthetic.corpus()
        let verifier = ReasonVerifier(dataset: dataset)
        for example in examples {
            for failure in verifyExample(example, verifier) {
                Issue.record("\(example.task) \(failure.check.rawValue): '\(failure.text)' \(failure.detail)\n\(example.text)")
            }
        }
    }
}

/// Verifies an example's reason and its steps (steps: all checks but length and emptiness).
func verifyExample(_ example: CorpusExample, _ verifier: ReasonVerifier) -> [CheckResult] {
    let context = ReasonContext(user: example.user, item: example.item, cutoff: example.cutoff)
    var failures = verifier.verify(example.reason, context: context).failures
    for step in example.steps {
        failures += verifier.verify(step, context: context).failures.filter { ![.length, .notEmpty].contains($0.check) }
    }
    return failures
}

/// Re-derives every fact of a corpus from the raw training interactions.
struct FactAudit {
    let dataset: RecDataset
    let split: LeaveOneOutSplit

    func check(_ examples: [CorpusExample]) throws {
        let train = split.train
        let pairs = Double(train.count)
        func genreBaseline(_ genre: String) -> Double {
            Double(train.filter { dataset.items[Int($0.item)].genres.contains(genre) }.count) / pairs
        }
        var audience: [Int32: Set<Int32>] = [:]
        for interaction in train { audience[interaction.item, default: []].insert(interaction.user) }
        let trainPairs = Set(train.map { "\($0.user)-\($0.item)-\($0.timestamp)" })
        var baselines: [String: Double] = [:]
        for example in examples {
            let history = example.user.map { Array(split.trainItemsByUser[Int($0)].prefix(example.historyLength)) } ?? []
            for fact in example.facts {
                switch fact {
                case .profile(let user, let band, let gender, let occupation):
                    let info = dataset.users[Int(user)]
                    #expect(band == AgeBand(age: info.age) && gender == info.gender && occupation == info.occupation)
                case .genreAffinity(_, let genre, let count, let total, let baseline),
                     .genreRarity(_, let genre, let count, let total, let baseline),
                     .genreShare(_, let genre, let count, let total, let baseline):
                    #expect(total == history.count)
                    #expect(count == history.filter { dataset.items[Int($0)].genres.contains(genre) }.count, "\(genre) count")
                    let truth = baselines[genre] ?? genreBaseline(genre)
                    baselines[genre] = truth
                    #expect(abs(baseline - truth) < 1e-9)
                    let share = Double(count) / Double(total)
                    switch fact {
                    case .genreAffinity: #expect(share >= 1.25 * truth - 1e-9, "affinity for \(genre) is not above baseline")
                    case .genreShare: #expect(share >= truth - 1e-9)
                    default: #expect(share <= 0.5 * truth + 1e-9)
                    }
                case .decadeAffinity(_, let decade, let count, let total, let baseline):
                    let dated = history.filter { dataset.items[Int($0)].year != nil }
                    #expect(total == dated.count)
                    #expect(count == dated.filter { (dataset.items[Int($0)].year ?? 0) / 10 * 10 == decade }.count)
                    let truth = Double(train.filter { (dataset.items[Int($0.item)].year.map { $0 / 10 * 10 }) == decade }.count)
                        / Double(train.filter { dataset.items[Int($0.item)].year != nil }.count)
                    #expect(abs(baseline - truth) < 1e-9)
                    #expect(Double(count) / Double(total) >= 1.25 * truth - 1e-9)
                case .itemGenres(let item, let genres):
                    #expect(Set(genres) == Set(dataset.items[Int(item)].genres))
                case .itemYear(let item, let year):
                    #expect(dataset.items[Int(item)].year == year)
                case .coOccurrence(let item, let neighbour, let shared, let size):
                    let a = audience[item] ?? [], b = audience[neighbour] ?? []
                    #expect(a.intersection(b).count == shared, "co-occurrence \(item)/\(neighbour)")
                    #expect(a.count == size)
                case .audienceAge(let item, let band, let count, let size, _):
                    let users = audience[item] ?? []
                    #expect(users.count == size)
                    #expect(users.filter { AgeBand(age: dataset.users[Int($0)].age) == band }.count == count)
                case .audienceGender(let item, let gender, let count, _, _):
                    #expect((audience[item] ?? []).filter { dataset.users[Int($0)].gender == gender }.count == count)
                case .audienceOccupation(let item, let occupation, let count, _, _):
                    #expect((audience[item] ?? []).filter { dataset.users[Int($0)].occupation == occupation }.count == count)
                case .watched(let user, let item, let timestamp):
                    #expect(trainPairs.contains("\(user)-\(item)-\(timestamp)"))
                    #expect(history.contains(item))
                    if let cutoff = example.cutoff { #expect(timestamp <= cutoff) }
                case .nextItem(let user, let item, let timestamp):
                    #expect(trainPairs.contains("\(user)-\(item)-\(timestamp)"))
                    #expect(split.trainItemsByUser[Int(user)][example.historyLength] == item)
                }
            }
        }
    }
}
