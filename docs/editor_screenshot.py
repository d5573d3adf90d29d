"""Take docs/img/editor_neovim.png: Neovim's built-in LSP client with `resgraph lsp`, headless in tmux.

    .venv/bin/python docs/editor_screenshot.py      # needs nvim (>= 0.7), tmux, Pillow

Opens the identity-vs-stride-2 mistake, waits for the server's diagnostics, opens the diagnostic float
on the faulty line, captures the pane with its colours (`tmux capture-pane -e`) and draws it to PNG.
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


def capture() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "identity_stride2.yaml"
        spec.write_text(SPEC)
        init = Path(tmp) / "init.lua"
        init.write_text(INIT % {"python": sys.executable})
        env = dict(os.environ, PYTHONPATH=str(ROOT), TERM="xterm-256color")
        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
        subprocess.run(["tmux", "new-session", "-d", "-s", SESSION, "-x", str(COLUMNS), "-y", str(ROWS), "-c", tmp,
                        f"nvim -u {init} {spec.name}"], check=True, env=env)
        try:
            deadline = time.time() + 60
            while time.time() < deadline:   # the server started and published: the sign column shows `E`
                time.sleep(1)
                if re.search(r"^E\s+1[0-9] ", _tmux("capture-pane", "-p", "-t", SESSION), re.M):
                    break
            else:
                raise SystemExit("no diagnostic appeared in Neovim within 60 s")
            line = SPEC.splitlines().index(next(l for l in SPEC.splitlines() if "shortcut: identity" in l)) + 1
            column = SPEC.splitlines()[line - 1].index("identity")
            _tmux("send-keys", "-t", SESSION, f":call cursor({line}, {column + 1})", "Enter")
            _tmux("send-keys", "-t", SESSION, ":lua vim.diagnostic.open_float()", "Enter")
            time.sleep(2)
            return _tmux("capture-pane", "-e", "-p", "-t", SESSION)
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
    text = capture()
    draw(parse(text), OUTPUT)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
