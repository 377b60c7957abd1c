"""Read input documents (JSONL, a folder of .txt/.md files, or one text file) into `Document` records.

Nothing here raises on bad input: every unusable line or file becomes an `IngestProblem` naming the
file and line, and reading goes on. Long documents are cut into segments at headings and blank
lines (never mid-word) so that every model call sees a bounded amount of text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gem_agents.config import InputConfig
from gem_agents.io import InputError, decode_utf8, iter_json_lines, loads
from tools_runtime.records import Document

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".text", ".rst")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
_SNIFF_BYTES = 8192


class IngestProblem(BaseModel):
    """One input line or file that could not be used, and why."""

    file: str
    line: int | None = None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.reason}"


class IngestError(OSError):
    """The input path itself cannot be read (missing, a device, no permission)."""


# ---------------------------------------------------------------------------------------------------------
# segmentation

_HEADING = re.compile(r"^(#{1,6}\s|SECTION:|TITLE:)")


def _blocks(text: str) -> list[str]:
    """Paragraph-like blocks: a heading always starts a block, a blank line always ends one."""
    blocks: list[str] = []
    current: list[str] = []
    for line in text.split("\n"):
        if not line.strip():
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        if _HEADING.match(line) and current:
            blocks.append("\n".join(current))
            current = []
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def _split_long(block: str, limit: int) -> list[str]:
    """Cut one over-long block at line breaks, then sentence ends, then spaces; a word stays whole."""
    pieces: list[str] = []
    rest = block
    while len(rest) > limit:
        window = rest[: limit + 1]
        cut = -1
        for pattern in ("\n", ". ", "! ", "? ", "; ", " "):
            at = window.rfind(pattern)
            if at > limit // 4:
                cut = at + len(pattern)
                break
        if cut <= 0:
            # One word longer than the limit: keep it whole rather than cut it (the only overrun allowed).
            match = re.search(r"\s", rest[limit:])
            cut = limit + match.start() + 1 if match else len(rest)
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest.strip():
        pieces.append(rest)
    return [p for p in pieces if p.strip()]


def segment_text(text: str, segment_chars: int) -> list[str]:
    """Cut `text` into segments of at most `segment_chars` characters at headings and blank lines."""
    if len(text) <= segment_chars:
        return [text]
    segments: list[str] = []
    current = ""
    for block in _blocks(text):
        for piece in _split_long(block, segment_chars) if len(block) > segment_chars else [block]:
            joined = f"{current}\n\n{piece}" if current else piece
            # A heading opens a new segment once the current one is half full, so sections stay together.
            heading_break = bool(_HEADING.match(piece)) and len(current) > segment_chars // 2
            if current and (len(joined) > segment_chars or heading_break):
                segments.append(current)
                current = piece
            else:
                current = joined
    if current:
        segments.append(current)
    return segments


def _title_of(text: str) -> str:
    """The document's first heading-like line (`# Title`, `TITLE: …`, `How to …`), or ''."""
    for line in text.split("\n")[:5]:
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            return s.lstrip("#").strip()
        if s.upper().startswith("TITLE:"):
            return re.sub(r"\s*\(https?://[^)]*\)\s*$", "", s[6:]).strip()
        if s.lower().startswith("how to "):
            return s
        return ""
    return ""


def make_documents(doc_id: str, text: str, *, source: str = "", meta: dict[str, Any] | None = None,
                   segment_chars: int = 6000, max_segments: int | None = None) -> tuple[list[Document], int]:
    """One Document, or its segments (`id#s0`, `id#s1` …) when longer than `segment_chars`.

    Returns the documents and how many segments were dropped past `max_segments`.
    """
    meta = dict(meta or {})
    title = _title_of(text)
    if title:
        meta.setdefault("title", title)
    parts = segment_text(text, segment_chars)
    if len(parts) == 1:
        return [Document(id=doc_id, text=text, source=source, meta=meta)], 0
    dropped = 0
    if max_segments is not None and len(parts) > max_segments:
        dropped = len(parts) - max_segments
        parts = parts[:max_segments]
    docs = [
        Document(id=f"{doc_id}#s{i}", text=part, source=source, segment=i,
                 meta={**meta, "parent": doc_id, "segments": len(parts)})
        for i, part in enumerate(parts)
    ]
    return docs, dropped


# ---------------------------------------------------------------------------------------------------------
# readers


def _looks_binary(head: bytes) -> bool:
    """NUL bytes never occur in text files; a few control bytes in a row mean a binary format."""
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if b < 9 or 13 < b < 32)
    return bool(head) and controls / len(head) > 0.1


class _Reader:
    """Shared state of one read: the config, ids seen so far, and where problems go."""

    def __init__(self, cfg: InputConfig, max_segments: int | None):
        self.cfg = cfg
        self.max_segments = max_segments
        self.seen: set[str] = set()  # ids as given
        self.emitted: set[str] = set()  # ids of every document yielded, segments included

    def problem(self, file: str, line: int | None, reason: str) -> IngestProblem:
        return IngestProblem(file=file, line=line, reason=reason)

    def emit(self, file: str, line: int | None, doc_id: str, text: str, source: str,
             meta: dict[str, Any]) -> Iterator[Document | IngestProblem]:
        """Check one text and yield its documents (or the problem that stops it)."""
        if not text.strip():
            yield self.problem(file, line, f"document {doc_id!r} has empty text")
            return
        if len(text) > self.cfg.max_chars:
            yield self.problem(file, line, f"document {doc_id!r} has {len(text)} characters, over "
                                           f"input.max_chars={self.cfg.max_chars}")
            return
        if doc_id in self.seen:
            yield self.problem(file, line, f"duplicate id {doc_id!r} (skipped; the first one is kept)")
            return
        self.seen.add(doc_id)
        docs, dropped = make_documents(doc_id, text, source=source, meta=meta,
                                       segment_chars=self.cfg.segment_chars, max_segments=self.max_segments)
        # A segment id (`doc#s1`) may equal another document's own id: never merge two texts under one id.
        clash = next((d.id for d in docs if d.id in self.emitted), None)
        if clash is not None:
            what = "its segment id" if clash != doc_id else "its id"
            yield self.problem(file, line, f"document {doc_id!r}: {what} {clash!r} is already taken by another "
                                           "document or segment (skipped; ids are never merged)")
            return
        self.emitted.update(d.id for d in docs)
        yield from docs
        if dropped:
            yield self.problem(file, line, f"document {doc_id!r}: kept the first {len(docs)} segments, dropped "
                                           f"{dropped} (limits.max_segments)")

    def jsonl(self, path: Path) -> Iterator[Document | IngestProblem]:
        name = str(path)
        with path.open("rb") as fh:
            head = fh.read(_SNIFF_BYTES)
        if _looks_binary(head):
            yield self.problem(name, None, "binary file: expected JSON lines (one JSON object per line)")
            return
        for item in iter_json_lines(path, "corpus"):  # the one bounded JSON-lines reader
            if item.error is not None:
                yield self.problem(name, item.line, item.error)
                continue
            yield from self.record(name, item.line, item.value, f"{path.stem}:{item.line}")

    def record(self, name: str, line: int | None, obj: Any, fallback_id: str) -> Iterator[Document | IngestProblem]:
        """One parsed JSON value → its documents, or the problem with it."""
        if not isinstance(obj, dict):
            yield self.problem(name, line, f"expected a JSON object, got {type(obj).__name__}")
            return
        id_field, text_field = self.cfg.id_field, self.cfg.text_field
        text = obj.get(text_field)
        if not isinstance(text, str):
            what = "missing" if text is None else f"not a string ({type(text).__name__})"
            yield self.problem(name, line, f"text field {text_field!r} is {what}")
            return
        raw_id = obj.get(id_field)
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or str(raw_id).strip() == "":
            doc_id = fallback_id  # without an id the record is still usable; its position names it
        else:
            doc_id = str(raw_id).strip()
        meta = {k: v for k, v in obj.items() if k not in (id_field, text_field, "source")}
        source = obj["source"] if isinstance(obj.get("source"), str) else f"{name}:{line or fallback_id}"
        yield from self.emit(name, line, doc_id, text, source, meta)

    def json_array(self, path: Path) -> Iterator[Document | IngestProblem]:
        """A .json file holding one array of objects (item n is reported as line n)."""
        name = str(path)
        data = path.read_bytes()
        try:
            items = loads(decode_utf8(data, name), name)
        except InputError as exc:
            yield self.problem(name, None, str(exc).removeprefix(f"{name}:").strip())
            return
        for i, obj in enumerate(items, start=1):
            yield from self.record(f"{name}[{i - 1}]", None, obj, f"{path.stem}:{i}")

    def text_file(self, path: Path, doc_id: str) -> Iterator[Document | IngestProblem]:
        name = str(path)
        data = path.read_bytes()
        if _looks_binary(data[:_SNIFF_BYTES]):
            yield self.problem(name, None, "binary file: expected UTF-8 text or Markdown")
            return
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            yield self.problem(name, line, f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}")
            return
        yield from self.emit(name, None, doc_id, text.replace("\r\n", "\n"), name, {})


def _starts_with_array(path: Path) -> bool:
    """True when a .json file's first non-blank character opens an array (not JSON lines)."""
    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"[")


def iter_documents(path: str | Path, cfg: InputConfig | None = None, *,
                   max_segments: int | None = None) -> Iterator[Document | IngestProblem]:
    """Stream documents and problems from a JSONL file, a folder of text files, or one text file.

    Raises IngestError only when `path` itself is missing or unreadable; everything else is a problem.
    """
    cfg = cfg or InputConfig()
    p = Path(path)
    if not p.exists():
        raise IngestError(f"{p}: no such file or directory")
    reader = _Reader(cfg, max_segments)
    try:
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES)
            if not files:
                yield reader.problem(str(p), None, f"no {'/'.join(TEXT_SUFFIXES)} files in this folder")
            for f in files:
                try:
                    yield from reader.text_file(f, f.relative_to(p).as_posix())
                except OSError as exc:
                    yield reader.problem(str(f), None, f"cannot read: {exc.strerror or exc}")
        elif not p.is_file():
            raise IngestError(f"{p}: not a regular file")
        elif p.suffix.lower() == ".json" and _starts_with_array(p):
            yield from reader.json_array(p)
        elif p.suffix.lower() in JSONL_SUFFIXES:
            yield from reader.jsonl(p)
        else:
            yield from reader.text_file(p, p.name)
    except PermissionError as exc:
        raise IngestError(f"{p}: {exc.strerror or 'permission denied'}") from exc
    except IsADirectoryError as exc:  # pragma: no cover - guarded by is_dir above
        raise IngestError(f"{p}: is a directory") from exc


def read_documents(path: str | Path, cfg: InputConfig | None = None, *,
                   max_segments: int | None = None) -> tuple[list[Document], list[IngestProblem]]:
    """All documents (segmented) and all problems from `path`; see `iter_documents`."""
    docs: list[Document] = []
    problems: list[IngestProblem] = []
    for item in iter_documents(path, cfg, max_segments=max_segments):
        if isinstance(item, IngestProblem):
            problems.append(item)
        else:
            docs.append(item)
    return docs, problems
