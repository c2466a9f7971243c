"""Tensors to and from the wire: raw little-endian bytes with dtype and shape, bit-exact.

A tensor of at most 1 MiB goes as one `Tensor` message; a larger one as a stream of `TensorChunk`
messages of at most 1 MiB each, reassembled with size and CRC-32 checks. A received shape is bounded
(rank, every dimension, the bytes it needs) before any buffer is allocated. numpy arrays and torch
tensors are both accepted; bfloat16 maps to `ml_dtypes.bfloat16` on the numpy side.

The CRC-32 is zlib's (the same polynomial and value), computed with ISA-L, which runs several times
faster than `zlib.crc32` on large tensors. A reassembled tensor lands in a numpy buffer, which numpy
backs with huge pages when it is large, so receiving a big tensor does not pay a page fault per 4 KiB.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import ml_dtypes
import numpy as np
from isal import isal_zlib

from services.runtime.errors import InvalidArgumentError, ResourceExhaustedError
from songsmith.v1 import tensor_pb2

if TYPE_CHECKING:
    import torch

MAX_CHUNK_BYTES = 1 << 20
# Bounds on a received shape, checked before anything is allocated or reshaped: no tensor of ours
# has more than 4 dimensions (numpy itself stops at 64), and none has a side of 2^31 elements.
MAX_RANK = 8
MAX_DIM = (1 << 31) - 1

_NUMPY_DTYPES: dict[int, np.dtype] = {
    tensor_pb2.DATA_TYPE_FLOAT32: np.dtype("<f4"),
    tensor_pb2.DATA_TYPE_FLOAT16: np.dtype("<f2"),
    tensor_pb2.DATA_TYPE_BFLOAT16: np.dtype(ml_dtypes.bfloat16),
    tensor_pb2.DATA_TYPE_INT64: np.dtype("<i8"),
    tensor_pb2.DATA_TYPE_INT32: np.dtype("<i4"),
    tensor_pb2.DATA_TYPE_INT16: np.dtype("<i2"),
    tensor_pb2.DATA_TYPE_BOOL: np.dtype(np.bool_),
}
_WIRE_DTYPES: dict[np.dtype, int] = {
    np.dtype(dt).newbyteorder("="): code for code, dt in _NUMPY_DTYPES.items()
}


def _torch_wire_code(dtype: torch.dtype) -> int:
    """The wire dtype code of a torch dtype (TypeError for one the contract has no code for)."""
    import torch

    codes = {
        torch.float32: tensor_pb2.DATA_TYPE_FLOAT32,
        torch.float16: tensor_pb2.DATA_TYPE_FLOAT16,
        torch.bfloat16: tensor_pb2.DATA_TYPE_BFLOAT16,
        torch.int64: tensor_pb2.DATA_TYPE_INT64,
        torch.int32: tensor_pb2.DATA_TYPE_INT32,
        torch.int16: tensor_pb2.DATA_TYPE_INT16,
        torch.bool: tensor_pb2.DATA_TYPE_BOOL,
    }
    if dtype not in codes:
        raise TypeError(f"unsupported tensor dtype {dtype}")
    return codes[dtype]


def _is_torch_tensor(x: object) -> bool:
    """True for a torch tensor; torch is never imported for it (an object of a module not yet loaded
    cannot be one), so processes that send only numpy arrays never load torch."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _as_numpy(x: np.ndarray | torch.Tensor) -> tuple[np.ndarray, int]:
    """A little-endian, C-contiguous numpy view of `x` and its wire dtype code."""
    if _is_torch_tensor(x):
        import torch

        code = _torch_wire_code(x.dtype)
        tensor = x.detach().cpu().contiguous()
        if tensor.dtype == torch.bfloat16:
            array = tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        else:
            array = tensor.numpy()
        return array, code
    array = np.asarray(x)
    code = _WIRE_DTYPES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise TypeError(f"unsupported array dtype {array.dtype}")
    wire = _NUMPY_DTYPES[code]
    if array.dtype != wire:
        array = array.astype(wire)
    return (array if array.flags.c_contiguous else array.copy(order="C")), code


def _payload(array: np.ndarray) -> memoryview:
    return memoryview(array.reshape(-1).view(np.uint8)) if array.size else memoryview(b"")


def tensor_to_proto(x: np.ndarray | torch.Tensor) -> tensor_pb2.Tensor:
    """One `Tensor` message for `x`; tensors over 1 MiB must use `iter_tensor_chunks` instead."""
    array, code = _as_numpy(x)
    if array.nbytes > MAX_CHUNK_BYTES:
        raise ValueError(f"tensor of {array.nbytes} bytes exceeds 1 MiB; stream it with iter_tensor_chunks")
    return tensor_pb2.Tensor(dtype=code, shape=array.shape, data=_payload(array).tobytes())


def _checked_dtype(code: int, field: str) -> np.dtype:
    if code not in _NUMPY_DTYPES:
        raise InvalidArgumentError(field, f"unknown or missing dtype {code}")
    return _NUMPY_DTYPES[code]


def _checked_nbytes(shape: Iterable[int], dtype: np.dtype, field: str) -> int:
    """The byte count a shape needs; INVALID_ARGUMENT naming `field` for a rank over MAX_RANK or a
    dimension outside 0..MAX_DIM (an empty tensor included: [0, 2^62] holds no bytes but no array)."""
    dims = list(shape)
    if len(dims) > MAX_RANK:
        raise InvalidArgumentError(field, f"shape has {len(dims)} dimensions, more than {MAX_RANK}")
    if any(d < 0 for d in dims):
        raise InvalidArgumentError(field, f"negative dimension in shape {dims}")
    if any(d > MAX_DIM for d in dims):
        raise InvalidArgumentError(field, f"dimension over {MAX_DIM} in shape {dims}")
    return math.prod(dims) * dtype.itemsize


def _view(data: bytes | bytearray, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def proto_to_numpy(message: tensor_pb2.Tensor, field: str = "tensor") -> np.ndarray:
    """The numpy array a `Tensor` message carries (read-only view of its bytes).

    Raises InvalidArgumentError naming `field` when dtype, shape and byte count disagree.
    """
    dtype = _checked_dtype(message.dtype, field)
    expected = _checked_nbytes(message.shape, dtype, field)
    if len(message.data) != expected:
        raise InvalidArgumentError(
            field, f"shape {list(message.shape)} needs {expected} bytes, got {len(message.data)}"
        )
    return _checked_bools(_view(message.data, dtype, tuple(message.shape)), field)


def _checked_bools(array: np.ndarray, field: str) -> np.ndarray:
    if array.dtype == np.bool_ and array.size and array.view(np.uint8).max() > 1:
        raise InvalidArgumentError(field, "boolean tensor holds a byte other than 0 or 1")
    return array


def numpy_to_torch(array: np.ndarray) -> torch.Tensor:
    """A torch tensor owning a copy of `array` (bfloat16 included)."""
    import torch

    if array.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(array.copy())


def proto_to_torch(message: tensor_pb2.Tensor, field: str = "tensor") -> torch.Tensor:
    """The torch tensor a `Tensor` message carries, with the same validation as `proto_to_numpy`."""
    return numpy_to_torch(proto_to_numpy(message, field))


def _stream_start(
    x: np.ndarray | torch.Tensor, chunk_bytes: int
) -> tuple[memoryview, tensor_pb2.TensorHeader]:
    """The payload of a tensor to stream and the header announcing it."""
    if not 0 < chunk_bytes <= MAX_CHUNK_BYTES:
        raise ValueError(f"chunk_bytes must be in 1..{MAX_CHUNK_BYTES}")
    array, code = _as_numpy(x)
    payload = _payload(array)
    header = tensor_pb2.TensorHeader(
        dtype=code, shape=array.shape, total_bytes=len(payload), crc32=isal_zlib.crc32(payload)
    )
    return payload, header


def iter_tensor_chunks(
    x: np.ndarray | torch.Tensor, chunk_bytes: int = MAX_CHUNK_BYTES
) -> Iterator[tensor_pb2.TensorChunk]:
    """Stream `x` as `TensorChunk` messages of at most `chunk_bytes` (1 MiB) of data each."""
    payload, header = _stream_start(x, chunk_bytes)
    if not payload:
        yield tensor_pb2.TensorChunk(header=header, index=0, data=b"")
        return
    for index, start in enumerate(range(0, len(payload), chunk_bytes)):
        piece = payload[start : start + chunk_bytes]
        yield tensor_pb2.TensorChunk(header=header if index == 0 else None, index=index, data=piece.tobytes())


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _read_varint(view: memoryview, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(view) or shift > 63:
            raise ValueError("truncated varint")
        byte = view[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7


def iter_serialized_chunks(
    x: np.ndarray | torch.Tensor, chunk_bytes: int = MAX_CHUNK_BYTES
) -> Iterator[bytes]:
    """The same stream as `iter_tensor_chunks`, already serialized as `TensorChunk` wire bytes.

    For bulk streams (use it with a stub whose serializer is None): each chunk's payload is copied
    once, straight into its message, instead of through a Python bytes object and a proto message.
    """
    payload, announced = _stream_start(x, chunk_bytes)
    header = announced.SerializeToString()
    for index, start in enumerate(range(0, max(len(payload), 1), chunk_bytes)):
        piece = payload[start : start + chunk_bytes]
        prefix = b"\x0a" + _varint(len(header)) + header if index == 0 else b"\x10" + _varint(index)
        yield b"".join((prefix, b"\x1a", _varint(len(piece)), piece))


class TensorAssembler:
    """Reassembles one chunked tensor, refusing anything truncated, oversized or inconsistent."""

    def __init__(self, max_bytes: int, field: str = "tensor") -> None:
        """`max_bytes` bounds the declared size, checked before any allocation."""
        self._max_bytes = max_bytes
        self._field = field
        self._header: tensor_pb2.TensorHeader | None = None
        self._buffer = np.empty(0, dtype=np.uint8)
        self._filled = 0
        self._next_index = 0
        self._crc = 0

    def add(self, chunk: tensor_pb2.TensorChunk) -> None:
        """Take the next chunk in order."""
        self._take(chunk.index, chunk.header if chunk.HasField("header") else None, chunk.data)

    def add_serialized(self, raw: bytes) -> None:
        """Take the next chunk as `TensorChunk` wire bytes, without copying its payload twice."""
        view = memoryview(raw)
        header: tensor_pb2.TensorHeader | None = None
        index, data, position = 0, view[0:0], 0
        try:
            while position < len(view):
                key, position = _read_varint(view, position)
                field, wire = key >> 3, key & 7
                if wire == 0:
                    value, position = _read_varint(view, position)
                    index = value if field == 2 else index
                elif wire == 2:
                    length, position = _read_varint(view, position)
                    if position + length > len(view):
                        raise ValueError("truncated field")
                    piece, position = view[position : position + length], position + length
                    if field == 1:
                        header = tensor_pb2.TensorHeader.FromString(piece)
                    elif field == 3:
                        data = piece
                elif wire in (1, 5):
                    position += 8 if wire == 1 else 4
                else:
                    raise ValueError(f"unsupported wire type {wire}")
        except Exception as exc:
            raise InvalidArgumentError(self._field, f"malformed chunk: {exc}") from exc
        self._take(index, header, data)

    def _take(self, index: int, header: tensor_pb2.TensorHeader | None, data: bytes | memoryview) -> None:
        if index != self._next_index:
            raise InvalidArgumentError(self._field, f"chunk {index} arrived, expected {self._next_index}")
        if index == 0:
            self._start(header)
        elif header is not None:
            raise InvalidArgumentError(self._field, f"chunk {index} repeats the header")
        if len(data) > MAX_CHUNK_BYTES:
            raise InvalidArgumentError(self._field, f"chunk {index} carries more than 1 MiB")
        end = self._filled + len(data)
        if end > len(self._buffer):
            raise InvalidArgumentError(
                self._field, f"chunks carry more than the declared {len(self._buffer)} bytes"
            )
        self._buffer[self._filled : end] = np.frombuffer(data, dtype=np.uint8)
        self._crc = isal_zlib.crc32(data, self._crc)
        self._filled = end
        self._next_index += 1

    def _start(self, header: tensor_pb2.TensorHeader | None) -> None:
        if header is None:
            raise InvalidArgumentError(self._field, "first chunk has no header")
        dtype = _checked_dtype(header.dtype, self._field)
        expected = _checked_nbytes(header.shape, dtype, self._field)
        if header.total_bytes != expected:
            raise InvalidArgumentError(
                self._field, f"header declares {header.total_bytes} bytes but shape needs {expected}"
            )
        if expected > self._max_bytes:
            raise ResourceExhaustedError(
                f"{self._field}: tensor of {expected} bytes exceeds the limit of {self._max_bytes} bytes"
            )
        self._header = header
        self._buffer = np.empty(expected, dtype=np.uint8)

    @property
    def complete(self) -> bool:
        """True once every declared byte has arrived."""
        return self._header is not None and self._filled == len(self._buffer)

    def result(self) -> np.ndarray:
        """The reassembled array; raises if bytes are missing or the checksum disagrees."""
        if self._header is None:
            raise InvalidArgumentError(self._field, "no chunk received")
        if self._filled != len(self._buffer):
            raise InvalidArgumentError(
                self._field, f"truncated: {self._filled} of {len(self._buffer)} bytes received"
            )
        if self._crc != self._header.crc32:
            raise InvalidArgumentError(self._field, "checksum mismatch: the data was corrupted in transit")
        dtype = _NUMPY_DTYPES[self._header.dtype]
        return _checked_bools(self._buffer.view(dtype).reshape(tuple(self._header.shape)), self._field)


def assemble_tensor(
    chunks: Iterable[tensor_pb2.TensorChunk], max_bytes: int, field: str = "tensor"
) -> np.ndarray:
    """Reassemble a whole chunk stream into one (writable) numpy array."""
    assembler = TensorAssembler(max_bytes, field)
    for chunk in chunks:
        assembler.add(chunk)
    return assembler.result()
