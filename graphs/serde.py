"""A strict checkpoint serializer: a checkpoint file never names a callable that gets imported and run.

LangGraph's default `JsonPlusSerializer` rebuilds any `(module, name, args)` a msgpack entry names
(`os.system("…")` included) unless `LANGGRAPH_STRICT_MSGPACK` is set, and even in strict mode a blocked
entry comes back silently as raw data. Here every checkpointer gets a serializer whose msgpack hook
allows only LangGraph's own safe types and this project's pydantic records, and *refuses* anything
else with `UnsafeCheckpoint` naming the type, so a tampered `checkpoints.sqlite` stops with a message.
"""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import ormsgpack
from langgraph.checkpoint.serde import _msgpack as lg_msgpack
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer, _create_msgpack_ext_hook

# Extension codes that name a (module, name) to construct or call (LangGraph's jsonplus encoding).
_CONSTRUCTING = {0, 1, 2, 3, 4, 5}
_OUR_PACKAGES = ("tools_runtime.", "graphs.", "gem_agents.")


class UnsafeCheckpoint(ValueError):
    """A checkpoint entry names a type outside the allow-list; nothing was imported or called."""


def _our_model(module: str, name: str) -> bool:
    """True when (module, name) is a pydantic model of this project (data classes, no side effects)."""
    if not module.startswith(_OUR_PACKAGES) or not name.isidentifier():
        return False
    try:
        cls = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return False
    from pydantic import BaseModel

    return isinstance(cls, type) and issubclass(cls, BaseModel)


def _strict_hook(refused: list[UnsafeCheckpoint]) -> Any:
    # (module, name) pairs; langgraph types the set with variable-length tuples.
    allowed: set[tuple[str, ...]] = set()
    inner = _create_msgpack_ext_hook(allowed)  # strict: SAFE_MSGPACK_TYPES plus `allowed`, nothing else

    def hook(code: int, data: bytes) -> Any:
        if code in _CONSTRUCTING:
            try:
                head = ormsgpack.unpackb(data, ext_hook=lambda c, d: None, option=ormsgpack.OPT_NON_STR_KEYS)
                module, name = str(head[0]), str(head[1])
            except Exception as exc:  # noqa: BLE001 — any malformed entry is refused the same way
                refused.append(UnsafeCheckpoint(f"a checkpoint entry is malformed ({type(exc).__name__})"))
                raise refused[-1] from None
            key = (module, name)
            if key not in lg_msgpack.SAFE_MSGPACK_TYPES and key not in allowed:
                if not _our_model(module, name):
                    refused.append(UnsafeCheckpoint(
                        f"a checkpoint entry names {module}.{name}, which is not an allowed type; the checkpoint "
                        "file was not written by gem (refused, nothing was run)"))
                    raise refused[-1]
                allowed.add(key)
            if code == 3 and (module, name, str(head[3]) if len(head) > 3 else "") not in \
                    lg_msgpack.SAFE_MSGPACK_METHODS:
                refused.append(UnsafeCheckpoint(f"a checkpoint entry calls a method of {module}.{name}, which is "
                                                "not allowed (refused, nothing was run)"))
                raise refused[-1]
        return inner(code, data)

    return hook


class StrictSerializer(JsonPlusSerializer):
    """JsonPlusSerializer with the strict hook; a refused entry raises UnsafeCheckpoint (ormsgpack would
    only say "ext_hook failed"), and a checkpoint that does not decode raises it too."""

    def __init__(self) -> None:
        self._refused: list[UnsafeCheckpoint] = []
        super().__init__(pickle_fallback=False, allowed_msgpack_modules=None,
                         __unpack_ext_hook__=_strict_hook(self._refused))

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        """See JsonPlusSerializer.loads_typed; never unpickles, never runs what an entry names."""
        if data[0] == "pickle":
            raise UnsafeCheckpoint("a checkpoint entry is pickled; refused (pickle runs code)")
        self._refused.clear()
        try:
            return super().loads_typed(data)
        except UnsafeCheckpoint:
            raise
        except Exception as exc:  # noqa: BLE001 — a corrupt entry is a clear error, not a traceback
            if self._refused:
                raise self._refused[-1] from None
            raise UnsafeCheckpoint(f"a checkpoint entry cannot be decoded ({type(exc).__name__}: {exc}); "
                                   "the checkpoint file is corrupt") from None


def strict_serde() -> StrictSerializer:
    """The serializer every checkpointer of this project uses (no pickle, refusing unknown types)."""
    return StrictSerializer()


def memory_checkpointer() -> Any:
    """An in-memory checkpointer with the strict serializer."""
    from langgraph.checkpoint.memory import InMemorySaver

    return InMemorySaver(serde=strict_serde())


@asynccontextmanager
async def sqlite_checkpointer(path: str | Path) -> AsyncIterator[Any]:
    """An async SQLite checkpointer at `path` with the strict serializer; a file that is not a usable
    SQLite database raises UnsafeCheckpoint naming it."""
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(str(path)) as conn:
        saver = AsyncSqliteSaver(conn, serde=strict_serde())
        try:
            await saver.setup()
        except sqlite3.DatabaseError as exc:
            raise UnsafeCheckpoint(f"{path}: not a usable checkpoint file ({exc})") from None
        yield saver
