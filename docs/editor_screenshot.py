"""Take docs/img/editor_neovim.png: Neovim's built-in LSP client with `resgraph lsp`, headless in tmux.

    .venv/bin/python docs/editor_screenshot.py      # needs nvim (>= 0.7), tmux, Pillow

Opens the identity-vs-stride-2 mistake and shows the diagnostic float on the faulty line; then opens
specs/resnet18.yaml and hovers on the block call `layer3`. Each pane is captured with its colours
(`tmux capture-pane -e`) and drawn to PNG (docs/img/editor_neovim.png, editor_neovim_hover.png).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "img" / "editor_neovim.png"
HOVER_OUTPUT = ROOT / "docs" / "img" / "editor_neovim_hover.png"
COLUMNS, ROWS = 132, 30
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
SESSION = "resgraph-screenshot"

# the test case without its `# E[...]` annotation
SPEC = re.sub(r"\s+# E\[.*$", "", (ROOT / "tests" / "cases" / "bad" / "identity_stride2.yaml").read_text(), flags=re.M)

INIT = """
vim.opt.termguicolors = true
vim.opt.number = true
vim.opt.signcolumn = "yes"
vim.opt.shortmess:append("I")
vim.opt.background = "dark"
vim.cmd("colorscheme default")
vim.cmd("highlight NormalFloat guibg=#262636 guifg=#d0d0d0")
vim.cmd("highlight FloatBorder guibg=#262636 guifg=#8080a0")
vim.cmd("highlight SignColumn guibg=NONE")
vim.diagnostic.config({virtual_text = true, underline = true, severity_sort = true,
                       float = {source = "always", border = "rounded", max_width = 110}})
vim.api.nvim_create_autocmd("FileType", {pattern = "yaml", callback = function(args)
  local client = vim.lsp.start_client({name = "resgraph", cmd = {%(python)r, "-m", "resgraph", "lsp"},
                                       root_dir = vim.fn.getcwd()})
  vim.lsp.buf_attach_client(args.buf, client)
end})
"""


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def capture(files: dict[str, str], opened: str, line: int, column: int, command: str, shown: str) -> str:
    """Open `opened` (one of `files`, written to a temporary directory) in Neovim, put the cursor at
    (line, column), 1-based, run `command` until the pane shows `shown`, and return the pane."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / name).write_text(text)
        init = Path(tmp) / "init.lua"
        init.write_text(INIT % {"python": sys.executable})
        env = dict(os.environ, PYTHONPATH=str(ROOT), TERM="xterm-256color")
        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
        subprocess.run(["tmux", "new-session", "-d", "-s", SESSION, "-x", str(COLUMNS), "-y", str(ROWS), "-c", tmp,
                        f"nvim -u {init} {opened}"], check=True, env=env)
        try:
            deadline = time.time() + 90
            while time.time() < deadline:   # until the server has started and answers
                time.sleep(2)
                _tmux("send-keys", "-t", SESSION, "Escape", f":call cursor({line}, {column})", "Enter")
                _tmux("send-keys", "-t", SESSION, f":{command}", "Enter")
                time.sleep(2)
                pane = _tmux("capture-pane", "-e", "-p", "-t", SESSION)
                if shown in _tmux("capture-pane", "-p", "-t", SESSION):
                    return pane
            raise SystemExit(f"Neovim did not show {shown!r} within 90 s")
        finally:
            subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)


# ---- drawing the captured pane ------------------------------------------------------------------

BASIC = [(0, 0, 0), (205, 49, 49), (13, 188, 121), (229, 229, 16), (36, 114, 200), (188, 63, 188), (17, 168, 205),
         (229, 229, 229), (102, 102, 102), (241, 76, 76), (35, 209, 139), (245, 245, 67), (59, 142, 234),
         (214, 112, 214), (41, 184, 219), (255, 255, 255)]
FOREGROUND, BACKGROUND = (220, 220, 220), (24, 24, 24)


def _color256(n: int) -> tuple[int, int, int]:
    if n < 16:
        return BASIC[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return steps[n // 36], steps[n // 6 % 6], steps[n % 6]
    level = 8 + (n - 232) * 10
    return level, level, level


def parse(text: str) -> list[list[tuple[str, dict]]]:
    """The pane as rows of (character, style) from its SGR escape sequences."""
    rows = []
    style: dict = {}
    for line in text.split("\n")[:ROWS]:
        cells = []
        for token in re.split(r"(\x1b\[[0-9;:]*m)", line):
            if token.startswith("\x1b["):
                params = token[2:-1].replace(":", ";").split(";") if token[2:-1] else ["0"]
                codes = [int(p) if p.isdigit() else 0 for p in params]
                i = 0
                while i < len(codes):
                    c = codes[i]
                    if c == 0:
                        style = {}
                    elif c == 1:
                        style["bold"] = True
                    elif c == 4:
                        style["underline"] = True
                        if i + 1 < len(codes) and ":" in token:
                            i += 1
                    elif c == 7:
                        style["reverse"] = True
                    elif c in (22, 24, 27):
                        style.pop({22: "bold", 24: "underline", 27: "reverse"}[c], None)
                    elif 30 <= c <= 37 or 90 <= c <= 97:
                        style["fg"] = BASIC[c - 30 if c < 90 else c - 82]
                    elif 40 <= c <= 47 or 100 <= c <= 107:
                        style["bg"] = BASIC[c - 40 if c < 100 else c - 92]
                    elif c in (38, 48, 58) and i + 1 < len(codes):
                        if codes[i + 1] == 5 and i + 2 < len(codes):
                            color, i = _color256(codes[i + 2]), i + 2
                        elif codes[i + 1] == 2 and i + 4 < len(codes):
                            color, i = tuple(codes[i + 2:i + 5]), i + 4
                        else:
                            color = None
                        if color is not None and c != 58:
                            style["fg" if c == 38 else "bg"] = color
                        elif color is not None:
                            style["underline_color"] = color
                    elif c == 39:
                        style.pop("fg", None)
                    elif c == 49:
                        style.pop("bg", None)
                    i += 1
            else:
                cells += [(ch, dict(style)) for ch in token]
        rows.append(cells)
    return rows


def draw(rows: list[list[tuple[str, dict]]], output: Path) -> None:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(FONT, 15)
    bold = ImageFont.truetype(FONT.replace("Mono.ttf", "Mono-Bold.ttf"), 15)
    width, height = 9, 19
    image = Image.new("RGB", (COLUMNS * width + 16, ROWS * height + 16), BACKGROUND)
    pen = ImageDraw.Draw(image)
    for y, cells in enumerate(rows):
        for x, (ch, style) in enumerate(cells[:COLUMNS]):
            fg, bg = style.get("fg", FOREGROUND), style.get("bg", BACKGROUND)
            if style.get("reverse"):
                fg, bg = bg, fg
            left, top = 8 + x * width, 8 + y * height
            if bg != BACKGROUND:
                pen.rectangle([left, top, left + width - 1, top + height - 1], fill=bg)
            if ch.strip():
                pen.text((left, top + 1), ch, font=bold if style.get("bold") else font, fill=fg)
            if style.get("underline"):
                color = style.get("underline_color", fg)
                for dx in range(width):   # an undercurl, as Neovim draws diagnostics
                    pen.point((left + dx, top + height - 3 + (1 if (x * width + dx) % 4 < 2 else 0)), fill=color)
    image.save(output)


def main() -> None:
    for tool in ("nvim", "tmux"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    lines = SPEC.splitlines()
    line = next(n for n, text in enumerate(lines, 1) if "shortcut: identity" in text)
    pane = capture({"identity_stride2.yaml": SPEC}, "identity_stride2.yaml", line,
                   lines[line - 1].index("identity") + 1, "lua vim.diagnostic.open_float()", "help: the channels")
    draw(parse(pane), OUTPUT)
    print(f"wrote {OUTPUT}")
    spec = (ROOT / "specs" / "resnet18.yaml").read_text()
    line = next(n for n, text in enumerate(spec.splitlines(), 1) if text.startswith("  layer3:"))
    pane = capture({"resnet18.yaml": spec, "blocks/resnet.yaml": (ROOT / "specs" / "blocks" / "resnet.yaml").read_text()},
                   "resnet18.yaml", line, 3, "lua vim.lsp.buf.hover()", "layer3.1")
    draw(parse(pane), HOVER_OUTPUT)
    print(f"wrote {HOVER_OUTPUT}")


if __name__ == "__main__":
    main()
