"""
The ``reduct-twisted`` command.  Subcommands (argparse subparsers; more can
be added beside ``verify`` with :func:`add_verify`'s pattern):

    reduct-twisted verify URL BUCKET [ENTRY] [--state FILE] [--token TOKEN]
                          [--public-key B64] [--accept-new-key] [--allow-undigested]
                          [--cacert FILE] [--insecure] [--timeout S] [--per-page N] [--quiet]

Exit status: 0 every check held, 1 a check failed, 2 usage, connection or
server errors (the run stops at the first of those).
"""

import argparse
import base64
import binascii
import os
import sys

from . import checks, report
from .client import Client, ClientError
from .progress import Progress
from .state import State, StateError


def add_verify(subparsers) -> None:
    p = subparsers.add_parser(
        "verify",
        help="check a server's integrity log for a bucket or one entry",
        description=(
            "Check the signed tree head of each entry (signature, consistency with the head saved by the "
            "previous run), every listed record's content against its SHA-256 digest and its inclusion "
            "proof. Exit 0 when all holds, 1 when a check failed, 2 on usage or connection errors."
        ),
    )
    p.add_argument("url", metavar="URL", help="the server, with its API base path if any (http://host:8383/)")
    p.add_argument("bucket", metavar="BUCKET")
    p.add_argument("entry", metavar="ENTRY", nargs="?", help="one entry (a/b for nested ones); default: every entry")
    p.add_argument("--state", metavar="FILE", help="keep the verified heads here; the next run proves consistency with them")
    p.add_argument("--token", help="API token (default: $RS_API_TOKEN)")
    p.add_argument("--public-key", metavar="B64", help="the log key expected (base64 of its 32 bytes)")
    p.add_argument("--accept-new-key", action="store_true", help="trust a log key that differs from the saved one")
    p.add_argument(
        "--allow-undigested",
        action="store_true",
        help=(
            "records the log holds without a digest (not hashed yet by the server's backfill, or whose "
            "content could not be hashed) are warnings, not failures: their leaf and inclusion are "
            "still checked, their content cannot be"
        ),
    )
    p.add_argument("--cacert", metavar="FILE", help="trust this CA (PEM) for the server's TLS certificate")
    p.add_argument("--insecure", action="store_true", help="do not verify the server's TLS certificate")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="per-request timeout in seconds (30)")
    p.add_argument("--per-page", type=int, default=1000, metavar="N", help="listing page size, 1..1000 (1000)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_verify)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="reduct-twisted", description="reduct-twisted client tools")
    subparsers = top.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    add_verify(subparsers)
    return top


def _pinned_key(value):
    if value is None:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ClientError("--public-key must be the base64 of 32 bytes")
    return raw


def run_verify(args, stdout, stderr, clock=None) -> int:
    if not 1 <= args.per_page <= 1000:
        raise ClientError("--per-page must be between 1 and 1000")
    pinned = _pinned_key(args.public_key)
    token = args.token if args.token is not None else os.environ.get("RS_API_TOKEN") or None
    state = State(args.state)
    client = Client(args.url, token=token, insecure=args.insecure, timeout=args.timeout, cafile=args.cacert)
    progress_args = {"enabled": not args.quiet}
    if clock is not None:
        progress_args["clock"] = clock
    progress = Progress(stderr, **progress_args)
    run_findings: list = []
    results: list = []
    try:
        try:
            body, _ = client.get_json(client.target("api/v1/log-key"))
        except ClientError as exc:
            raise ClientError(f"cannot get the server's log key: {exc}") from None
        try:
            key = checks.LogKey(body)
            if pinned is not None and key.raw != pinned:
                raise checks.KeyProblem(
                    f"the server's log key {key.b64} is not the --public-key {base64.b64encode(pinned).decode()}"
                )
        except checks.KeyProblem as exc:
            run_findings.append(report.Finding(args.bucket, None, "key", str(exc)))
            return report.render(results, run_findings, stdout)
        entries, empty = ([args.entry], set()) if args.entry else checks.list_entries(client, args.bucket)
        options = checks.Options(args.accept_new_key, args.allow_undigested, args.per_page)
        try:
            for i, entry in enumerate(entries, 1):
                label = f"[{i}/{len(entries)}] {args.bucket}/{entry}" if len(entries) > 1 else None
                check = checks.EntryCheck(
                    client, key, state, progress, options, args.bucket, entry, label, empty=entry in empty
                )
                results.append(check.run())
        except (ClientError, StateError):
            # What was verified before the error is still worth reading.
            progress.clear()
            if results:
                report.render(results, run_findings, stdout)
            raise
    finally:
        progress.clear()
        client.close()
    return report.render(results, run_findings, stdout)


def run(make_parser, errors, argv=None, stdout=None, stderr=None, clock=None) -> int:
    """
    Run a console command: parse ``argv`` with ``make_parser()``, call the
    chosen command's ``run``; an error of a type in ``errors`` (and Ctrl-C)
    is one line on ``stderr`` and exit status 2.  Shared with the admin CLI.
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        args = make_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        return args.run(args, stdout, stderr, clock=clock)
    except errors as exc:
        stderr.write(f"reduct-twisted {args.command}: error: {exc}\n")
        stderr.flush()
        return report.USAGE
    except KeyboardInterrupt:
        stderr.write(f"reduct-twisted {args.command}: interrupted\n")
        return report.USAGE


def main(argv=None, stdout=None, stderr=None, clock=None) -> int:
    """The console script: returns the exit status (0, 1 or 2)."""
    return run(parser, (ClientError, StateError), argv, stdout, stderr, clock)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
