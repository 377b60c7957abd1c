"""Reading documents: JSONL, folders, single files, bad input, segmentation."""

from __future__ import annotations

import json
import re
import types

import pytest

from gem_agents.config import InputConfig
from gem_agents.ingest import IngestError, iter_documents, read_documents, segment_text


def write_lines(path, lines: list[bytes | str]) -> None:
    path.write_bytes(b"\n".join(x if isinstance(x, bytes) else x.encode() for x in lines) + b"\n")


def test_jsonl_good_and_bad_lines_never_crash(tmp_path):
    f = tmp_path / "docs.jsonl"
    write_lines(f, [
        json.dumps({"id": "a", "text": "First doc.", "label": "x"}),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"id": "b"}),
        json.dumps({"id": "c", "text": "   "}),
        b'{"id": "d", "text": "caf\xe9"}',
        json.dumps({"id": "e", "text": "x" * 50}),
        json.dumps({"id": "a", "text": "Duplicate id."}),
        "",
        json.dumps({"text": "No id at all."}),
        json.dumps({"id": 7, "text": "Integer id."}),
    ])
    docs, problems = read_documents(f, InputConfig(max_chars=40))
    assert [d.id for d in docs] == ["a", "docs:10", "7"]
    assert docs[0].meta == {"label": "x"}
    by_line = {p.line: p.reason for p in problems}
    assert "invalid JSON" in by_line[2]
    assert "expected a JSON object" in by_line[3]
    assert "missing" in by_line[4]
    assert "empty text" in by_line[5]
    assert "not UTF-8" in by_line[6]
    assert "max_chars" in by_line[7]
    assert "duplicate id 'a'" in by_line[8]
    assert all(p.file == str(f) for p in problems)
    assert str(problems[0]).startswith(f"{f}:2: ")


def test_configurable_field_names(tmp_path):
    f = tmp_path / "d.jsonl"
    write_lines(f, [json.dumps({"doc": "x1", "body": "Hello there."})])
    docs, problems = read_documents(f, InputConfig(id_field="doc", text_field="body"))
    assert [(d.id, d.text) for d in docs] == [("x1", "Hello there.")] and not problems


def test_folder_of_text_files(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.md").write_text("# Title\n1. Open it.\n2. Close it.\n", encoding="utf-8")
    (tmp_path / "sub" / "b.txt").write_text("Plain text.", encoding="utf-8")
    (tmp_path / "bin.txt").write_bytes(b"\x00\x01\x02binary\x00")
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9\n")
    (tmp_path / "ignored.png").write_bytes(b"\x89PNG")
    docs, problems = read_documents(tmp_path)
    assert sorted(d.id for d in docs) == ["a.md", "sub/b.txt"]
    assert next(d for d in docs if d.id == "a.md").meta["title"] == "Title"
    reasons = {p.file.rsplit("/", 1)[-1]: p.reason for p in problems}
    assert "binary file" in reasons["bin.txt"]
    assert "not UTF-8" in reasons["latin.txt"]


def test_single_markdown_file_and_binary_jsonl(tmp_path):
    md = tmp_path / "howto.md"
    md.write_text("# Do it\r\nStep one.\r\n", encoding="utf-8")
    docs, problems = read_documents(md)
    assert [d.id for d in docs] == ["howto.md"] and "\r" not in docs[0].text and not problems
    binary = tmp_path / "x.jsonl"
    binary.write_bytes(b"\x00\x00\x00\xff" * 100)
    docs, problems = read_documents(binary)
    assert not docs and "binary file" in problems[0].reason


def test_json_array_file(tmp_path):
    f = tmp_path / "docs.json"
    f.write_text(json.dumps([{"id": "a", "text": "One."}, {"id": "b"}]), encoding="utf-8")
    docs, problems = read_documents(f)
    assert [d.id for d in docs] == ["a"] and "missing" in problems[0].reason


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(IngestError, match="no such file"):
        read_documents(tmp_path / "nope.jsonl")


def test_iterator_is_lazy(tmp_path):
    f = tmp_path / "d.jsonl"
    write_lines(f, [json.dumps({"id": str(i), "text": f"doc {i}"}) for i in range(5)])
    it = iter_documents(f)
    assert isinstance(it, types.GeneratorType)
    assert next(it).id == "0"


LONG = "\n\n".join(
    [f"# Section {s}\n" + "\n".join(f"{n}. Click the button number {n} in section {s} and wait patiently."
                                     for n in range(1, 9)) for s in range(6)]
)


def test_segmentation_at_headings_and_blank_lines_never_mid_word():
    parts = segment_text(LONG, 700)
    assert len(parts) > 1 and all(len(p) <= 700 for p in parts)
    assert all(p.startswith("# Section") for p in parts)  # headings open segments
    words = LONG.split()
    assert [w for p in parts for w in p.split()] == words  # nothing lost, no word cut


def test_segmentation_of_one_huge_paragraph_keeps_words_whole():
    text = " ".join(f"word{i}" for i in range(2000))
    parts = segment_text(text, 500)
    assert all(len(p) <= 500 for p in parts)
    assert [w for p in parts for w in p.split()] == text.split()


def test_long_documents_become_segments(tmp_path):
    f = tmp_path / "d.jsonl"
    write_lines(f, [json.dumps({"id": "long", "text": LONG}), json.dumps({"id": "short", "text": "Hi."})])
    docs, problems = read_documents(f, InputConfig(segment_chars=700), max_segments=3)
    segs = [d for d in docs if d.id.startswith("long")]
    assert [d.id for d in segs] == ["long#s0", "long#s1", "long#s2"]
    assert [d.segment for d in segs] == [0, 1, 2]
    assert all(d.meta["parent"] == "long" for d in segs)
    assert docs[-1].id == "short" and docs[-1].segment is None
    assert len(problems) == 1 and re.search(r"kept the first 3 segments, dropped \d+", problems[0].reason)
