"""MusicGen's sampling loop: the delay pattern, batched guidance, the KV cache and windows for long songs.

Delay pattern. Codebook k is delayed by d_k (k, or k // 2 for stereo). A window of F frames is a
sequence of positions 0..F + max(d): position 0 is PAD everywhere (the start token), codebook k holds
frame t at position t + d_k + 1 and PAD outside its live range. Step i feeds position i (the whole
known prefix on a window's first step) and fills position i + 1, where codebook k gets frame i - d_k.
So frame t is final after step t + max(d), and the loop streams it then.

Each step runs the conditional rows and, with guidance, the unconditional rows (same codes, zero text
/ null chroma) as one batched forward over a preallocated KV cache. Codes already known (an audio
prompt, the previous window's tail, the frames of a resumed run) are fed in and never replaced; the
generator is still drawn at every step, as the reference draws for every codebook.

Several songs of the same geometry (length, prompt and resume point) can run in lockstep as one
batch: their rows share every forward, each keeps its own guidance scale, options and generator.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from services.diffusion.musicgen.lm import CrossMemory, KvCache, MusicgenLm
from services.diffusion.musicgen.options import MusicgenOptions
from services.diffusion.musicgen.sampling import VariateStream, choose_codes, guide
from services.diffusion.musicgen.windows import Window, plan_windows, steps_before, window_at
from services.runtime.cancellation import CancellationToken

UNKNOWN = -1
# Chroma frames per second of the melody conditioning (the style stage's 32 kHz chroma, hop 4096).
CHROMA_FRAME_RATE = 32000 / 4096


@dataclass(frozen=True)
class Song:
    """One song's conditioning and sampling settings.

    text: T5 states [T, d_text] float32. chroma: one-hot melody chroma [frames, 12] for melody models
    (None: the null chroma). cfg: guidance scale (<= 1: no unconditional branch).
    """

    text: torch.Tensor
    chroma: torch.Tensor | None
    cfg: float
    options: MusicgenOptions
    seed: int


@dataclass(frozen=True)
class Geometry:
    """What a batch of songs shares: `total` frames, the first `prompt` given by the caller (an audio
    prompt), the first `known` of them already decided (prompt plus resumed frames; known >= prompt),
    and the frame from which blocks are emitted (`emit_from`, a multiple of `group`)."""

    total: int
    prompt: int
    known: int
    emit_from: int
    group: int


@dataclass(frozen=True)
class CodeBlock:
    """Final codes of frames [start, start + n) of every song in the batch: [songs, n, K] int64."""

    start: int
    codes: np.ndarray
    final: bool


class CodeSampler:
    """Runs the LM over songs in lockstep, window after window, and yields their codes in blocks."""

    def __init__(self, lm: MusicgenLm, window: int, stride: int) -> None:
        """`window` and `stride` are the extended-generation geometry in frames."""
        self.lm = lm
        self.config = lm.config
        self.window = window
        self.stride = stride
        self.delays = torch.tensor(self.config.delays, device=lm.device)
        self.max_delay = max(self.config.delays)

    def windows(self, total: int, prompt: int) -> list[Window]:
        """The windows of a song of `total` frames with a `prompt`-frame audio prompt."""
        return plan_windows(total, prompt, self.window, self.stride)

    def sample(
        self,
        songs: Sequence[Song],
        geometry: Geometry,
        known_codes: np.ndarray,
        token: CancellationToken | None = None,
    ) -> Iterator[CodeBlock]:
        """Generate every song's frames after `geometry.known` and yield blocks of `geometry.group`
        frames from `geometry.emit_from` on, each as soon as its last frame is final.

        known_codes: [songs, known, K] int64, the frames already decided (known frames past emit_from
        are yielded too).
        """
        with torch.inference_mode():
            yield from self._sample(songs, geometry, known_codes, token)

    def _sample(
        self,
        songs: Sequence[Song],
        geometry: Geometry,
        known_codes: np.ndarray,
        token: CancellationToken | None,
    ) -> Iterator[CodeBlock]:
        config, device = self.config, self.lm.device
        windows = self.windows(geometry.total, geometry.prompt)
        skipped = steps_before(windows, geometry.known, self.max_delay)
        variates = []
        for song in songs:
            stream = None
            if not song.options.greedy:
                stream = VariateStream(song.seed, config.num_codebooks, config.vocab_size, device)
                stream.skip(skipped)
            variates.append(stream)
        codes = torch.full(
            (len(songs), geometry.total, config.num_codebooks), UNKNOWN, dtype=torch.long, device=device
        )
        codes[:, : geometry.known] = torch.as_tensor(known_codes, dtype=torch.long, device=device)
        emitter = _Emitter(codes, geometry)
        yield from emitter.ready(geometry.known)
        conditioning = _Conditioning(self.lm, songs)
        for window in windows[window_at(windows, geometry.known) :]:
            start_known = max(window.prompt, geometry.known - window.start)
            for done in self._run_window(window, start_known, songs, conditioning, variates, codes, token):
                yield from emitter.ready(done)

    def _run_window(
        self,
        window: Window,
        known: int,
        songs: Sequence[Song],
        conditioning: _Conditioning,
        variates: list[VariateStream | None],
        codes: torch.Tensor,
        token: CancellationToken | None,
    ) -> Iterator[int]:
        """Run one window whose first `known` frames are decided; yield the song's count of final frames
        after every step that completes one."""
        config, device, delays = self.config, self.lm.device, self.delays
        length = window.frames + self.max_delay + 1
        sequence = torch.full(
            (len(songs), config.num_codebooks, length), config.pad_token_id, dtype=torch.long, device=device
        )
        for codebook, delay in enumerate(config.delays):
            sequence[:, codebook, delay + 1 : delay + 1 + known] = codes[
                :, window.start : window.start + known, codebook
            ]
        prefix = conditioning.melody_prefix(window.start / config.frame_rate)
        prefix_length = 0 if prefix is None else prefix.shape[1]
        cache = KvCache(config, conditioning.rows, prefix_length + length, device, self.lm.dtype)
        logits = self.lm(
            conditioning.rows_of(sequence[:, :, : known + 1]), cache, conditioning.memory, prefix
        )
        frame_positions = torch.arange(config.num_codebooks, device=device)
        last_step = window.frames + self.max_delay - 1
        for step in range(known, last_step + 1):
            if token is not None:
                token.check()
            chosen = self._choose(logits, songs, conditioning, variates)
            frames = step - delays
            live = (frames >= known) & (frames < window.frames)
            sequence[:, :, step + 1] = torch.where(live, chosen, sequence[:, :, step + 1])
            finished = step - self.max_delay
            if finished >= known:
                codes[:, window.start + finished] = sequence[:, frame_positions, finished + delays + 1]
                yield window.start + finished + 1
            if step < last_step:
                logits = self.lm(
                    conditioning.rows_of(sequence[:, :, step + 1 : step + 2]), cache, conditioning.memory
                )

    def _choose(
        self,
        logits: torch.Tensor,
        songs: Sequence[Song],
        conditioning: _Conditioning,
        variates: list[VariateStream | None],
    ) -> torch.Tensor:
        """Each song's codes [songs, K] from the step's logits [rows, K, V]."""
        chosen = []
        for index, (song, stream) in enumerate(zip(songs, variates, strict=True)):
            row = conditioning.unconditional_row(index)
            guided = guide(logits[index], None if row is None else logits[row], song.cfg)
            chosen.append(choose_codes(guided, song.options, stream))
        return torch.stack(chosen)


class _Emitter:
    """Turns the count of final frames into blocks aligned to the group size."""

    def __init__(self, codes: torch.Tensor, geometry: Geometry) -> None:
        self.codes = codes
        self.total = geometry.total
        self.group = geometry.group
        self.emitted = geometry.emit_from

    def ready(self, final_frames: int) -> Iterator[CodeBlock]:
        """The blocks that `final_frames` final frames complete."""
        while self.emitted < final_frames:
            end = min((self.emitted // self.group + 1) * self.group, self.total)
            if end > final_frames:
                return
            block = self.codes[:, self.emitted : end].cpu().numpy()
            yield CodeBlock(self.emitted, block, end == self.total)
            self.emitted = end


class _Conditioning:
    """The batch's rows (conditional first, then an unconditional row for each guided song) and what
    conditions them: cross-attention memory for text models, the per-window prefix for melody models."""

    def __init__(self, lm: MusicgenLm, songs: Sequence[Song]) -> None:
        self.lm = lm
        self.songs = songs
        self.guided = [index for index, song in enumerate(songs) if song.cfg > 1.0]
        self._unconditional = {song: len(songs) + order for order, song in enumerate(self.guided)}
        self.rows = len(songs) + len(self.guided)
        lengths = [song.text.shape[0] for song in songs]
        text = torch.zeros((len(songs), max(lengths), songs[0].text.shape[1]), dtype=torch.float32)
        for index, song in enumerate(songs):
            text[index, : lengths[index]] = song.text
        self.text = lm.project_text(text)
        self.memory: CrossMemory | None = None
        if not lm.config.melody:
            mask = None
            if len(set(lengths)) > 1:
                mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
            self.memory = lm.cross_memory(self.text, mask)
        elif len(set(lengths)) > 1:
            raise ValueError("melody songs batched together must have prompts of the same token count")

    def unconditional_row(self, song: int) -> int | None:
        """The row of a song's unconditional branch (None without guidance)."""
        return self._unconditional.get(song)

    def rows_of(self, song_codes: torch.Tensor) -> torch.Tensor:
        """Codes for every row: the songs' codes, then again for each guided song."""
        if not self.guided:
            return song_codes
        return torch.cat([song_codes, song_codes[self.guided]])

    def melody_prefix(self, offset_seconds: float) -> torch.Tensor | None:
        """A melody model's prefix rows for a window starting `offset_seconds` into the song (None for
        text models). The chroma is read from that point on, wrapping around (AudioCraft extends the
        reference periodically and slices it at the window's offset); at 0 it is the chroma as given."""
        if not self.lm.config.melody:
            return None
        config = self.lm.config
        conditional = torch.cat(
            [
                self.lm.melody_prefix(
                    self._chroma_at(song.chroma, offset_seconds)[None], self.text[index : index + 1]
                )
                for index, song in enumerate(self.songs)
            ]
        )
        if not self.guided:
            return conditional
        null = torch.zeros((1, 1, config.num_chroma))
        null[..., 0] = 1.0
        silent = torch.zeros_like(self.text[:1])
        unconditional = self.lm.melody_prefix(null, silent).expand(len(self.guided), -1, -1)
        return torch.cat([conditional, unconditional])

    def _chroma_at(self, chroma: torch.Tensor | None, offset_seconds: float) -> torch.Tensor:
        config = self.lm.config
        if chroma is None:
            null = torch.zeros((1, config.num_chroma))
            null[0, 0] = 1.0
            return null
        frames = chroma.shape[0]
        shift = int(offset_seconds * CHROMA_FRAME_RATE) % frames
        return torch.roll(chroma, -shift, dims=0) if shift else chroma
