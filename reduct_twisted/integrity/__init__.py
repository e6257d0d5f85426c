"""
The integrity log's pure parts (issue #16): RFC 8785 canonical JSON
(:mod:`.jcs`), the RFC 9162 Merkle tree and its proofs over a hash source
(:mod:`.merkle`), and the Ed25519 key that signs tree heads
(:mod:`.signing`).  Nothing here touches the disk but the key file; the
on-disk tree log is ``reduct_twisted.storage.disk.treelog``.
"""
