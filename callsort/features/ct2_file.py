"""CTranslate2's ``model.bin``, read and written as a list of named variables.

The layout (binary versions 4 to 6, as ``ctranslate2.specs.ModelSpec`` writes it):
the version, the spec's name and revision, the variables (name, shape, type id, bytes)
and the aliases (name -> variable). callsort reads it to see a Whisper's shapes before
CTranslate2 does (:func:`read_model_file`), and to hand CTranslate2 a Whisper without
the decoder it never runs (:func:`write_model_file`). Integers are little-endian.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass

from callsort.errors import ModelError

BINARY_VERSIONS = (4, 5, 6)
"""The ``model.bin`` layouts this module reads (CTranslate2 3.x and 4.x write 6)."""


@dataclass(frozen=True)
class Variable:
    """One variable: ``shape`` in elements, ``type_id`` CTranslate2's, ``data`` its bytes."""

    name: str
    shape: tuple[int, ...]
    type_id: int
    data: bytes


@dataclass(frozen=True)
class ModelFile:
    """The parts of a ``model.bin``, in file order."""

    version: int
    spec: str
    revision: int
    variables: tuple[Variable, ...]
    aliases: tuple[tuple[str, str], ...]

    def shape(self, name: str) -> tuple[int, ...] | None:
        """The shape of variable ``name``, or None if the file does not hold it."""
        return next((v.shape for v in self.variables if v.name == name), None)


Select = Callable[[str, tuple[int, ...]], "int | None"]
"""``select(name, shape)``: how many leading rows of the variable to keep (its first
dimension, or 1 for a scalar), 0 to leave it out. Data left out is read past, never held."""


def keep_all(name: str, shape: tuple[int, ...]) -> int:
    return shape[0] if shape else 1


def read_model_file(f: io.RawIOBase | io.BufferedIOBase, *, select: Select = keep_all) -> ModelFile:
    """Parse the ``model.bin`` read from ``f``, keeping what ``select`` chooses.

    Raises :class:`~callsort.errors.ModelError` for another layout or a truncated file.
    """
    reader = _Reader(f)
    version = reader.unpack("I")
    if version not in BINARY_VERSIONS:
        raise ModelError(
            f"model.bin has CTranslate2 binary version {version}; callsort reads versions "
            f"{', '.join(map(str, BINARY_VERSIONS))} (convert it with a current CTranslate2)"
        )
    spec = reader.string()
    revision = reader.unpack("I")
    variables = []
    for _ in range(reader.unpack("I")):
        name = reader.string()
        shape = tuple(reader.unpack("I") for _ in range(reader.unpack("B")))
        type_id = reader.unpack("B")
        n_bytes = reader.unpack("I")
        rows = shape[0] if shape else 1
        keep = min(max(int(select(name, shape)), 0), rows)
        if keep == 0:
            reader.skip(n_bytes)
            continue
        kept_bytes = n_bytes // rows * keep if rows else n_bytes
        data = reader.read(kept_bytes)
        reader.skip(n_bytes - kept_bytes)
        variables.append(Variable(name, (keep, *shape[1:]) if shape else shape, type_id, data))
    aliases = tuple((reader.string(), reader.string()) for _ in range(reader.unpack("I")))
    return ModelFile(version, spec, revision, tuple(variables), aliases)


def write_model_file(model: ModelFile) -> io.BytesIO:
    """``model`` as the bytes of a ``model.bin``, in a buffer at position 0."""
    out = io.BytesIO()

    def string(text: str) -> None:
        encoded = text.encode("utf-8")
        out.write(struct.pack("<H", len(encoded) + 1) + encoded + b"\0")

    out.write(struct.pack("<I", model.version))
    string(model.spec)
    out.write(struct.pack("<II", model.revision, len(model.variables)))
    for v in model.variables:
        string(v.name)
        out.write(struct.pack("<B", len(v.shape)))
        out.write(struct.pack(f"<{len(v.shape)}I", *v.shape))
        out.write(struct.pack("<BI", v.type_id, len(v.data)))
        out.write(v.data)
    out.write(struct.pack("<I", len(model.aliases)))
    for alias, name in model.aliases:
        string(alias)
        string(name)
    out.seek(0)
    return out


class _Reader:
    """Exact reads from a binary file; a short read is a :class:`ModelError`."""

    def __init__(self, f: io.RawIOBase | io.BufferedIOBase) -> None:
        self._f = f

    def read(self, n: int) -> bytes:
        data = self._f.read(n) if n else b""
        if data is None or len(data) != n:
            raise ModelError("model.bin ends early: truncated or not a CTranslate2 model")
        return data

    def skip(self, n: int) -> None:
        while n > 0:
            n -= len(self.read(min(n, 1 << 20)))

    def unpack(self, fmt: str) -> int:
        return struct.unpack(f"<{fmt}", self.read(struct.calcsize(f"<{fmt}")))[0]

    def string(self) -> str:
        raw = self.read(self.unpack("H"))
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise ModelError("model.bin is not a CTranslate2 model (unreadable names)") from None
