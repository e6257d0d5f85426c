"""
RFC 9162 §2.1 Merkle tree proofs, as the verifier checks them.

The proofs are checked by rebuilding the tree along the RFC's recursive
definitions (§2.1.3.1 ``PATH`` and §2.1.4.1 ``PROOF``): at each level ``k``
is the largest power of two below the subtree size, the last hash of the
path is the sibling subtree at that level, the rest proves the child the
leaf (or the old tree's edge) lives in.  A proof that is too short, too
long or for another shape fails.  Recursion is at most 64 levels deep.
"""

import hashlib

#: RFC 9162 §2.1.1 domain separation prefixes.
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


class ProofError(ValueError):
    """A proof does not have the shape its tree sizes call for."""


def hash_leaf(leaf: bytes) -> bytes:
    """``SHA-256(0x00 || leaf)``."""
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(size: int) -> int:
    # The largest power of two strictly smaller than size (size >= 2).
    return 1 << ((size - 1).bit_length() - 1)


def root_from_inclusion(leaf_hash: bytes, index: int, size: int, path: list) -> bytes:
    """
    The root the inclusion ``path`` (leaf side first) yields for leaf
    ``index`` (0-based) of a tree of ``size`` leaves.

    :raises ProofError: when ``index`` is out of range or the path's length
        does not fit the tree's shape.
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of {size}")
    return _inclusion(leaf_hash, index, size, list(path))


def _inclusion(node: bytes, index: int, size: int, path: list) -> bytes:
    if size == 1:
        if path:
            raise ProofError("the inclusion path is longer than the tree is deep")
        return node
    if not path:
        raise ProofError("the inclusion path is shorter than the tree is deep")
    sibling = path.pop()
    k = _split(size)
    if index < k:
        return hash_children(_inclusion(node, index, k, path), sibling)
    return hash_children(sibling, _inclusion(node, index - k, size - k, path))


def inclusion_holds(leaf_hash: bytes, index: int, size: int, path: list, root: bytes) -> bool:
    """True when ``path`` proves ``leaf_hash`` at ``index`` under ``root``."""
    try:
        return root_from_inclusion(leaf_hash, index, size, path) == root
    except ProofError:
        return False


def roots_from_consistency(first: int, second: int, first_root: bytes, path: list) -> tuple:
    """
    ``(old root, new root)`` rebuilt from a consistency ``path`` between a
    tree of ``first`` leaves (whose root the caller knows: ``first_root``)
    and one of ``second`` leaves, ``0 < first < second``.

    :raises ProofError: on sizes out of range or a path of the wrong shape.
    """
    if not 0 < first < second:
        raise ProofError(f"no consistency proof from {first} to {second} leaves")
    rest = list(path)
    old, new = _consistency(first, second, rest, True, first_root)
    if rest:
        raise ProofError("the consistency path has hashes left over")
    return old, new


def _consistency(m: int, n: int, path: list, known: bool, first_root: bytes) -> tuple:
    if m == n:
        if known:
            # The old tree is this whole subtree and its root is the one we hold.
            return first_root, first_root
        if not path:
            raise ProofError("the consistency path is too short")
        node = path.pop()
        return node, node
    if not path:
        raise ProofError("the consistency path is too short")
    sibling = path.pop()
    k = _split(n)
    if m <= k:
        # The old tree lies within the left half; the right half is new.
        old, new = _consistency(m, k, path, known, first_root)
        return old, hash_children(new, sibling)
    # The left half is the same in both trees; the difference is on the right.
    old, new = _consistency(m - k, n - k, path, False, first_root)
    return hash_children(sibling, old), hash_children(sibling, new)


def consistency_holds(first: int, second: int, first_root: bytes, second_root: bytes, path: list) -> bool:
    """
    True when ``path`` proves the tree of ``second`` leaves (``second_root``)
    extends the tree of ``first`` leaves (``first_root``).  Equal sizes hold
    with an empty path and equal roots; an empty first tree is a prefix of
    every tree.
    """
    if first == 0:
        return second >= 0 and not path
    if first == second:
        return not path and first_root == second_root
    try:
        old, new = roots_from_consistency(first, second, first_root, path)
    except ProofError:
        return False
    return old == first_root and new == second_root


class StreamingRoot:
    """
    The root of a tree fed its leaf hashes in order, in O(log n) memory: a
    stack of perfect subtrees (sizes strictly decreasing), merged like a
    binary counter; the root folds the stack from the right (§2.1.1's split
    always puts the largest perfect subtree on the left).
    """

    def __init__(self):
        self._stack = []  # [(size, hash)]
        self.size = 0

    def add(self, leaf_hash: bytes) -> None:
        size, node = 1, leaf_hash
        while self._stack and self._stack[-1][0] == size:
            left_size, left = self._stack.pop()
            size, node = size + left_size, hash_children(left, node)
        self._stack.append((size, node))
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return hashlib.sha256(b"").digest()
        node = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            node = hash_children(left, node)
        return node
