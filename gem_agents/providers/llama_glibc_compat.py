"""Load the prebuilt llama.cpp runtime (`llama-cpp-py-sync`) on glibc older than 2.38.

The package's libraries are built on glibc 2.38, where C23 made the compiler emit
`__isoc23_strtol`, `__isoc23_strtoul`, `__isoc23_strtoull` and `__isoc23_sscanf` instead of the
classic functions, all four versioned GLIBC_2.38. Older glibc (Debian 12 has 2.36) has the classic
functions, which behave the same for what llama.cpp parses (C23 only adds `0b` binary prefixes), so
a copy of each library is patched to import those instead:

- each of the four symbols gets its classic name: its `st_name` in `.dynsym` is pointed at the
  classic name, which is the tail of the same `.dynstr` string (`__isoc23_strtol` ends in
  `strtol`), so no string is moved and no other symbol that shares the string changes;
- the GLIBC_2.38 version-needed entry of libc.so.6 is rewritten to GLIBC_2.2.5, the version
  of the four classic symbols on x86-64 (its name is already in `.dynstr`).

Only copies are patched, in the model cache (never site-packages), and only when the set of
GLIBC_2.38 symbols is exactly the expected one: anything else is refused with the symbols named,
since a symbol we do not know could behave differently. On glibc >= 2.38 nothing is patched.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

RUNTIME_PACKAGE = "llama_cpp_py_sync"
RUNTIME_DIST = "llama-cpp-py-sync"
NEW_GLIBC = (2, 38)
PREFIX = "__isoc23_"
EXPECTED = {"__isoc23_strtol": "strtol", "__isoc23_strtoul": "strtoul", "__isoc23_strtoull": "strtoull",
            "__isoc23_sscanf": "sscanf"}
OLD_VERSION = "GLIBC_2.2.5"  # x86-64's base glibc version: strtol, strtoul, strtoull and sscanf live there
_VERNEED = struct.Struct("<HHIII")  # vn_version, vn_cnt, vn_file, vn_aux, vn_next
_VERNAUX = struct.Struct("<IHHII")  # vna_hash, vna_flags, vna_other, vna_name, vna_next


class GlibcCompatError(RuntimeError):
    """The prebuilt runtime cannot be made to load on this glibc."""


def glibc_version() -> tuple[int, int] | None:
    """The running glibc's (major, minor), or None when the C library is not glibc."""
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):
        return None
    name, _, version = text.partition(" ")
    parts = version.split(".")
    if name != "glibc" or len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        return None
    return int(parts[0]), int(parts[1])


def needs_patch(version: tuple[int, int] | None = None) -> bool:
    """Whether the prebuilt libraries need the patch here (glibc older than 2.38)."""
    version = glibc_version() if version is None else version
    return version is not None and version < NEW_GLIBC


def elf_hash(name: str) -> int:
    """The SysV ELF hash of a version name (what `vna_hash` holds)."""
    h = 0
    for c in name.encode():
        h = ((h << 4) + c) & 0xFFFFFFFF
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFFFFFF
    return h


def _cstr(data: bytes | bytearray, offset: int) -> str:
    end = data.index(b"\0", offset)
    return bytes(data[offset:end]).decode("ascii", "replace")


def _version_tuple(name: str) -> tuple[int, ...] | None:
    if not name.startswith("GLIBC_"):
        return None
    try:
        return tuple(int(p) for p in name[len("GLIBC_"):].split("."))
    except ValueError:
        return None


def patch_elf(data: bytes, *, name: str = "library") -> tuple[bytes, list[str]]:
    """`data` (an x86-64 ELF shared library) with its GLIBC_2.38 imports moved to the classic symbols.

    Returns the patched bytes and the renamed symbols; bytes without a GLIBC_2.38 import come back
    unchanged. Raises GlibcCompatError for any GLIBC_2.38 symbol outside the expected four.
    """
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    try:
        elf = ELFFile(io.BytesIO(data))
        if elf.elfclass != 64 or not elf.little_endian or elf["e_machine"] != "EM_X86_64":
            raise GlibcCompatError(f"{name}: not a little-endian x86-64 ELF64 library; nothing to patch safely")
        dynsym, dynstr = elf.get_section_by_name(".dynsym"), elf.get_section_by_name(".dynstr")
        versym, verneed = elf.get_section_by_name(".gnu.version"), elf.get_section_by_name(".gnu.version_r")
    except ELFError as exc:
        raise GlibcCompatError(f"{name}: not a readable ELF file ({exc})") from exc
    if not isinstance(dynsym, SymbolTableSection) or dynstr is None or verneed is None or versym is None:
        return data, []  # nothing versioned is imported: nothing to move
    out = bytearray(data)
    str_off = dynstr["sh_offset"]
    strtab = bytes(data[str_off:str_off + dynstr["sh_size"]])

    # Walk the version-needed chain by hand: pyelftools reads it but does not give entry offsets.
    targets: list[tuple[int, int]] = []  # (file offset of the vernaux entry, its version index)
    pos = verneed["sh_offset"]
    for _ in range(verneed["sh_info"] or 1 << 16):
        _vn_version, vn_cnt, vn_file, vn_aux, vn_next = _VERNEED.unpack_from(data, pos)
        lib = _cstr(strtab, vn_file)
        aux = pos + vn_aux
        for _ in range(vn_cnt):
            _hash, _flags, other, vna_name, vna_next = _VERNAUX.unpack_from(data, aux)
            version = _cstr(strtab, vna_name)
            if version == "GLIBC_2.38":
                if lib != "libc.so.6":
                    raise GlibcCompatError(f"{name}: needs GLIBC_2.38 from {lib}, not libc.so.6; refusing to patch")
                targets.append((aux, other))
            if not vna_next:
                break
            aux += vna_next
        if not vn_next:
            break
        pos += vn_next
    if not targets:
        return data, []
    indices = {other for _, other in targets}

    ver_off = versym["sh_offset"]
    sym_off, entsize = dynsym["sh_offset"], dynsym["sh_entsize"] or 24
    found: dict[str, int] = {}
    for i, sym in enumerate(dynsym.iter_symbols()):
        (ndx,) = struct.unpack_from("<H", data, ver_off + 2 * i)
        if ndx & 0x7FFF in indices:
            if sym["st_shndx"] != "SHN_UNDEF":
                raise GlibcCompatError(f"{name}: defines {sym.name} at GLIBC_2.38; refusing to patch")
            found[sym.name] = sym_off + i * entsize
    unexpected = sorted(set(found) - set(EXPECTED))
    if unexpected:
        raise GlibcCompatError(
            f"{name}: imports GLIBC_2.38 symbols this loader does not know: {', '.join(unexpected)} "
            f"(it only maps {', '.join(sorted(EXPECTED))}); refusing to patch. Use a glibc >= 2.38 system "
            "or the compiled runtime: pip install -e '.[local-compile]'")

    old = strtab.find(b"\0" + OLD_VERSION.encode() + b"\0")
    if old < 0:
        raise GlibcCompatError(f"{name}: no {OLD_VERSION} string in .dynstr to point the version entry at")
    for sym_name, entry in found.items():
        (st_name,) = struct.unpack_from("<I", data, entry)
        new = st_name + len(PREFIX)
        if _cstr(strtab, new) != EXPECTED[sym_name]:
            raise GlibcCompatError(f"{name}: {sym_name} is not stored as {PREFIX}{EXPECTED[sym_name]}")
        struct.pack_into("<I", out, entry, new)
    for aux, other in targets:
        _hash, _flags, _other, _name, vna_next = _VERNAUX.unpack_from(data, aux)
        _VERNAUX.pack_into(out, aux, elf_hash(OLD_VERSION), 0, other, old + 1, vna_next)
    return bytes(out), sorted(found)


def needed_glibc(data: bytes) -> tuple[int, ...]:
    """The highest GLIBC_x.y version a library imports (for checks after patching)."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection

    elf = ELFFile(io.BytesIO(data))
    section = elf.get_section_by_name(".gnu.version_r")
    best: tuple[int, ...] = ()
    if not isinstance(section, GNUVerNeedSection):
        return best
    for _verneed, auxes in section.iter_versions():
        for aux in auxes:
            v = _version_tuple(aux.name)
            if v and v > best:
                best = v
    return best


def _package_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec(RUNTIME_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"No module named {RUNTIME_PACKAGE!r}", name=RUNTIME_PACKAGE)
    return Path(next(iter(spec.submodule_search_locations)))


def patched_runtime_dir(package_dir: Path, cache: Path) -> Path:
    """A cache folder holding the package's libraries, patched; built once (atomically) and reused."""
    libs = sorted(p for p in package_dir.iterdir() if p.is_file() and ".so" in p.suffixes + [p.suffix]
                  and p.name.startswith("lib"))
    if not libs:
        raise GlibcCompatError(f"{package_dir}: no shared libraries to load")
    digest = hashlib.sha256()
    for lib in libs:
        digest.update(lib.name.encode() + b"\0" + hashlib.sha256(lib.read_bytes()).digest())
    target = cache / f"{RUNTIME_DIST}-{digest.hexdigest()[:16]}"
    if (target / ".complete").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".runtime-", dir=cache))
    try:
        here = glibc_version()
        for lib in libs:
            patched, _renamed = patch_elf(lib.read_bytes(), name=lib.name)
            need = needed_glibc(patched)
            if here is not None and need > here:
                raise GlibcCompatError(f"{lib.name}: still needs GLIBC_{'.'.join(map(str, need))} after the "
                                       f"patch; this system has {here[0]}.{here[1]}")
            (tmp / lib.name).write_bytes(patched)
            (tmp / lib.name).chmod(0o755)
        (tmp / ".complete").write_text("patched copies of " + str(package_dir) + "\n", encoding="utf-8")
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / ".complete").is_file():  # another process won the race only if it finished
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_prebuilt(cache: Path) -> Any:
    """The `llama_cpp_py_sync.Llama` class with its native library loaded (patched copies where needed).

    Raises ImportError when the package is absent and GlibcCompatError / OSError when it cannot load.
    """
    import llama_cpp_py_sync  # noqa: F401 — imports no native code yet
    from llama_cpp_py_sync import _cffi_bindings as bindings
    from llama_cpp_py_sync.llama import Llama

    if platform.system() == "Linux" and needs_patch() and bindings._lib is None:
        folder = patched_runtime_dir(_package_dir(), cache)
        core = folder / "libllama.so"
        # The package looks for its libraries next to its own files first, so point its lookup at the
        # patched folder; RUNPATH=$ORIGIN makes libllama pull its ggml libraries from there too.
        bindings._find_library = lambda: str(core)
        bindings._lib = bindings.ffi.dlopen(str(core))
    try:
        bindings.get_lib()
    except RuntimeError as exc:
        raise GlibcCompatError(str(exc)) from exc
    return Llama
