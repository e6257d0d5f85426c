"""
``reduct-twisted verify``: the client that checks a server's integrity log.

Client side only: it talks HTTP to any server speaking the issue #16 wire
shapes and imports nothing of the daemon (no ``storage``, ``http`` or
``integrity``), so its RFC 9162 and RFC 8785 code is its own, written apart
from the server's and from the tests' reference; each checks the other.

Modules: ``proofs`` (Merkle tree hashing, inclusion and consistency
proofs), ``canonical`` (RFC 8785 for the leaf and the signed head),
``client`` (a keep-alive HTTP client over ``http.client``), ``state`` (the
``--state`` file), ``progress`` (the progress bar), ``checks`` (what is
verified for one entry), ``report`` (failures and the final summary) and
``cli`` (the ``reduct-twisted`` command and its subcommands).
"""
