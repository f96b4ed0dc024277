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
