"""
Storage owns every byte it stores (issue #13): the HTTP layer feeds bytes
to storage's writers and sends them from storage's readers, and never
touches a file itself.  Checked on the syntax tree of every module under
``reduct_twisted/http/``.
"""

import ast
import os

import reduct_twisted.http

HTTP_DIR = os.path.dirname(reduct_twisted.http.__file__)

#: ``os`` functions that read, write, open or close files.
FILE_CALLS = frozenset({
    "open", "close", "read", "write", "pread", "pwrite", "readv", "writev", "preadv",
    "pwritev", "sendfile", "fdopen", "ftruncate", "truncate", "lseek", "copy_file_range",
    "splice",
})
#: Checksums are storage's too.
CHECKSUMS = {"zlib": {"crc32", "adler32"}, "binascii": {"crc32"}}
#: Storage modules whose functions take descriptors or paths (use their objects instead).
LOW_LEVEL = {"reduct_twisted.storage.writer", "reduct_twisted.storage.cache"}


def _module_aliases(tree, module: str) -> set:
    """The names ``module`` is bound to in ``tree`` (``import os as o``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.asname or a.name for a in node.names if a.name == module)
    return names


def offences(source: str, filename: str = "<source>") -> list:
    """
    :return: ``"line: what"`` for every file or checksum operation in ``source``.
    """
    tree = ast.parse(source, filename)
    found = []
    os_names = _module_aliases(tree, "os")
    checksum_names = {alias: funcs for module, funcs in CHECKSUMS.items()
                      for alias in _module_aliases(tree, module)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = {a.name for a in node.names}
            if module == "os" and names & FILE_CALLS:
                found.append(f"{node.lineno}: from os import {sorted(names & FILE_CALLS)}")
            if module in CHECKSUMS and names & CHECKSUMS[module]:
                found.append(f"{node.lineno}: from {module} import a checksum")
            if module in LOW_LEVEL or (
                module == "reduct_twisted.storage" and names & {"writer", "cache"}
            ):
                found.append(f"{node.lineno}: imports storage's descriptor-level functions")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in LOW_LEVEL:
                    found.append(f"{node.lineno}: imports {alias.name}")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "open":
                found.append(f"{node.lineno}: open(...)")
            elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                owner, name = func.value.id, func.attr
                if owner in os_names and name in FILE_CALLS:
                    found.append(f"{node.lineno}: os.{name}(...)")
                elif name in checksum_names.get(owner, ()):
                    found.append(f"{node.lineno}: {owner}.{name}(...)")
                elif owner == "io" and name == "open":
                    found.append(f"{node.lineno}: io.open(...)")
        elif isinstance(node, ast.Attribute) and node.attr == "fd":
            found.append(f"{node.lineno}: uses a record's descriptor (.fd)")
    return found


def test_no_http_module_touches_files_or_checksums():
    """No module under reduct_twisted/http/ opens, reads, writes, sends or
    closes a file, or computes a CRC: storage's writers and readers do."""
    names = sorted(n for n in os.listdir(HTTP_DIR) if n.endswith(".py"))
    assert "producers.py" in names and "sinks.py" in names
    bad = {}
    for name in names:
        path = os.path.join(HTTP_DIR, name)
        with open(path, encoding="utf-8") as f:
            found = offences(f.read(), path)
        if found:
            bad[name] = found
    assert bad == {}


def test_the_check_sees_each_kind_of_offence():
    """The checker itself: each forbidden form is reported, harmless look-alikes are not."""
    source = "\n".join([
        "import os as o, zlib",
        "from os import pread",
        "from reduct_twisted.storage import writer",
        "o.sendfile(1, 2, 0, 10)",
        "o.close(3)",
        "zlib.crc32(b'x')",
        "open('f')",
        "alloc.fd",
        "o.path.join('a', 'b')",
        "request.write(b'x')",
        "transport.fileno()",
    ])
    found = offences(source)
    assert [line.split(":")[0] for line in found] == ["2", "3", "4", "5", "6", "7", "8"]
