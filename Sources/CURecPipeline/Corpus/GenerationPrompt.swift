extension CorpusBuilder {
    /// The pair-task prompt (`CorpusExample.promptText`) for any (user, item), as the LM saw
    /// pair examples in training: instruction, profile, the user's whole training history
    /// and the item. Used to ask the trained LM for a reason at serving time.
    public func pairPrompt(user: Int32, item: Int32) -> String {
        let history = statistics.historyByUser[Int(user)]
        let example = CorpusExample(
            task: .pair, user: user, item: item,
            prompt: "Explain why this user would like this item.\n" + profileLine(user) + "\n"
                + historyLines(history[...]) + "\n" + itemLine(item),
            steps: [], reason: "", facts: [], cutoff: nil, historyLength: history.count)
        return example.promptText
    }
}

extension CorpusBuilder {
    /// The user-preference prompt for `user` exactly as the corpus shows it (same wording
    /// choice), so the LM answers it the way it learned; users without training history get
    /// the same layout with an empty history.
    public func userPrompt(user: Int32) -> String {
        if let example = userPreference(user: user) { return example.promptText }
        let history = statistics.historyByUser[Int(user)]
        let example = CorpusExample(
            task: .userPreference, user: user, item: nil,
            prompt: "Describe what this user enjoys, from their profile and viewing history.\n"
                + profileLine(user) + "\n" + historyLines(history[...]),
            steps: [], reason: "", facts: [], cutoff: nil, historyLength: history.count)
        return example.promptText
    }

    /// The item-audience prompt for `item` as the corpus shows it; items whose audience is too
    /// small for a corpus example get the same layout with their metadata and audience size.
    public func itemPrompt(item: Int32) -> String {
        if let example = itemAudience(item: item) { return example.promptText }
        let audience = statistics.audienceByItem[Int(item)].count
        let example = CorpusExample(
            task: .itemAudience, user: nil, item: item,
            prompt: "Describe the audience this film appeals to, from the data below.\n"
                + itemLine(item) + "\nAudience: \(audience) viewers.",
            steps: [], reason: "", facts: [], cutoff: nil, historyLength: 0)
        return example.promptText
    }

    /// The raw content description of `item` (title, year, genres) used for the content
    /// feature baseline and for the reward model's item features.
    public func contentText(item: Int32) -> String {
        itemLine(item).replacingOccurrences(of: "Item: ", with: "")
    }
}
