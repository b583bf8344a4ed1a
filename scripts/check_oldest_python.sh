#!/usr/bin/env bash
# The oldest Python the package claims (requires-python >= 3.9): install the
# project into a throwaway venv of that interpreter and run the fast tier.
# Skipped, with a message, when no Python 3.9 is on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
py39=""
# pyenv's shims answer `command -v` even when they cannot run: try each for real.
for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.9*/bin/python3.9 "$(command -v python3.9 || true)"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c '' 2>/dev/null; then
    py39=$candidate
    break
  fi
done
if [ -z "$py39" ]; then
  echo "[dev] no Python 3.9 here: oldest-Python check skipped"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py39" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check . pytest hypothesis
cd "$work"  # import the installed copy, not src/
"$work/venv/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$OLDPWD" "$OLDPWD/tests/fast"
