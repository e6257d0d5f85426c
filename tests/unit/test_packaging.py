"""
Packaging (issue #18 item 5): a PEP 517 build backend (pip never falls back
to a legacy setup.py install), metadata kept in setup.cfg, the standard
Apache-2.0 text, dependency bounds the tested versions satisfy, the
changelog and the ignore rules.
"""

import configparser
import hashlib
from importlib import metadata

from packaging.requirements import Requirement

from tests.conftest import REPO_ROOT

#: SHA-256 of the Apache License 2.0 text as published (LICENSE-2.0.txt).
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / "setup.cfg")
    return cfg


def load_toml(text: str) -> dict:
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # Python 3.10 (python_requires >= 3.10): this file is INI-shaped
        import ast

        cfg = configparser.ConfigParser()
        cfg.read_string(text)
        return {name: {k: ast.literal_eval(v) for k, v in cfg[name].items()} for name in cfg.sections()}
    return tomllib.loads(text)


def test_pyproject_declares_the_setuptools_backend_only():
    data = load_toml((REPO_ROOT / "pyproject.toml").read_text())
    assert data["build-system"]["build-backend"] == "setuptools.build_meta"
    assert any(r.startswith("setuptools") for r in data["build-system"]["requires"])
    assert set(data) == {"build-system"}  # metadata stays in setup.cfg
    assert (REPO_ROOT / "setup.py").exists() and setup_cfg()["metadata"]["name"] == "reduct-twisted"


def test_license_is_the_apache_2_text():
    assert hashlib.sha256((REPO_ROOT / "LICENSE").read_bytes()).hexdigest() == APACHE_2_SHA256
    cfg = setup_cfg()["metadata"]
    assert cfg["license"] == "Apache-2.0" and cfg["license_files"] == "LICENSE"


def test_dependency_bounds_hold_the_tested_versions():
    cfg = setup_cfg()["options"]
    lines = [line.strip() for line in cfg["install_requires"].splitlines()]
    requirements = [Requirement(line) for line in lines if line and not line.startswith("#")]
    assert {r.name.lower() for r in requirements} >= {"twisted", "klein", "treq", "werkzeug", "tqdm"}
    for requirement in requirements:
        assert requirement.specifier, f"{requirement.name} has no version bound"
        installed = metadata.version(requirement.name)
        assert requirement.specifier.contains(installed, prereleases=True), (requirement, installed)


def test_changelog_and_gitignore():
    changelog = (REPO_ROOT / "CHANGELOG.md").read_text()
    assert changelog.startswith("# Changelog") and "## [Unreleased]" in changelog
    assert "keepachangelog.com" in changelog
    ignored = (REPO_ROOT / ".gitignore").read_text().splitlines()
    for pattern in ("reduct-data/", "/.venv/", "/.cache/", "__pycache__/", "*.egg-info/", "/build/", "/dist/"):
        assert pattern in ignored


def test_console_script_and_module_entry_point():
    scripts = setup_cfg()["options.entry_points"]["console_scripts"].split()
    assert scripts == ["reduct-twisted", "=", "reduct_twisted.admin.cli:main"]
    assert (REPO_ROOT / "reduct_twisted" / "__main__.py").exists()
