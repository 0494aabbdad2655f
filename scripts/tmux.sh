#!/usr/bin/env bash
# Makes sure tmux is installed (for the test that drives `hodeictl tui` as a person
# would), installing Debian's tmux when it is missing. Prints the tmux path on its last line.
set -euo pipefail
if ! command -v tmux >/dev/null; then
    echo "installing tmux (Debian)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends tmux >&2
fi
command -v tmux
