"""The loader that makes the prebuilt llama.cpp wheel load on glibc < 2.38, on the real wheel's libraries."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import subprocess
import sys
from pathlib import Path

import pytest

from gem_agents.providers import llama_glibc_compat as compat

REPO = Path(__file__).resolve().parents[3]


def test_elf_hash_and_glibc_version_parsing(monkeypatch):
    assert compat.elf_hash("GLIBC_2.2.5") == 0x09691A75  # the value every x86-64 binary carries
    assert compat.elf_hash("GLIBC_2.38") == 0x069691B8  # as stored in the wheel's libllama.so
    monkeypatch.setattr(compat.os, "confstr", lambda name: "glibc 2.36")
    assert compat.glibc_version() == (2, 36) and compat.needs_patch()
    monkeypatch.setattr(compat.os, "confstr", lambda name: "glibc 2.39")
    assert not compat.needs_patch()
    monkeypatch.setattr(compat.os, "confstr", lambda name: "musl 1.2")
    assert compat.glibc_version() is None and not compat.needs_patch()


def test_a_file_that_is_not_elf_is_refused():
    pytest.importorskip("elftools")
    with pytest.raises(compat.GlibcCompatError, match="not a readable ELF"):
        compat.patch_elf(b"\x7fELF-but-not-really" + b"\0" * 64, name="fake.so")


# ---------------------------------------------------------------------------------------------------------
# on the installed wheel (the `local` extra)

needs_wheel = pytest.mark.skipif(importlib.util.find_spec("llama_cpp_py_sync") is None
                                 or importlib.util.find_spec("elftools") is None,
                                 reason="the `local` extra (llama-cpp-py-sync, pyelftools) is not installed")


def _libllama() -> Path:
    return compat._package_dir() / "libllama.so"


def _glibc_imports(data: bytes) -> dict[str, str]:
    """Every versioned import of a library: symbol name → version name."""
    from elftools.elf.elffile import ELFFile

    elf = ELFFile(io.BytesIO(data))
    versions = {}
    for _vn, auxes in elf.get_section_by_name(".gnu.version_r").iter_versions():
        for aux in auxes:
            versions[aux["vna_other"]] = aux.name
    versym = elf.get_section_by_name(".gnu.version")
    out = {}
    for i, sym in enumerate(elf.get_section_by_name(".dynsym").iter_symbols()):
        ndx = versym.get_symbol(i)["ndx"]
        if isinstance(ndx, int) and ndx in versions and sym["st_shndx"] == "SHN_UNDEF":
            out[sym.name] = versions[ndx]
    return out


@needs_wheel
def test_the_four_c23_imports_become_the_classic_glibc_2_2_5_functions():
    original = _libllama().read_bytes()
    before = _glibc_imports(original)
    assert {s for s, v in before.items() if v == "GLIBC_2.38"} == set(compat.EXPECTED)
    patched, renamed = compat.patch_elf(original, name="libllama.so")
    assert renamed == sorted(compat.EXPECTED)
    after = _glibc_imports(patched)
    assert "GLIBC_2.38" not in after.values()
    for new_name in compat.EXPECTED.values():
        assert after[new_name] == "GLIBC_2.2.5"
    assert len(patched) == len(original)
    # every other import is untouched
    assert {s: v for s, v in after.items() if s not in compat.EXPECTED.values()} == \
        {s: v for s, v in before.items() if s not in compat.EXPECTED}


@needs_wheel
def test_an_unexpected_glibc_2_38_symbol_is_refused_by_name():
    from elftools.elf.elffile import ELFFile

    data = bytearray(_libllama().read_bytes())
    dynstr = ELFFile(io.BytesIO(bytes(data))).get_section_by_name(".dynstr")
    start, end = dynstr["sh_offset"], dynstr["sh_offset"] + dynstr["sh_size"]
    at = data.index(b"__isoc23_sscanf\0", start, end)
    data[at:at + 15] = b"__isoc23_wscanf"  # a GLIBC_2.38 import this loader does not know
    with pytest.raises(compat.GlibcCompatError, match=r"__isoc23_wscanf.*refusing to patch"):
        compat.patch_elf(bytes(data), name="libllama.so")


@needs_wheel
def test_patched_copies_go_to_the_cache_and_site_packages_is_untouched(tmp_path):
    pkg = compat._package_dir()
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in pkg.glob("lib*.so*")}
    folder = compat.patched_runtime_dir(pkg, tmp_path)
    assert folder.parent == tmp_path and (folder / ".complete").is_file()
    assert {p.name for p in folder.glob("lib*.so*")} == set(digest)
    for p in folder.glob("lib*.so*"):
        assert "GLIBC_2.38" not in _glibc_imports(p.read_bytes()).values()
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in pkg.glob("lib*.so*")} == digest
    mtime = (folder / "libllama.so").stat().st_mtime_ns
    assert compat.patched_runtime_dir(pkg, tmp_path) == folder  # built once, then reused
    assert (folder / "libllama.so").stat().st_mtime_ns == mtime


@needs_wheel
def test_the_prebuilt_runtime_loads_here(tmp_path):
    """In a fresh interpreter (the native library loads once per process): patched where glibc needs it."""
    code = ("import sys; from pathlib import Path; from gem_agents.providers import llama_glibc_compat as c; "
            "L = c.load_prebuilt(Path(sys.argv[1])); from llama_cpp_py_sync import _cffi_bindings as b; "
            "print(L.__name__, c.needs_patch(), Path(b._find_library()).parent)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=REPO,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    name, patched, folder = out.stdout.split()
    assert name == "Llama"
    assert (Path(folder).parent == tmp_path) == (patched == "True")
