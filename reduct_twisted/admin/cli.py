"""
The ``reduct-twisted`` command: one argparse parser whose subcommands are

    reduct-twisted verify URL BUCKET [ENTRY] ...     (reduct_twisted/verifier/cli.py)
    reduct-twisted fsck DATA_PATH [--repair] [--json]
    reduct-twisted export URL BUCKET DIR [--token T] [--entry E ...] [--quiet]
    reduct-twisted import DIR URL BUCKET [--token T] [--quiet]

Exit status: 0 all went well (fsck: the directory is clean), 1 a check
failed (fsck: problems found; export/import: records failed), 2 usage,
connection or server errors.
"""

import argparse
import sys

from reduct_twisted.verifier import cli as verifier_cli
from reduct_twisted.verifier.client import ClientError
from reduct_twisted.verifier.state import StateError

from . import fsck, transfer

USAGE = 2


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="reduct-twisted",
        description="reduct-twisted admin tools: check a data directory, export and import buckets, "
        "verify a server's integrity log",
    )
    subparsers = top.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    verifier_cli.add_verify(subparsers)
    fsck.add_parser(subparsers)
    transfer.add_parsers(subparsers)
    return top


def main(argv=None, stdout=None, stderr=None, clock=None) -> int:
    """The console script: returns the exit status (0, 1 or 2)."""
    return verifier_cli.run(parser, (ClientError, StateError, fsck.FsckRefused, transfer.TransferError),
                            argv, stdout, stderr, clock)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
