#!/usr/bin/env python3
"""Renders a terminal capture with ANSI colours (`tmux capture-pane -e -p`) as an SVG picture.

    scripts/ansi2svg.py CAPTURE.txt OUT.svg [--cols N] [--rows N] [--title TEXT]

Only what a ratatui screen uses is understood: SGR 0/1/2/3/4/7/22/23/24/27, the 8 and bright
colours (30-37, 90-97, 40-47, 100-107), 256 colours (38;5;N, 48;5;N), true colour (38;2;R;G;B,
48;2;R;G;B) and the defaults (39, 49). Every cell is one fixed-width column, so box drawing lines
up whatever the font's own advance. scripts/screenshot.sh turns the SVG into a PNG.
"""

import argparse
import html
import re
import sys

# The Tango palette: readable on the dark background below.
BASE = [
    "#2e3436", "#cc0000", "#4e9a06", "#c4a000", "#3465a4", "#75507b", "#06989a", "#d3d7cf",
    "#555753", "#ef2929", "#8ae234", "#fce94f", "#729fcf", "#ad7fa8", "#34e2e2", "#eeeeec",
]
FG, BG = "#d3d7cf", "#1e1e1e"
# Block elements: (top of the box, its height) as shares of the cell.
BLOCKS = {"█": (0.06, 0.88), "▀": (0.06, 0.44), "▄": (0.5, 0.44)}
BLOCKS.update({chr(0x2581 + i): (1 - (i + 1) / 8, (i + 1) / 8) for i in range(7)})
CELL_W, CELL_H, FONT = 8.4, 17.0, 14

SGR = re.compile(r"\x1b\[([0-9;:]*)m")
OTHER_ESCAPE = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|\][^\x07]*\x07|[()][A-Z0-9])")


def colour256(n):
    """The colour of index n of the 256-colour palette."""
    if n < 16:
        return BASE[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return "#%02x%02x%02x" % (steps[n // 36], steps[(n // 6) % 6], steps[n % 6])
    grey = 8 + (n - 232) * 10
    return "#%02x%02x%02x" % (grey, grey, grey)


class Style:
    """The SGR state of a cell."""

    def __init__(self):
        self.fg = None
        self.bg = None
        self.bold = False
        self.dim = False
        self.italic = False
        self.underline = False
        self.reverse = False

    def copy(self):
        s = Style()
        s.__dict__.update(self.__dict__)
        return s

    def key(self):
        return tuple(sorted(self.__dict__.items()))

    def apply(self, params):
        codes = [int(p) if p else 0 for p in re.split("[;:]", params)] if params else [0]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0:
                self.__init__()
            elif c == 1:
                self.bold = True
            elif c == 2:
                self.dim = True
            elif c == 3:
                self.italic = True
            elif c == 4:
                self.underline = True
            elif c == 7:
                self.reverse = True
            elif c == 22:
                self.bold = self.dim = False
            elif c == 23:
                self.italic = False
            elif c == 24:
                self.underline = False
            elif c == 27:
                self.reverse = False
            elif 30 <= c <= 37:
                self.fg = BASE[c - 30]
            elif 90 <= c <= 97:
                self.fg = BASE[c - 90 + 8]
            elif 40 <= c <= 47:
                self.bg = BASE[c - 40]
            elif 100 <= c <= 107:
                self.bg = BASE[c - 100 + 8]
            elif c == 39:
                self.fg = None
            elif c == 49:
                self.bg = None
            elif c in (38, 48) and i + 1 < len(codes):
                if codes[i + 1] == 5 and i + 2 < len(codes):
                    value = colour256(codes[i + 2])
                    i += 2
                elif codes[i + 1] == 2 and i + 4 < len(codes):
                    value = "#%02x%02x%02x" % tuple(codes[i + 2:i + 5])
                    i += 4
                else:
                    value = None
                if c == 38:
                    self.fg = value
                else:
                    self.bg = value
            i += 1

    def colours(self):
        fg, bg = self.fg or FG, self.bg or BG
        if self.reverse:
            fg, bg = bg, fg
        return fg, bg


def parse(text, cols, rows):
    """The screen as rows of (character, style) cells."""
    screen = []
    style = Style()
    for line in text.split("\n")[:rows]:
        cells = []
        pos = 0
        while pos < len(line):
            m = SGR.match(line, pos)
            if m:
                style.apply(m.group(1))
                pos = m.end()
                continue
            m = OTHER_ESCAPE.match(line, pos)
            if m:
                pos = m.end()
                continue
            cells.append((line[pos], style.copy()))
            pos += 1
        cells = cells[:cols]
        cells += [(" ", Style())] * (cols - len(cells))
        screen.append(cells)
    while len(screen) < rows:
        screen.append([(" ", Style())] * cols)
    return screen


def render(screen, title):
    """The SVG of a parsed screen: background runs as rectangles, text runs per style."""
    rows, cols = len(screen), len(screen[0]) if screen else 0
    pad, bar = 12, 28 if title else 0
    width = cols * CELL_W + 2 * pad
    height = rows * CELL_H + 2 * pad + bar
    out = [
        '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">'
        % (width, height, width, height),
        '<rect width="100%%" height="100%%" rx="8" fill="%s"/>' % BG,
        "<style>text{font-family:'DejaVu Sans Mono','Menlo',monospace;font-size:%dpx;"
        "white-space:pre}</style>" % FONT,
    ]
    if title:
        out.append(
            '<text x="%d" y="%d" fill="#888a85">%s</text>' % (pad, pad + 12, html.escape(title))
        )
    for r, cells in enumerate(screen):
        y = pad + bar + r * CELL_H
        c = 0
        while c < cols:
            _, bg = cells[c][1].colours()
            start = c
            while c < cols and cells[c][1].colours()[1] == bg:
                c += 1
            if bg != BG:
                out.append(
                    '<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>'
                    % (pad + start * CELL_W, y, (c - start) * CELL_W, CELL_H, bg)
                )
        for c, (ch, style) in enumerate(cells):
            if ch == " ":
                continue
            fg, _ = style.colours()
            # Block elements are drawn as boxes filling their share of the cell, so that bars
            # and sparklines join up whatever the font's glyph height.
            share = BLOCKS.get(ch)
            if share is not None:
                top, part = share
                out.append(
                    '<rect x="%.1f" y="%.2f" width="%.2f" height="%.2f" fill="%s"/>'
                    % (pad + c * CELL_W - 0.3, y + top * CELL_H, CELL_W + 0.8, part * CELL_H, fg)
                )
                continue
            attrs = ['fill="%s"' % fg]
            if style.bold:
                attrs.append('font-weight="bold"')
            if style.dim:
                attrs.append('opacity="0.6"')
            if style.italic:
                attrs.append('font-style="italic"')
            if style.underline:
                attrs.append('text-decoration="underline"')
            out.append(
                '<text x="%.1f" y="%.1f" %s>%s</text>'
                % (pad + c * CELL_W, y + CELL_H * 0.78, " ".join(attrs), html.escape(ch))
            )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture")
    ap.add_argument("out")
    ap.add_argument("--cols", type=int, default=120)
    ap.add_argument("--rows", type=int, default=36)
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    try:
        with open(args.capture, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        sys.exit("ansi2svg: %s" % e)
    if not text.strip():
        sys.exit("ansi2svg: %s is empty: nothing was captured" % args.capture)
    svg = render(parse(text, args.cols, args.rows), args.title)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(svg)


if __name__ == "__main__":
    main()
