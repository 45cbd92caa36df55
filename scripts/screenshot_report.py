"""Render a run's report.html in headless Chromium and save a screenshot, to check what a person sees.

    python scripts/screenshot_report.py OUT [PNG] [--width 1200] [--height 3000] [--scale 0.5]

OUT is a run folder (holding report.html) or the report file itself; PNG defaults to
OUT/report_screenshot.png. ``--scale`` < 1 downsizes the saved image (matplotlib resampling; no PIL
needed), e.g. for docs/report.png. Needs a ``chromium`` (or ``chromium-browser``/``google-chrome``)
executable. Exit status 0 on success, 2 when the report or the browser is missing.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def screenshot(report: Path, png: Path, width: int = 1200, height: int = 3000, timeout_s: float = 120) -> Path:
    browser = next((b for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        raise FileNotFoundError(f"no headless browser found (tried {', '.join(BROWSERS)}); install the Debian package chromium")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chr") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--screenshot={png.resolve()}",
               report.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if not png.is_file():
        raise RuntimeError(f"{browser} wrote no screenshot (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return png


def downscale(png: Path, scale: float, crop_height: int | None = None) -> None:
    """Resize ``png`` in place by ``scale`` (area averaging), optionally keeping only the top
    ``crop_height`` pixels first; saved as an 8-bit RGB PNG."""
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(png)[..., :3]
    if crop_height:
        img = img[:crop_height]
    k = max(1, int(round(1 / scale)))
    h, w = (img.shape[0] // k) * k, (img.shape[1] // k) * k
    small = img[:h, :w].reshape(h // k, k, w // k, k, 3).mean(axis=(1, 3))
    mpimg.imsave(png, (np.clip(small, 0, 1) * 255).astype(np.uint8))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="run folder holding report.html, or the report file")
    p.add_argument("png", nargs="?", help="screenshot file (default OUT/report_screenshot.png)")
    p.add_argument("--width", type=int, default=1200)
    p.add_argument("--height", type=int, default=3000)
    p.add_argument("--scale", type=float, default=1.0, help="downscale factor of the saved image (e.g. 0.5)")
    p.add_argument("--crop", type=int, help="keep only the top CROP pixels (before scaling)")
    args = p.parse_args(argv)
    out = Path(args.out)
    report = out if out.suffix == ".html" else out / "report.html"
    if not report.is_file():
        print(f"error: {report} not found; build it with `python -m bioplastic report {out}`", file=sys.stderr)
        return 2
    png = Path(args.png) if args.png else report.parent / "report_screenshot.png"
    try:
        screenshot(report, png, args.width, args.height)
    except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.scale < 1 or args.crop:
        downscale(png, args.scale, args.crop)
    print(f"{png} ({png.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
