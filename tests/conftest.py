"""
Fixtures shared by every test directory.  Keep this small: directory-specific
fixtures live in ``tests/unit/`` or ``tests/integration/`` conftest files.

Do not import ``twisted.internet.reactor`` here: pytest-twisted installs the
reactor in ``pytest_configure`` and an early import would pin the default one.
"""

from pathlib import Path

import pytest

#: The repository root (``tests/..``).
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_rs_environ(monkeypatch):
    """Remove every ``RS_*`` variable, so a developer's shell cannot leak in."""
    import os

    for name in list(os.environ):
        if name.startswith("RS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def certificate(tmp_path):
    """
    A self-signed certificate for ``localhost`` and its key, as PEM files:
    ``(cert_path, key_path)``.
    """
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)
