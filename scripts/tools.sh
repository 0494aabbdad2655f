#!/usr/bin/env bash
# Installs the tools the test suite drives besides Python's: tmux (the CLI is tested as a
# person uses it, in a real terminal). Debian packages; needs root to install, and is a
# no-op when they are there.
set -euo pipefail
missing=()
command -v tmux >/dev/null || missing+=(tmux)
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "tools: missing ${missing[*]}; install them (apt-get install ${missing[*]})" >&2
        exit 0
    fi
    echo "tools: installing ${missing[*]} (Debian)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
