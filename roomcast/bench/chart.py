"""A PNG chart with no plotting library: latency (p50/p99/max, log scale) and
delivered messages/s per second of each run, drawn on an RGB canvas and written
with zlib + struct. Text is a built-in 5x7 bitmap font (upper case)."""

from __future__ import annotations

import itertools
import math
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

Color = tuple[int, int, int]
WHITE, BLACK, GREY, LIGHT = (255, 255, 255), (0, 0, 0), (150, 150, 150), (225, 225, 225)
P50, P99, MAX, RATE = (31, 119, 180), (214, 39, 40), (255, 160, 120), (44, 160, 44)

_FONT_ROWS = {
    "0": "01110 10001 10011 10101 11001 10001 01110",
    "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11111 00010 00100 00010 00001 10001 01110",
    "4": "00010 00110 01010 10010 11111 00010 00010",
    "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110",
    "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110",
    "9": "01110 10001 10001 01111 00001 00010 01100",
    "A": "01110 10001 10001 11111 10001 10001 10001",
    "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110",
    "D": "11100 10010 10001 10001 10001 10010 11100",
    "E": "11111 10000 10000 11110 10000 10000 11111",
    "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111",
    "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "01110 00100 00100 00100 00100 00100 01110",
    "J": "00111 00010 00010 00010 00010 10010 01100",
    "K": "10001 10010 10100 11000 10100 10010 10001",
    "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001",
    "N": "10001 10001 11001 10101 10011 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110",
    "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101",
    "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110",
    "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110",
    "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010",
    "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 10001 01010 00100 00100 00100",
    "Z": "11111 00001 00010 00100 01000 10000 11111",
    " ": "00000 00000 00000 00000 00000 00000 00000",
    ".": "00000 00000 00000 00000 00000 01100 01100",
    "-": "00000 00000 00000 11111 00000 00000 00000",
    "/": "00000 00001 00010 00100 01000 10000 00000",
    "%": "11000 11001 00010 00100 01000 10011 00011",
    ":": "00000 01100 01100 00000 01100 01100 00000",
    "(": "00010 00100 01000 01000 01000 00100 00010",
    ")": "01000 00100 00010 00010 00010 00100 01000",
    ",": "00000 00000 00000 00000 01100 00100 01000",
    "=": "00000 00000 11111 00000 11111 00000 00000",
}
FONT = {ch: [row for row in rows.split()] for ch, rows in _FONT_ROWS.items()}


class Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.w, self.h = width, height
        self.px = bytearray(WHITE * (width * height))

    def dot(self, x: int, y: int, c: Color) -> None:
        if 0 <= x < self.w and 0 <= y < self.h:
            i = 3 * (y * self.w + x)
            self.px[i:i + 3] = bytes(c)

    def line(self, x0: int, y0: int, x1: int, y1: int, c: Color, *, width: int = 1,
             dash: int = 0) -> None:
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err, step = dx + dy, 0
        while True:  # Bresenham
            if not dash or (step // dash) % 2 == 0:
                for k in range(width):
                    self.dot(x0, y0 + k, c)
            step += 1
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def text(self, x: int, y: int, s: str, c: Color = BLACK, scale: int = 1) -> None:
        for ch in s.upper():
            glyph = FONT.get(ch, FONT[" "])
            for r, row in enumerate(glyph):
                for col, bit in enumerate(row):
                    if bit == "1":
                        for a in range(scale):
                            for b in range(scale):
                                self.dot(x + col * scale + a, y + r * scale + b, c)
            x += 6 * scale

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(self.px[3 * y * self.w:3 * (y + 1) * self.w])
                       for y in range(self.h))

        def chunk(kind: bytes, data: bytes) -> bytes:
            body = kind + data
            return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

        header = struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def _si(v: float) -> str:
    for div, suffix in ((1e6, "M"), (1e3, "K")):
        if abs(v) >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


class Panel:
    """A plot area with a linear x axis (seconds) and a linear or log10 y axis."""

    def __init__(self, canvas: Canvas, box: tuple[int, int, int, int], x_max: float,
                 y_min: float, y_max: float, log: bool, label: str) -> None:
        self.c, self.box, self.x_max, self.log = canvas, box, max(x_max, 1.0), log
        self.y_min, self.y_max = (math.log10(y_min), math.log10(y_max)) if log else (y_min, y_max)
        canvas.text(box[0], box[1] - 12, label)
        self._axes()

    def xy(self, x: float, y: float) -> tuple[int, int]:
        x0, y0, x1, y1 = self.box
        yv = math.log10(max(y, 10 ** self.y_min)) if self.log else y
        fy = (yv - self.y_min) / max(self.y_max - self.y_min, 1e-9)
        return (round(x0 + (x1 - x0) * x / self.x_max), round(y1 - (y1 - y0) * fy))

    def _axes(self) -> None:
        x0, y0, x1, y1 = self.box
        if self.log:
            ticks = [10.0 ** k for k in range(math.floor(self.y_min), math.ceil(self.y_max) + 1)]
        else:
            step = _nice_step(self.y_max - self.y_min)
            count = int((self.y_max - self.y_min) / step) + 1
            ticks = [self.y_min + i * step for i in range(count)]
        for t in ticks:
            _, y = self.xy(0, t)
            if y0 <= y <= y1:
                self.c.line(x0, y, x1, y, LIGHT)
                self.c.text(x0 - 6 * len(_si(t)) - 4, y - 3, _si(t), GREY)
        xstep = _nice_step(self.x_max, 10)
        k = 0
        while k * xstep <= self.x_max:
            x, _ = self.xy(k * xstep, 0)
            self.c.line(x, y1, x, y1 + 3, GREY)
            self.c.text(x - 3 * len(_si(k * xstep)), y1 + 6, _si(k * xstep), GREY)
            k += 1
        self.c.line(x0, y0, x0, y1, BLACK)
        self.c.line(x0, y1, x1, y1, BLACK)

    def series(self, points: Sequence[tuple[float, float]], color: Color) -> None:
        pts = [self.xy(x, y) for x, y in points]
        for (ax, ay), (bx, by) in itertools.pairwise(pts):
            self.c.line(ax, ay, bx, by, color, width=2)
        if len(pts) == 1:
            self.c.dot(*pts[0], color)

    def vline(self, x: float, color: Color) -> None:
        px, _ = self.xy(x, 0)
        self.c.line(px, self.box[1], px, self.box[3], color, dash=4)


def write_chart(path: str, runs: Sequence[Mapping[str, Any]], title: str = "") -> None:
    rows = [[r for r in run.get("timeline", []) if r.get("delivered")] for run in runs]
    x_max = max((r["t"] + 1 for rs in rows for r in rs), default=1)
    lat = [v for rs in rows for r in rs for k in ("p50_ms", "p99_ms", "max_ms")
           if isinstance(v := r.get(k), int | float) and v > 0]
    rate_max = max((r["delivered"] for rs in rows for r in rs), default=1)
    canvas = Canvas(900, 620)
    canvas.text(80, 10, title, BLACK, scale=2)
    lat_lo = 10 ** math.floor(math.log10(min(lat, default=1)))
    lat_hi = 10 ** math.ceil(math.log10(max(lat, default=10)))
    top = Panel(canvas, (80, 60, 880, 300), x_max, lat_lo, lat_hi, True,
                "LATENCY MS (LOG) PER SECOND:")
    bottom = Panel(canvas, (80, 360, 880, 590), x_max, 0, rate_max * 1.1, False,
                   "DELIVERED MSG/S")
    for rs, run in zip(rows, runs, strict=True):
        for key, color in (("max_ms", MAX), ("p99_ms", P99), ("p50_ms", P50)):
            top.series([(r["t"] + 0.5, r[key]) for r in rs if r.get(key)], color)
        bottom.series([(r["t"] + 0.5, r["delivered"]) for r in rs], RATE)
        window = run.get("published", {}).get("window_s")
        if isinstance(window, int | float):
            top.vline(window, GREY)
            bottom.vline(window, GREY)
    legend_x = 320
    for name, color in (("P50", P50), ("P99", P99), ("MAX", MAX)):
        canvas.line(legend_x, 51, legend_x + 14, 51, color, width=2)
        canvas.text(legend_x + 18, 48, name, color)
        legend_x += 60
    canvas.text(500, 48, f"{len(runs)} RUN(S); DASHED = END OF PUBLISHING", GREY)
    canvas.text(440, 606, "SECONDS SINCE PUBLISHING STARTED", GREY)
    Path(path).write_bytes(canvas.png())
