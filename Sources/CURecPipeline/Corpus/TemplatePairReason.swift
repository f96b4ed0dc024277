extension CorpusBuilder {
    /// The corpus's template reason for any (user, item) pair, e.g. a served recommendation:
    /// the pair task's wording over the user's whole training history (cut-off: their last
    /// training interaction) and the item. The baseline the language model's pair reasons are
    /// compared with; nil when the user has no training history.
    public func templatePairReason(user: Int32, item: Int32) -> String? {
        guard user >= 0, Int(user) < statistics.dataset.userCount, item >= 0, Int(item) < statistics.dataset.itemCount else { return nil }
        let position = statistics.historyByUser[Int(user)].count
        return pair(user: user, target: item, position: position, variant: 0)?.reason
    }
}
