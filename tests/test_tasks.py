"""Every task of mardini.tasks through the pipeline, on real frames, with a tiny random checkpoint.

Checked per task: frame count and size, known frames = codec round trip of the inputs, one planner
call per window (whatever the step count), the guidance default, and videos past the window.
"""

from __future__ import annotations

import numpy as np
import pytest

from mardini import tasks
from pipeline_support import bikes, count_calls, photos, pipe, round_trip, tiny_checkpoint  # noqa: F401 - fixtures

WINDOW = 5  # mardini-tiny's num_frames


def run_counted(count_calls, pipe, task, *args, **kwargs):
    """Run a task, returning (output, planner calls, generator batch sizes)."""
    with count_calls(pipe.model.planner) as plans, count_calls(pipe.model.generator) as denoises:
        out = task(pipe, *args, steps=2, seed=0, progress=False, **kwargs)
    assert len(plans) == len(out.windows)
    assert len(denoises) == 2 * len(out.windows)
    return out, len(plans), denoises


def test_image_to_video_with_the_reference_anywhere(pipe, photos, count_calls):
    image = photos["astronaut"]
    out, plans, batches = run_counted(count_calls, pipe, tasks.image_to_video, image, ref_index=2)
    assert out.frames.shape == (1, WINDOW, 64, 64, 3)
    assert plans == 1 and out.known[0].tolist() == [False, False, True, False, False]
    np.testing.assert_array_equal(out.frames[0, 2], round_trip(pipe, image[None])[0])
    assert out.guidance_scale == 2.5 and batches == [2, 2]  # appendix B: CFG 2.5 runs cond + uncond
    _, _, batches = run_counted(count_calls, pipe, tasks.image_to_video, image, guidance_scale=1.0)
    assert batches == [1, 1]  # overridden: no unconditional branch


def test_image_to_video_past_the_window(pipe, photos, count_calls):
    out, plans, _ = run_counted(count_calls, pipe, tasks.image_to_video, photos["chelsea"], 12, ref_index=6)
    assert out.frames.shape == (1, 12, 64, 64, 3)
    assert plans == len(out.windows) > 1
    np.testing.assert_array_equal(out.frames[0, 6], round_trip(pipe, photos["chelsea"][None])[0])


@pytest.mark.parametrize("num_frames", [5, 3, 13])
def test_interpolate(pipe, bikes, count_calls, num_frames):
    out, plans, batches = run_counted(count_calls, pipe, tasks.interpolate, bikes[0], bikes[7], num_frames)
    assert out.frames.shape == (1, num_frames, 64, 64, 3)
    np.testing.assert_array_equal(out.frames[0, [0, -1]], round_trip(pipe, bikes[[0, 7]]))
    assert out.guidance_scale == 1.0 and set(batches) == {1}  # appendix B: no guidance for interpolation
    if num_frames <= WINDOW:
        assert plans == 1
    else:  # past the window the gap is filled hierarchically: every third frame, then between them
        assert [w.positions for w in out.windows] == [(0, 3, 6, 9, 12), (0, 1, 2, 3), (3, 4, 5, 6), (6, 7, 8, 9),
                                                      (9, 10, 11, 12)]
        assert plans == 5


def test_novel_view_interpolation_is_interpolation_between_two_views(pipe, photos):
    # Two "views" (the photo and its mirror image): the same call, first and last kept.
    view, mirrored = photos["coffee"], np.ascontiguousarray(photos["coffee"][:, ::-1])
    out = tasks.interpolate(pipe, view, mirrored, 5, steps=2, seed=0, progress=False)
    np.testing.assert_array_equal(out.frames[0, [0, 4]], round_trip(pipe, np.stack([view, mirrored])))


def test_loop_starts_and_ends_on_the_image(pipe, photos, count_calls):
    out, plans, _ = run_counted(count_calls, pipe, tasks.loop, photos["chelsea"], 5)
    assert out.frames.shape == (1, 5, 64, 64, 3) and plans == 1
    np.testing.assert_array_equal(out.frames[0, 0], out.frames[0, -1])
    np.testing.assert_array_equal(out.frames[0, 0], round_trip(pipe, photos["chelsea"][None])[0])
    assert not np.array_equal(out.frames[0, 2], out.frames[0, 0])


def test_expand_from_the_first_frames(pipe, bikes, count_calls):
    out, plans, batches = run_counted(count_calls, pipe, tasks.expand, bikes[:2], 5)
    assert out.frames.shape == (1, 5, 64, 64, 3) and plans == 1
    assert out.known[0].tolist() == [True, True, False, False, False]
    np.testing.assert_array_equal(out.frames[0, :2], round_trip(pipe, bikes[:2]))
    assert batches == [2, 2]


def test_extend_slides_a_window_past_the_training_window(pipe, bikes, count_calls):
    out, plans, _ = run_counted(count_calls, pipe, tasks.extend, bikes[:3], 12, window=4, overlap=2)
    assert out.frames.shape == (1, 12, 64, 64, 3)
    # Each window keeps the last 2 frames of what exists: 0-3, then 2-5, 4-7, 6-9, 8-11.
    assert [w.positions[0] for w in out.windows] == [0, 2, 4, 6, 8] and plans == 5
    np.testing.assert_array_equal(out.frames[0, :3], round_trip(pipe, bikes[:3]))


def test_custom_known_positions_and_the_guidance_rule(pipe, bikes, photos, count_calls):
    known = {0: bikes[0], 3: photos["astronaut"]}
    out, plans, batches = run_counted(count_calls, pipe, tasks.custom, known, 5)
    assert out.frames.shape == (1, 5, 64, 64, 3) and plans == 1
    np.testing.assert_array_equal(out.frames[0, [0, 3]], round_trip(pipe, np.stack([bikes[0], photos["astronaut"]])))
    assert out.guidance_scale == 2.5 and batches == [2, 2]  # frame 4 lies past the last known one
    out, _, batches = run_counted(count_calls, pipe, tasks.custom, {0: bikes[0], 4: bikes[4]}, 5)
    assert out.guidance_scale == 1.0 and batches == [1, 1]  # every new frame is between known ones


def test_slow_motion_beyond_the_window(pipe, bikes, count_calls):
    clip = bikes[[0, 2, 4, 6]]
    out, plans, _ = run_counted(count_calls, pipe, tasks.slow_motion, clip, factor=4)
    assert out.frames.shape == (1, 13, 64, 64, 3)
    assert np.flatnonzero(out.known[0]).tolist() == [0, 4, 8, 12]
    np.testing.assert_array_equal(out.frames[0, [0, 4, 8, 12]], round_trip(pipe, clip))
    assert plans == 3 and out.guidance_scale == 1.0

    # 4 frames -> 40, eight times the model's window (F.1's hierarchy, at toy scale).
    out, plans, _ = run_counted(count_calls, pipe, tasks.slow_motion, clip, num_frames=40)
    assert out.frames.shape == (1, 40, 64, 64, 3)
    assert np.flatnonzero(out.known[0]).tolist() == [0, 13, 26, 39]
    np.testing.assert_array_equal(out.frames[0, [0, 13, 26, 39]], round_trip(pipe, clip))
    assert plans == len(out.windows) > 40 // WINDOW


def test_steps_do_not_change_the_window_count(pipe, bikes, count_calls):
    counts = []
    for steps in (2, 4):
        with count_calls(pipe.model.planner) as plans:
            tasks.slow_motion(pipe, bikes[:3], factor=5, steps=steps, seed=0, progress=False)
        counts.append(len(plans))
    assert counts[0] == counts[1] > 1


def test_tasks_make_batches(pipe, bikes):
    out = tasks.interpolate(pipe, bikes[0], bikes[5], 5, num_samples=2, steps=2, seed=0, progress=False)
    assert out.frames.shape == (2, 5, 64, 64, 3)
    np.testing.assert_array_equal(out.frames[0, [0, 4]], out.frames[1, [0, 4]])
    assert not np.array_equal(out.frames[0, 2], out.frames[1, 2])


def test_task_requests_the_model_cannot_take(pipe, bikes):
    image = bikes[0]
    with pytest.raises(ValueError, match="ref_index 5 is outside a 5-frame video"):
        tasks.image_to_video(pipe, image, 5, ref_index=5)
    with pytest.raises(ValueError, match="at least 2 frames"):
        tasks.image_to_video(pipe, image, 1)
    with pytest.raises(ValueError, match="interpolation needs at least 3 frames"):
        tasks.interpolate(pipe, image, image, 2)
    with pytest.raises(ValueError, match="must exceed the 3 given frames"):
        tasks.expand(pipe, bikes[:3], 3)
    with pytest.raises(ValueError, match="expected several frames"):
        tasks.expand(pipe, image, 9)
    with pytest.raises(ValueError, match="outside a 5-frame video"):
        tasks.custom(pipe, {7: image}, 5)
    with pytest.raises(ValueError, match="at least one known frame"):
        tasks.custom(pipe, {}, 5)
    with pytest.raises(ValueError, match="factor must be at least 2"):
        tasks.slow_motion(pipe, bikes[:3], factor=1)
    with pytest.raises(ValueError, match="exactly one of factor and num_frames"):
        tasks.slow_motion(pipe, bikes[:3], factor=2, num_frames=9)
    with pytest.raises(ValueError, match="must exceed the 3 given frames"):
        tasks.slow_motion(pipe, bikes[:3], num_frames=3)
