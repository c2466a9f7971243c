"""How a batch of songs attends to histories of different lengths: the choice behind `BatchKVCache`.

Each row (a song's conditional or unconditional branch) has 10 queries and its own history. Three
ways to run one layer's attention for all rows, timed on the same tensors in the same run:

- `padded` (ours): one scaled_dot_product_attention over every row's keys up to the longest
  history, with a boolean mask hiding each row's padding (the rows are views of one shared buffer);
- `per row` (the baseline): one call per row over exactly its own keys (no padding, R calls);
- `nested`: the rows' keys as a jagged nested tensor, one call (torch's varlen attention).

Rows get histories spread evenly between 40 % and 100 % of `--keys` (songs at different points);
heads and head width are those of the bench configuration (4 x 64) and of the published model
(16 x 128). Times are medians of `--repeats` calls, in milliseconds, with the ratio to `per row`.
On a GPU the per-row loop also costs one kernel launch per row and layer, which this CPU figure
does not show.

    .venv/bin/python -m bench.batched_attention [--device cpu] [--repeats 30] [--keys 1000] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import torch
from torch.nn import functional

QUERIES = 10


def _time(call: Callable[[], object], repeats: int, device: str) -> float:
    call()
    samples = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        call()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - started)
    return 1000 * statistics.median(samples)


def variants(rows: int, heads: int, head_dim: int, keys: int, device: str) -> dict[str, Callable[[], object]]:
    """The three attentions over the same queries, keys and values."""
    generator = torch.Generator().manual_seed(0)
    lengths = [round(keys * (0.4 + 0.6 * row / max(1, rows - 1))) for row in range(rows)]
    query = torch.randn(rows, heads, QUERIES, head_dim, generator=generator).to(device)
    key = torch.randn(rows, heads, keys, head_dim, generator=generator).to(device)
    value = torch.randn(rows, heads, keys, head_dim, generator=generator).to(device)
    span = max(lengths)
    mask = (torch.arange(span)[None, :] < torch.tensor(lengths)[:, None])[:, None, None, :].to(device)
    variable = [(key[row, :, : lengths[row]], value[row, :, : lengths[row]]) for row in range(rows)]

    def padded() -> torch.Tensor:
        return functional.scaled_dot_product_attention(
            query, key[:, :, :span], value[:, :, :span], attn_mask=mask
        )

    def per_row() -> list[torch.Tensor]:
        return [
            functional.scaled_dot_product_attention(query[row : row + 1], k[None], v[None])
            for row, (k, v) in enumerate(variable)
        ]

    warnings.filterwarnings("ignore", message="The PyTorch API of nested tensors is in prototype stage")
    nested_query = torch.nested.nested_tensor(
        [query[row].transpose(0, 1) for row in range(rows)], layout=torch.jagged
    )
    nested_key = torch.nested.nested_tensor([k.transpose(0, 1) for k, _ in variable], layout=torch.jagged)
    nested_value = torch.nested.nested_tensor([v.transpose(0, 1) for _, v in variable], layout=torch.jagged)

    def nested() -> torch.Tensor:
        return functional.scaled_dot_product_attention(
            nested_query.transpose(1, 2), nested_key.transpose(1, 2), nested_value.transpose(1, 2)
        )

    return {"padded": padded, "per row": per_row, "nested": nested}


def main() -> int:
    """Time every variant at every shape and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--keys", type=int, default=1000, help="longest history, in keys")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"device {args.device}, {torch.get_num_threads()} threads; ms per layer (ratio to per row)\n")
    print("| heads x width | rows | padded | per row | nested |")
    print("|---|---:|---:|---:|---:|")
    with torch.inference_mode():
        for heads, head_dim in ((4, 64), (16, 128)):
            for rows in (2, 16, 32):
                timed = {}
                for name, call in variants(rows, heads, head_dim, args.keys, args.device).items():
                    try:
                        timed[name] = _time(call, args.repeats, args.device)
                    except RuntimeError:
                        timed[name] = float("nan")
                base = timed["per row"]
                cells = " | ".join(f"{timed[name]:.2f} ({timed[name] / base:.2f})" for name in timed)
                print(f"| {heads} x {head_dim} | {rows} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
