"""`liteframe probe`, `liteframe frames` and `liteframe bench decode` through the command line."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from PIL import Image

from liteframe.cli import main
from liteframe.testing.videos import make_audio_only, make_video
from videos import REAL_VIDEOS

REAL = ["bbb_short.mp4", "flipping_a_pancake.mkv", "corrupted.mp4", "video_90.mov"]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.mp4").write_bytes(b"")
    (d / "readme.mp4").write_text("this is text\n" * 40)
    whole = make_video(d / "whole.mp4")
    (d / "cut.mp4").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return [make_audio_only(d / "sound.m4a"), d / "empty.mp4", d / "readme.mp4", d / "cut.mp4", d / "missing.mp4"]


def test_probe_real_files_one_line_each(capsys):
    assert main(["probe", *(str(REAL_VIDEOS / f) for f in REAL)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert lines[0].endswith("bbb_short.mp4: mov h264 320x176 rotation 0, 25 fps, 10.00 s, frames declared 250, "
                             "decodable 250")
    assert "matroska h264 426x240" in lines[1] and "frames declared none, decodable 310" in lines[1]
    # one packet (3.0 s) fails and decoding recovers after it
    assert "frames declared 50, decodable 49 (some frames fail to decode: Invalid data" in lines[2]
    assert "320x568 rotation 90" in lines[3]


def test_probe_json(capsys):
    assert main(["probe", "--json", str(REAL_VIDEOS / "flipping_a_pancake.mkv")]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["container"] == "matroska" and facts["frames_declared"] is None
    assert facts["frames_decodable"] == 310 and facts["fps"] == 30.0 and facts["decode_error"] is None
    assert set(facts) == {"path", "container", "codec", "width", "height", "rotation", "fps", "duration",
                          "frames_declared", "frames_decodable", "decode_error"}


def test_probe_bad_files_exit_2_with_one_line_each_and_good_files_still_print(bad_files):
    good = str(REAL_VIDEOS / "bbb_short.mp4")
    run = subprocess.run([sys.executable, "-m", "liteframe.cli", "probe", str(bad_files[0]), good,
                          *map(str, bad_files[1:])], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stdout.count("\n") == 1 and "bbb_short.mp4: mov h264" in run.stdout
    err = run.stderr.splitlines()
    assert "Traceback" not in run.stderr and len(err) == len(bad_files)
    reasons = ["no video stream (streams: audio)", "empty file (0 bytes)", "not a readable video container",
               "not a readable video container", "no such file"]
    for line, path, reason in zip(err, bad_files, reasons):
        assert line == f"liteframe probe: error: {path}: {reason}" or line.startswith(f"liteframe probe: error: "
                                                                                      f"{path}: {reason} (")


def test_frames_contact_sheet(tmp_path, capsys):
    out = tmp_path / "sheet.png"
    with pytest.warns(UserWarning, match="3 frames .* fewer than the 8 sampled"):
        assert main(["frames", str(REAL_VIDEOS / "video_90.mov"), "--frames", "8", "--sampling", "uniform",
                     "--out", str(out)]) == 0
    sheet = Image.open(out)
    thumb_h = round(568 * 240 / 320)  # portrait thumbnails: rotation applied
    assert sheet.size == (4 * 240, 2 * (thumb_h + 16))


def test_frames_bad_input_is_one_line(tmp_path, capsys):
    assert main(["frames", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.strip() == f"liteframe frames: error: {tmp_path / 'nope.mp4'}: no such file"
    assert main(["frames", str(REAL_VIDEOS / "bbb_short.mp4"), "--frames", "6", "--out", str(tmp_path / "x.png")]) == 2
    assert "multiple of 4, got 6" in capsys.readouterr().err


def test_frames_warning_is_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "liteframe.cli", "frames", str(REAL_VIDEOS / "corrupted.mp4"),
                          "--out", str(tmp_path / "sheet.png")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and (tmp_path / "sheet.png").is_file()
    assert run.stderr.startswith("liteframe frames: warning: ") and run.stderr.count("\n") == 1, run.stderr
    assert "corrupted.mp4: decoding failed" in run.stderr


def test_a_multi_line_error_is_printed_on_one_line(tmp_path, capsys, monkeypatch):
    """An input error whose message spans lines (as PyAV's and transformers' do) is folded onto one line; only input
    errors are (issue 18: a bug shows its traceback)."""
    import liteframe.video.contact as contact
    from liteframe.errors import InputError

    def fail(*args, **kwargs):
        raise InputError("cannot read the file\n  reason: permission denied")

    monkeypatch.setattr(contact, "contact_sheet", fail)
    assert main(["frames", str(REAL_VIDEOS / "bbb_short.mp4"), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err == "liteframe frames: error: cannot read the file reason: permission denied\n"


@pytest.mark.parametrize("name, reason", [("missing/sheet.png", "does not exist"), ("sheet.psd", "cannot write")])
def test_frames_bad_out_fails_before_decoding(tmp_path, capsys, monkeypatch, name, reason):
    import liteframe.video.contact as contact

    monkeypatch.setattr(contact, "open_video", lambda *a, **k: pytest.fail("decoded before checking --out"))
    out = tmp_path / name
    assert main(["frames", str(REAL_VIDEOS / "bbb_short.mp4"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"liteframe frames: error: --out {out}: ") and reason in err


def test_bench_decode_tiny(tmp_path, capsys):
    assert main(["bench", "decode", "--minutes", "0.02", "--frames", "8", "--repeats", "1",
                 "--cache-dir", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    libs = ["liteframe", "decord"] if importlib.util.find_spec("decord") else ["liteframe"]
    if "decord" not in libs:  # a row says so instead of timing it
        assert rows.pop() == {"method": "decord", "note": "not installed: pip install 'liteframe[bench]'"}
    assert [r["method"] for r in rows[:-2]] == [f"{lib} sparse ({s})" for s in ("uniform", "clips", "fps")
                                               for lib in libs]
    assert [r["method"] for r in rows[-2:]] == ["decode every frame, RGB every frame",
                                                "decode every frame, RGB sampled only"]
    assert rows[-2]["speedup"] == 1.0 and rows[-1]["speedup (decode)"] == 1.0
    assert all(r["decoded/s"] == pytest.approx(36 / r["seconds"]) for r in rows[-2:])
    assert all(r["seconds"] > 0 and r["speedup"] > 0 for r in rows)
    # every sampled frame checked against the full decode: liteframe's are exact
    assert all(r["other frames"] == 0 for r in rows if r["method"].startswith("liteframe"))
    assert len(list((tmp_path / "liteframe" / "bench").glob("*.mp4"))) == 1  # cached, no partial files left


def test_bench_decode_notes_a_missing_decord_and_runs_the_frontend_table(tmp_path, monkeypatch):
    from liteframe.bench import decode as bench

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "decord" else real(name, *a))
    rows = bench.run(minutes=0.02, num_frames=4, repeats=1, cache_dir=str(tmp_path))
    assert rows[-1] == {"method": "decord", "note": "not installed: pip install 'liteframe[bench]'"}
    assert not any(r["method"].startswith("decord sparse") for r in rows)
    monkeypatch.setattr(bench, "FRONTEND_SECONDS", 1)
    monkeypatch.setattr(bench, "FRONTEND_FRAMES", 8)
    monkeypatch.setattr(bench, "FRONTEND_SIZE", 32)
    rows = bench.run(frontend=True, repeats=1, cache_dir=str(tmp_path))
    assert [r["method"] for r in rows] == [bench.PLAIN, *(f"load_video 8 frames @32 ({r})" for r in (
        "exact", "swscale", "torch", "exact, torch on one thread"))]
    assert rows[0]["x plain"] == 1.0 and all(r["seconds"] > 0 for r in rows)
