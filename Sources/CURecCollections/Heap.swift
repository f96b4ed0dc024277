/// A binary min-heap: `min` is an element no other element is less than.
///
/// The order is the element type's `<`. To take elements out in another order, give the
/// element a small wrapper type whose `<` puts first what should come out first (the event
/// loop's timers: earliest deadline; BPE training: highest pair count; top-k selection: the
/// weakest kept candidate). Elements that compare equal come out in no particular order, so a
/// caller that needs a deterministic order makes `<` a total order.
///
/// Push and pop are O(log n); `min` is O(1). The storage is one array, laid out as the
/// implicit binary tree (children of `i` at `2i + 1` and `2i + 2`). The methods are
/// inlinable so each client specializes them for its element type.
public struct Heap<Element: Comparable> {
    @usableFromInline var storage: [Element]

    /// An empty heap with room for `capacity` elements before it grows.
    @inlinable
    public init(capacity: Int = 0) {
        storage = []
        storage.reserveCapacity(capacity)
    }

    /// A heap of `elements` (O(n) bottom-up construction).
    @inlinable
    public init<S: Sequence>(_ elements: S) where S.Element == Element {
        storage = Array(elements)
        var index = storage.count / 2
        while index > 0 {
            index -= 1
            siftDown(from: index)
        }
    }

    @inlinable public var count: Int { storage.count }
    @inlinable public var isEmpty: Bool { storage.isEmpty }

    /// The least element, or nil when the heap is empty.
    @inlinable public var min: Element? { storage.first }

    /// The elements in heap (not sorted) order.
    @inlinable public var unordered: [Element] { storage }

    /// Adds `element`.
    @inlinable
    public mutating func insert(_ element: Element) {
        storage.append(element)
        siftUp(from: storage.count - 1)
    }

    /// Removes and returns the least element, or nil when the heap is empty.
    @inlinable
    @discardableResult
    public mutating func popMin() -> Element? {
        guard !storage.isEmpty else { return nil }
        if storage.count == 1 { return storage.removeLast() }
        let least = storage[0]
        storage[0] = storage.removeLast()
        siftDown(from: 0)
        return least
    }

    /// Replaces the least element with `element` and returns the one replaced, in one
    /// sift (cheaper than a pop and an insert). The heap must not be empty.
    @inlinable
    @discardableResult
    public mutating func replaceMin(with element: Element) -> Element {
        precondition(!storage.isEmpty, "replaceMin on an empty heap")
        let least = storage[0]
        storage[0] = element
        siftDown(from: 0)
        return least
    }

    @inlinable
    mutating func siftUp(from start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard storage[child] < storage[parent] else { return }
            storage.swapAt(child, parent)
            child = parent
        }
    }

    @inlinable
    mutating func siftDown(from start: Int) {
        let count = storage.count
        var parent = start
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var least = parent
            if left < count && storage[left] < storage[least] { least = left }
            if right < count && storage[right] < storage[least] { least = right }
            if least == parent { return }
            storage.swapAt(parent, least)
            parent = least
        }
    }
}

extension Heap: Sendable where Element: Sendable {}
