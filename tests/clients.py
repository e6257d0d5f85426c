"""
Virtualenvs with the official Python client (reduct-py), one per version.

reduct-py is asyncio/aiohttp based and its generations pin incompatible
dependencies (1.4.x: pydantic 1, current: pydantic 2), so each version lives
in its own virtualenv under ``<repo>/.cache/clients/reduct-py-<version>/``
(``.cache/`` is gitignored).  A venv is created on first use with
``<python> -m venv`` + ``pip install reduct-py==<version>`` from PyPI and
reused afterwards; a marker file written after a successful install and
import check tells a finished venv from an interrupted one, and a lock file
serialises concurrent test processes (pytest-xdist workers).

Nothing here skips: if the venv cannot be built, :func:`client_python` raises
and the test using it fails with pip's output.

The client scripts in ``tests/client_scripts/`` are run with the venv's
interpreter (see ``tests/integration/test_clients.py``).

The JavaScript client (reduct-js, pinned by ``tests/js/package-lock.json``)
is installed the same way with ``npm ci`` under ``<repo>/.cache/js/`` and
its scripts in ``tests/js/`` run with ``node`` (``test_js_client.py``).
"""

import fcntl
import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Optional

#: The repository root (``tests/..``).
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Where the per-version virtualenvs live.
CACHE_DIR = REPO_ROOT / ".cache" / "clients"

#: The directory of the client scripts.
SCRIPTS_DIR = Path(__file__).resolve().parent / "client_scripts"

#: The oldest client generation we serve (no ``x-reduct-api``, GET /q) and
#: the newest release (reads ``x-reduct-api``, pydantic 2).
REDUCT_PY_OLDEST = "1.4.1"
REDUCT_PY_NEWEST = "1.21.0"
#: The middle generation: parses ``x-reduct-api`` into ``(major, minor)`` and,
#: at minor ≥ 5, queries with ``GET …/q`` (``each_n``/``each_s``/``limit``)
#: read through ``GET|HEAD …/batch``; has ``write_batch`` and
#: ``remove_entry`` but no label updates, record removal, rename or HARD quota.
REDUCT_PY_MIDDLE = "1.10.0"

#: Seconds allowed for creating one venv (pip from PyPI on a slow CI runner).
INSTALL_TIMEOUT = 600

_MARKER = ".reduct-twisted-complete"


class ClientEnvError(RuntimeError):
    """A client virtualenv could not be created."""


def venv_dir(version: str) -> Path:
    """:return: the virtualenv directory for reduct-py ``version``."""
    return CACHE_DIR / f"reduct-py-{version}"


def _venv_python(venv: Path) -> Path:
    if os.name == "nt":  # pragma: no cover - the daemon targets POSIX
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _run(args, log: list, cwd: Optional[Path] = None) -> None:
    log.append("$ " + " ".join(str(a) for a in args))
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=INSTALL_TIMEOUT,
        env=_install_env(),
    )
    log.append(proc.stdout.decode("utf-8", "replace"))
    if proc.returncode != 0:
        raise ClientEnvError(
            f"command failed with exit code {proc.returncode}:\n" + "\n".join(log)
        )


def _install_env() -> Dict[str, str]:
    env = dict(os.environ)
    # Don't let the test venv leak into the client's interpreter or pip.
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV"):
        env.pop(name, None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _installed_version(python: Path) -> Optional[str]:
    proc = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m, reduct; print(m.version('reduct-py'))",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_install_env(),
    )
    if proc.returncode != 0:
        return None
    return proc.stdout.decode().strip()


def client_python(version: str, base_python: Optional[str] = None) -> Path:
    """
    Return the interpreter of a virtualenv with ``reduct-py==version``,
    creating the venv first if it does not exist yet (or is incomplete).

    :param base_python: the interpreter that creates the venv; the one
        running the tests by default (``python3 -m venv`` on a CI runner).
    :raises ClientEnvError: venv creation or ``pip install`` failed.
    """
    venv = venv_dir(version)
    python = _venv_python(venv)
    with _locked(CACHE_DIR / f"reduct-py-{version}.lock"):
        marker = venv / _MARKER
        if marker.exists() and marker.read_text().strip() == version and python.exists():
            return python
        if venv.exists():
            shutil.rmtree(venv)
        log: list = []
        _run([base_python or sys.executable, "-m", "venv", venv], log)
        _run(
            [python, "-m", "pip", "install", "--no-input", "-q", f"reduct-py=={version}"],
            log,
        )
        installed = _installed_version(python)
        if installed != version:
            raise ClientEnvError(
                f"reduct-py {version} expected in {venv}, found {installed!r}\n"
                + "\n".join(log)
            )
        marker.write_text(version + "\n")
    return python


def script_path(name: str) -> Path:
    """:return: the path of client script ``name`` (``tests/client_scripts/<name>``)."""
    path = SCRIPTS_DIR / name
    if not path.exists():
        raise FileNotFoundError(path)
    return path


def script_env() -> Dict[str, str]:
    """
    The environment a client script runs in: the caller's minus anything that
    would put the test venv's packages on the client's path.
    """
    env = _install_env()
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


# -- reduct-js ---------------------------------------------------------------------

#: The pinned JavaScript client: ``tests/js/package.json`` and its lock file.
REDUCT_JS_VERSION = "1.20.0"

#: The Node project of the JavaScript client scripts.
JS_DIR = Path(__file__).resolve().parent / "js"


def js_dir() -> Path:
    """:return: where ``npm ci`` installs ``tests/js``'s lock file (under ``.cache/``)."""
    return REPO_ROOT / ".cache" / "js" / f"reduct-js-{REDUCT_JS_VERSION}"


def js_node_modules() -> Path:
    """
    Return the ``node_modules`` holding reduct-js (``NODE_PATH`` for the
    scripts in ``tests/js/``), running ``npm ci`` first if it is missing,
    incomplete or installed from another lock file.  Same pattern as the
    reduct-py venvs: a lock file serialises test processes, a marker holding
    the lock file's contents tells a finished install from an interrupted
    or outdated one.

    :raises ClientEnvError: ``npm ci`` failed or installed another version.
    """
    target = js_dir()
    lock_text = (JS_DIR / "package-lock.json").read_text()
    with _locked(target.parent / f"{target.name}.lock"):
        marker = target / _MARKER
        if marker.exists() and marker.read_text() == lock_text:
            return target / "node_modules"
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(JS_DIR / name, target / name)
        log: list = []
        # (run inside target: ``npm ci --prefix`` reads another package.json)
        _run(["npm", "ci", "--no-audit", "--no-fund"], log, cwd=target)
        installed = json.loads(
            (target / "node_modules" / "reduct-js" / "package.json").read_text()
        )["version"]
        if installed != REDUCT_JS_VERSION:
            raise ClientEnvError(
                f"reduct-js {REDUCT_JS_VERSION} expected in {target}, found {installed!r}\n"
                + "\n".join(log)
            )
        marker.write_text(lock_text)
    return target / "node_modules"


def js_env(node_modules: Path) -> Dict[str, str]:
    """The environment a ``tests/js`` script runs in: reduct-js on ``NODE_PATH``."""
    env = _install_env()
    env["NODE_PATH"] = str(node_modules)
    return env
