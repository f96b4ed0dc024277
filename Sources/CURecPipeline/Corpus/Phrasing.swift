import CURecData
import CURecTensor

/// How genres, occupations, titles and numbers are written in corpus text.
///
/// Every surface form produced here is one the claim verifier recognises (see
/// `GenreLexicon`), so generated text and verification agree.
enum Phrasing {
    /// Adjective form ("a comedy film", "this sci-fi title") and plural noun form.
    static func genreForms(_ genre: String) -> (adjective: String, plural: String) {
        switch genre.lowercased() {
        case "action": return ("action", "action films")
        case "adventure": return ("adventure", "adventure films")
        case "animation": return ("animated", "animated films")
        case "children's": return ("children's", "children's films")
        case "comedy": return ("comedy", "comedies")
        case "crime": return ("crime", "crime films")
        case "documentary": return ("documentary", "documentaries")
        case "drama": return ("drama", "dramas")
        case "fantasy": return ("fantasy", "fantasy films")
        case "film-noir": return ("film-noir", "film-noir titles")
        case "horror": return ("horror", "horror films")
        case "musical": return ("musical", "musicals")
        case "mystery": return ("mystery", "mysteries")
        case "romance": return ("romantic", "romances")
        case "sci-fi": return ("sci-fi", "sci-fi films")
        case "thriller": return ("thriller", "thrillers")
        case "war": return ("war", "war films")
        case "western": return ("western", "westerns")
        default:
            let lower = genre.lowercased()
            return (lower, lower + " titles")
        }
    }

    /// The genre's name as a noun ("comedy", "sci-fi").
    static func genreNoun(_ genre: String) -> String {
        switch genre.lowercased() {
        case "animation": return "animation"
        case "romance": return "romance"
        default: return genre.lowercased()
        }
    }

    /// "students", "people in healthcare", ...
    static func occupationPlural(_ occupation: String) -> String {
        switch occupation.lowercased() {
        case "entertainment": return "people in entertainment"
        case "healthcare": return "healthcare workers"
        case "marketing": return "people in marketing"
        case "none": return "people without an occupation"
        case "other": return "people in other occupations"
        case "retired": return "retirees"
        case "salesman": return "salespeople"
        case "": return "people"
        default: return occupation.lowercased() + "s"
        }
    }

    /// "an engineer", "a student", "retired", "with occupation listed as other".
    static func occupationSingular(_ occupation: String) -> String {
        let lower = occupation.lowercased()
        switch lower {
        case "none": return "without an occupation"
        case "other": return "with an occupation listed as other"
        case "retired": return "retired"
        case "entertainment", "healthcare", "marketing": return "working in \(lower)"
        case "": return "with no occupation given"
        default:
            let article = "aeiou".contains(lower.first ?? "x") ? "an" : "a"
            return "\(article) \(lower)"
        }
    }

    static func genderAdjective(_ gender: String) -> String? {
        switch gender.uppercased() {
        case "M": return "male"
        case "F": return "female"
        default: return nil
        }
    }

    static func genderPlural(_ gender: String) -> String {
        switch gender.uppercased() {
        case "M": return "men"
        case "F": return "women"
        default: return "viewers of gender \(gender)"
        }
    }

    /// `"Title" (1995)`, or `"Title"` when the year is unknown.
    static func title(_ info: ItemInfo) -> String {
        let clean = info.title.replacingOccurrences(of: "\"", with: "'")
        if let year = info.year { return "\"\(clean)\" (\(year))" }
        return "\"\(clean)\""
    }

    /// Whole percent, or one decimal below 10% ("4.6%").
    static func percent(_ fraction: Double) -> String {
        let tenths = Int((fraction * 1000).rounded())
        if tenths < 100 { return "\(tenths / 10).\(tenths % 10)%" }
        return "\(Int((fraction * 100).rounded()))%"
    }

    /// One decimal and an `x`: `1.8x`.
    static func lift(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)x"
    }

    /// "a", "a and b", "a, b and c".
    static func list(_ parts: [String]) -> String {
        switch parts.count {
        case 0: return ""
        case 1: return parts[0]
        default: return parts.dropLast().joined(separator: ", ") + " and " + (parts.last ?? "")
        }
    }

    static func decadeLabel(_ decade: Int) -> String { "\(decade)s" }
}

/// A seeded choice among templates; templates returning nil (a missing slot) are skipped.
struct TemplateChooser {
    var rng: Xoshiro256

    init(seed: UInt64) { rng = Xoshiro256(seed: seed) }

    mutating func index(_ count: Int) -> Int { count <= 1 ? 0 : Int(rng.next() % UInt64(count)) }

    /// One of the non-nil renderings, chosen uniformly; nil when all are nil.
    mutating func choose(_ options: [String?]) -> String? {
        let present = options.compactMap { $0 }
        guard !present.isEmpty else { return nil }
        return present[index(present.count)]
    }
}

/// Mixes values into one 64-bit seed (splitmix64 finaliser per value).
func mixSeed(_ values: UInt64...) -> UInt64 {
    var state: UInt64 = 0x243F_6A88_85A3_08D3
    for value in values {
        state ^= value &+ 0x9E37_79B9_7F4A_7C15 &+ (state << 6) &+ (state >> 2)
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        state = z ^ (z >> 31)
    }
    return state
}
