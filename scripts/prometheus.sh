#!/usr/bin/env bash
# Runs Debian's real Prometheus in the foreground, scraping the given /metrics targets.
#   scripts/prometheus.sh --install-only          install the package if it is missing
#   scripts/prometheus.sh [--port PORT] [--dir DIR] [--interval 1s] HOST:PORT...
# It installs `prometheus` with apt-get when missing (as root, or through sudo), writes
# DIR/prometheus.yml (one job, "hodei", with every target), keeps its data in DIR/data and
# listens on 127.0.0.1:PORT (default 9090). Stop it with SIGTERM.
set -euo pipefail

install() {
  if command -v prometheus >/dev/null 2>&1; then return; fi
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  echo "prometheus.sh: installing Debian's prometheus" >&2
  # The package's service is not started: we run the binary ourselves.
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    prometheus >&2 || {
    $sudo apt-get update -q >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      prometheus >&2
  }
}

port=9090 dir="" interval=1s targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --install-only) install; exit 0 ;;
    --port) port="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --interval) interval="$2"; shift 2 ;;
    -*) echo "prometheus.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  echo "prometheus.sh: name at least one HOST:PORT to scrape" >&2; exit 2
fi
install
dir="${dir:-$(mktemp -d -t hodei-prometheus.XXXXXX)}"
mkdir -p "$dir/data"
{
  echo "global:"
  echo "  scrape_interval: $interval"
  echo "  evaluation_interval: $interval"
  echo "scrape_configs:"
  echo "  - job_name: hodei"
  echo "    static_configs:"
  echo "      - targets:"
  for target in "${targets[@]}"; do echo "          - '$target'"; done
} > "$dir/prometheus.yml"
exec prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
  --web.listen-address="127.0.0.1:$port" --log.level=warn
