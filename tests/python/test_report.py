"""report.html rendered in a real headless browser (Debian's chromium): the DOM it builds has the
six plots with their curves and the evaluation table, and the screenshot is a drawn page, not a
blank one. Without chromium the test skips, except under CI=true, where it fails."""
import json
import os
import re
import shutil
import struct
import subprocess
import zlib

import pytest

from pipeline_runs import reference_run


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is missing (scripts/setup_tests.sh installs it): the report test cannot be skipped in CI")
    pytest.skip("chromium missing (apt-get install -y chromium)")


def browser(*args):
    r = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def png_pixels(path):
    """(width, height, rows of RGB(A) bytes) of an 8-bit non-interlaced PNG, as chromium writes it."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6)
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def test_report_renders_plots_and_table(tmp_path):
    run = reference_run()
    url = "file://" + os.path.join(run, "report.html")
    dom = browser("--dump-dom", url)
    plots = re.findall(r'<svg class="plot" id="plot-([a-z]+)" data-series="(\d+)"', dom)
    assert [p[0] for p in plots] == ["reward", "accuracy", "reflection", "length", "kl", "loss"]
    series = dict((k, int(v)) for k, v in plots)
    assert series["reward"] == 4, "accuracy, format, reflection and the total"
    assert series["reflection"] == 5 and series["kl"] == 1 and series["length"] == 1 and series["loss"] == 1
    # Every curve has a point per logged step of its stages.
    rows = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
    kl_points = re.search(r'id="plot-kl".*?<polyline[^>]*points="([^"]+)"', dom, re.S).group(1).split()
    assert len(kl_points) == sum(1 for r in rows if "kl" in r)
    loss_points = re.search(r'id="plot-loss".*?<polyline[^>]*points="([^"]+)"', dom, re.S).group(1).split()
    assert len(loss_points) == len(rows)
    # Each stage's steps are labelled with the stage's own numbers (not the run-wide position),
    # on a light grid with round y ticks.
    loss_svg = re.search(r'id="plot-loss".*?</svg>', dom, re.S).group(0)
    xticks = [int(x) for x in re.findall(r'class="xtick"[^>]*>(\d+)<', loss_svg)]
    longest_stage = max(r["step"] for r in rows)
    assert xticks and max(xticks) <= longest_stage < len(rows), (xticks, longest_stage)
    assert loss_svg.count('class="grid"') >= 4 and len(re.findall(r'class="ytick"', loss_svg)) >= 2
    stage_labels = re.findall(r'class="stage" x="([\d.]+)"[^>]*>([^<]+)<', loss_svg)
    assert len(stage_labels) == 3, stage_labels  # pretrain, sft, grpo
    for (xa, na), (xb, _) in zip(stage_labels, stage_labels[1:]):
        assert float(xa) + 6 * len(na) <= float(xb) + 1, f"stage labels overlap: {stage_labels}"
    # The evaluation table: one row per eval.json row, in order, with its numbers.
    evals = json.load(open(os.path.join(run, "eval.json")))["rows"]
    table = re.search(r'<table id="eval">(.*?)</table>', dom, re.S).group(1)
    body_rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], re.S)
    assert [re.findall(r"<td[^>]*>(.*?)</td>", r)[0] for r in body_rows] == [e["stage"] for e in evals]
    assert re.findall(r"<th(?: [^>]*)?>(.*?)</th>", table)[:8] == ["stage", "model", "accuracy", "format_rate", "reflection",
                                                           "reflection_guarded", "mean_length", "n"]
    assert 'class="completion"' in dom
    assert "http://" not in open(os.path.join(run, "report.html")).read().replace("http://www.w3.org/2000/svg", "")

    shot = str(tmp_path / "report.png")
    browser("--screenshot=" + shot, "--window-size=1300,1400", url)
    width, height, bpp, pixels = png_pixels(shot)
    assert (width, height) == (1300, 1400)
    # Drawn, not blank: the curves' blue and the table's borders are on the page.
    blue = sum(1 for row in pixels for i in range(0, len(row), bpp)
               if abs(row[i] - 0x1f) < 40 and abs(row[i + 1] - 0x77) < 40 and abs(row[i + 2] - 0xb4) < 40)
    dark = sum(1 for row in pixels for i in range(0, len(row), bpp) if row[i] < 100 and row[i + 1] < 100 and row[i + 2] < 100)
    assert blue > 500, f"only {blue} pixels of the curves' blue"
    assert dark > 2000, f"only {dark} dark pixels (text, axes)"
