#!/usr/bin/env bash
# One command from a fresh clone: graphviz's `dot` if missing, a virtual environment with
# resgraph and its test dependencies, then compile a spec as a smoke test.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v dot >/dev/null 2>&1; then
  echo "setup: installing graphviz (the \`dot\` program)"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq graphviz >/dev/null
  elif command -v dnf >/dev/null 2>&1; then
    $sudo dnf install -y graphviz
  elif command -v brew >/dev/null 2>&1; then
    brew install graphviz
  else
    echo "setup: cannot install graphviz here; install it by hand (https://graphviz.org/download/)" >&2
    exit 1
  fi
fi

# The viewer's tests drive a real browser (playwright, from the `dev` extra, pointed at the system's chromium:
# pip's playwright cannot download browsers everywhere). Without chromium they skip and say so.
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium (for the viewer's browser tests)"
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver \
        >/dev/null; } || echo "setup: could not install chromium; the browser tests will skip" >&2
  else
    echo "setup: no chromium found; install it to run the viewer's browser tests (they skip without it)" >&2
  fi
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
.venv/bin/resgraph compile specs/resnet18.yaml
