"""Tensor codec: bit-exact round trips and clear errors for malformed tensors and chunk streams."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from services.runtime.codec import (
    MAX_CHUNK_BYTES,
    TensorAssembler,
    assemble_tensor,
    iter_serialized_chunks,
    iter_tensor_chunks,
    proto_to_numpy,
    proto_to_torch,
    tensor_to_proto,
)
from services.runtime.errors import InvalidArgumentError, ResourceExhaustedError
from songsmith.v1 import tensor_pb2
from tests.runtime.tensors import NUMPY_DTYPES, arrays, same_bits

TORCH_DTYPES = [
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.bool,
]


@pytest.mark.parametrize("dtype", NUMPY_DTYPES, ids=lambda d: np.dtype(d).name)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_numpy_round_trip_is_bit_exact(dtype, data) -> None:
    array = data.draw(arrays(dtype))
    assert same_bits(proto_to_numpy(tensor_to_proto(array)), array)
    assert same_bits(assemble_tensor(iter_tensor_chunks(array, chunk_bytes=7), 1 << 20), array)


def _torch_bits(tensor: torch.Tensor) -> bytes:
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.view(torch.int16)
    return tensor.contiguous().numpy().tobytes()


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
@settings(max_examples=25, deadline=None)
@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6), seed=st.integers(0, 2**31))
def test_torch_round_trip_is_bit_exact(dtype, shape, seed) -> None:
    generator = torch.Generator().manual_seed(seed)
    bits = torch.randint(-(2**15), 2**15, shape, generator=generator, dtype=torch.int32)
    if dtype.is_floating_point and dtype.itemsize == 2:
        tensor = bits.to(torch.int16).view(dtype)  # every bit pattern, NaNs and infinities included
    elif dtype == torch.bool:
        tensor = bits > 0
    elif dtype == torch.float32:
        tensor = torch.randn(shape, generator=generator)
    else:
        tensor = bits.to(dtype)
    back = proto_to_torch(tensor_to_proto(tensor))
    assert back.dtype == dtype and back.shape == tensor.shape
    assert _torch_bits(back) == _torch_bits(tensor)


def test_big_endian_input_travels_little_endian() -> None:
    array = np.arange(6, dtype=">i4").reshape(2, 3)
    message = tensor_to_proto(array)
    assert message.data == np.arange(6, dtype="<i4").tobytes()
    assert proto_to_numpy(message).tolist() == array.tolist()


def test_one_message_is_refused_over_one_mib() -> None:
    with pytest.raises(ValueError, match="1 MiB"):
        tensor_to_proto(np.zeros(MAX_CHUNK_BYTES + 1, np.uint8).view(np.bool_))


@pytest.mark.parametrize(
    ("nbytes", "chunks"), [(0, 1), (MAX_CHUNK_BYTES, 1), (MAX_CHUNK_BYTES + 1, 2), (3 * MAX_CHUNK_BYTES, 3)]
)
def test_chunk_boundaries(nbytes: int, chunks: int) -> None:
    array = np.random.default_rng(0).integers(0, 2, nbytes, dtype=np.uint8).view(np.bool_)
    pieces = list(iter_tensor_chunks(array))
    assert len(pieces) == chunks
    assert all(len(p.data) <= MAX_CHUNK_BYTES for p in pieces)
    assert [p.HasField("header") for p in pieces] == [True] + [False] * (chunks - 1)
    assert same_bits(assemble_tensor(pieces, nbytes), array)


def _chunks(nbytes: int = 3 * MAX_CHUNK_BYTES) -> list[tensor_pb2.TensorChunk]:
    return _chunks_of(np.ones(nbytes // 4, np.float32))


def _chunks_of(array: np.ndarray) -> list[tensor_pb2.TensorChunk]:
    return list(iter_tensor_chunks(array))


def test_truncated_stream_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="truncated"):
        assemble_tensor(_chunks()[:-1], 1 << 30)


def test_oversized_tensor_is_refused_before_allocation() -> None:
    with pytest.raises(ResourceExhaustedError, match="exceeds the limit"):
        assemble_tensor(_chunks(), 1 << 20)


def test_extra_bytes_are_refused() -> None:
    pieces = _chunks()
    pieces.append(tensor_pb2.TensorChunk(index=len(pieces), data=b"1234"))
    with pytest.raises(InvalidArgumentError, match="more than the declared"):
        assemble_tensor(pieces, 1 << 30)


def test_out_of_order_chunks_are_refused() -> None:
    pieces = _chunks()
    pieces[1], pieces[2] = pieces[2], pieces[1]
    with pytest.raises(InvalidArgumentError, match="expected 1"):
        assemble_tensor(pieces, 1 << 30)


def test_corrupted_data_fails_the_checksum() -> None:
    pieces = _chunks()
    pieces[1].data = b"\xff" + pieces[1].data[1:]
    with pytest.raises(InvalidArgumentError, match="checksum"):
        assemble_tensor(pieces, 1 << 30)


def test_checksum_is_zlib_crc32() -> None:
    """The header's checksum is the standard CRC-32 (what `zlib.crc32` gives), not another variant."""
    array = np.random.default_rng(3).standard_normal(3 * MAX_CHUNK_BYTES // 4).astype(np.float32)
    header = _chunks_of(array)[0].header
    assert header.crc32 == zlib.crc32(array.tobytes())


def test_reassembled_tensor_is_writable_and_owns_its_bytes() -> None:
    array = np.arange(3 * MAX_CHUNK_BYTES // 4, dtype=np.float32)
    result = assemble_tensor(_chunks_of(array), 1 << 30)
    result[0] = -1
    assert array[0] == 0 and result[1] == 1


def test_chunked_boolean_tensor_with_another_byte_is_refused() -> None:
    array = np.zeros(2 * MAX_CHUNK_BYTES, np.uint8)
    array[-1] = 2
    with pytest.raises(InvalidArgumentError, match="boolean"):
        assemble_tensor(iter_tensor_chunks(array.view(np.bool_)), 1 << 30)


def test_header_must_be_first_and_consistent() -> None:
    pieces = _chunks()
    with pytest.raises(InvalidArgumentError, match="no header"):
        assemble_tensor([tensor_pb2.TensorChunk(index=0, data=b"x")], 1 << 30)
    pieces[0].header.total_bytes += 4
    with pytest.raises(InvalidArgumentError, match="declares"):
        assemble_tensor(pieces, 1 << 30)
    second = _chunks()
    second[1].header.CopyFrom(second[0].header)
    with pytest.raises(InvalidArgumentError, match="repeats the header"):
        assemble_tensor(second, 1 << 30)


@pytest.mark.parametrize(("shape", "reason"), [([1] * 70, "70 dimensions"), ([0, 1 << 40], "dimension over")])
def test_a_chunked_header_with_an_absurd_shape_is_refused(shape: list[int], reason: str) -> None:
    header = tensor_pb2.TensorHeader(dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=shape, total_bytes=0)
    assembler = TensorAssembler(1 << 20, field="latents")
    with pytest.raises(InvalidArgumentError, match=reason) as caught:
        assembler.add(tensor_pb2.TensorChunk(header=header, index=0))
    assert caught.value.violations[0].field == "latents"


def test_empty_stream_is_refused() -> None:
    assembler = TensorAssembler(1 << 20, field="latents")
    with pytest.raises(InvalidArgumentError) as caught:
        assembler.result()
    assert caught.value.violations[0].field == "latents"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (tensor_pb2.Tensor(shape=[2], data=b"\x00" * 8), "dtype"),
        (tensor_pb2.Tensor(dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=[3], data=bytes(8)), "needs 12 bytes"),
        (tensor_pb2.Tensor(dtype=tensor_pb2.DATA_TYPE_INT16, shape=[-1], data=b""), "negative"),
        (tensor_pb2.Tensor(dtype=tensor_pb2.DATA_TYPE_BOOL, shape=[2], data=b"\x01\x02"), "boolean"),
        (
            tensor_pb2.Tensor(dtype=tensor_pb2.DATA_TYPE_INT64, shape=[1] * 100, data=bytes(8)),
            "100 dimensions",
        ),
        (tensor_pb2.Tensor(dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=[1] * 9, data=bytes(4)), "9 dimensions"),
        (tensor_pb2.Tensor(dtype=tensor_pb2.DATA_TYPE_INT64, shape=[0, 1 << 62], data=b""), "dimension over"),
    ],
)
def test_malformed_tensor_names_its_field(message: tensor_pb2.Tensor, reason: str) -> None:
    with pytest.raises(InvalidArgumentError, match=reason) as caught:
        proto_to_numpy(message, field="style")
    assert caught.value.violations[0].field == "style"


@pytest.mark.parametrize("nbytes", [0, 5, MAX_CHUNK_BYTES, 2 * MAX_CHUNK_BYTES + 3])
def test_serialized_chunks_are_the_same_messages(nbytes: int) -> None:
    array = np.random.default_rng(nbytes).integers(0, 2, nbytes, dtype=np.uint8).view(np.bool_)
    raw = list(iter_serialized_chunks(array))
    assert [tensor_pb2.TensorChunk.FromString(r) for r in raw] == list(iter_tensor_chunks(array))
    assembler = TensorAssembler(nbytes, field="chunks")
    for piece in raw:
        assembler.add_serialized(piece)
    assert same_bits(assembler.result(), array)
    typed = TensorAssembler(nbytes)
    for message in iter_tensor_chunks(array):
        typed.add_serialized(message.SerializeToString())
    assert same_bits(typed.result(), array)


def test_malformed_wire_bytes_are_refused() -> None:
    first = next(iter_serialized_chunks(np.ones(4, np.float32)))
    with pytest.raises(InvalidArgumentError, match="malformed chunk"):
        TensorAssembler(1 << 20, field="chunks").add_serialized(first[:-3] + b"\x1a\xff")
    with pytest.raises(InvalidArgumentError, match="malformed chunk"):
        TensorAssembler(1 << 20).add_serialized(b"\x0f\x00")
