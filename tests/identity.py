"""Identity comparisons for tests: `==` on graphc nodes builds an elementwise eq node (as
in NumPy and torch), so sequences and dicts of nodes are compared here by `is`."""


def same(a, b) -> bool:
    """Whether a and b hold the very same nodes: sequences in order, dicts key for key."""
    if isinstance(a, dict):
        # Key views compare as sets (hash, then identity); values by `is`.
        return isinstance(b, dict) and a.keys() == b.keys() and all(a[k] is b[k] for k in a)
    a, b = list(a), list(b)
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))
