#!/usr/bin/env bash
# Builds the Hodei agent image (default tag hodei-agent:latest) without a registry:
# Debian bookworm's python3.11 runtime .debs unpacked into a root filesystem, the hodei,
# grpcio and protobuf wheels added with the host's pip (resolved for the image's platform),
# byte-compiled in a chroot, then `docker import`ed. Where a registry is reachable, the
# ordinary `docker build -f plugins/hodei_plugins/docker/Dockerfile .` does the same job.
#
#   HODEI_AGENT_IMAGE   tag to build            (default hodei-agent:latest)
#   HODEI_IMAGE_CACHE   .debs and wheels cache  (default ~/.cache/hodei/agent-image)
#   DOCKER_HOST         the engine  (default: scripts/docker-engine.sh's socket if it exists,
#                       else the docker CLI's default)
#   PYTHON              host python with pip    (default .venv/bin/python, else python3)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tag="${HODEI_AGENT_IMAGE:-hodei-agent:latest}"
cache="${HODEI_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hodei/agent-image}"
python="${PYTHON:-$root/.venv/bin/python}"
[[ -x "$python" ]] || python=python3
started=$(date +%s.%N)

# The runtime closure of python3.11 plus a shell and the few tools jobs expect; what a
# package manager or perl would need is left out (the image never installs anything).
roots=(python3.11-minimal libpython3.11-stdlib libstdc++6 dash coreutils hostname)
exclude='^(dpkg|install-info|perl|perl-base|perl-modules-5.36|libperl5.36|libgdbm-compat4|mailcap|mime-support|tar|libzstd1|libmd0)$'

mkdir -p "$cache/debs" "$cache/wheels"
closure() {
    apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
        --no-replaces --no-enhances "${roots[@]}" 2>/dev/null \
        | grep -v '^ ' | grep -v '^<' | sort -u | grep -Ev "$exclude" || true
}
mapfile -t pkgs < <(closure)
if (( ${#pkgs[@]} < 20 )); then
    apt-get update -qq
    mapfile -t pkgs < <(closure)
fi
missing=()
for p in "${pkgs[@]}"; do
    compgen -G "$cache/debs/${p}_*.deb" >/dev/null || missing+=("$p")
done
if (( ${#missing[@]} )); then
    echo "downloading ${#missing[@]} .debs" >&2
    (cd "$cache/debs" && apt-get download -qq "${missing[@]}" 2>/dev/null) || {
        apt-get update -qq
        (cd "$cache/debs" && apt-get download -qq "${missing[@]}")
    }
fi

# grpcio and protobuf at the host's versions (they must match the committed stubs), for
# CPython 3.11 on glibc 2.36; pip runs on the host, where TLS to the index works.
# pip does not expand a manylinux tag to the older ones it implies: list them (glibc <= 2.36).
platforms=()
for tag_ in manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_28_x86_64 \
        manylinux_2_34_x86_64 manylinux_2_36_x86_64; do
    platforms+=(--platform "$tag_")
done
versions=$("$python" -c 'import grpc, google.protobuf as p; print(f"grpcio=={grpc.__version__} protobuf=={p.__version__}")')
"$python" -m pip download -q --dest "$cache/wheels" --only-binary=:all: \
    "${platforms[@]}" --python-version 3.11 --implementation cp $versions
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# This tree's wheel, built where no other build (another checkout) can swap it.
"$python" -m pip wheel -q --no-deps --no-build-isolation -w "$work/wheel" "$root"
hodei_wheel=$(ls "$work"/wheel/hodei-*.whl | head -n1)
rootfs="$work/rootfs"
mkdir -p "$rootfs"
for p in "${pkgs[@]}"; do
    deb=$(ls -t "$cache/debs/${p}"_*.deb | head -n1)
    dpkg-deb -x "$deb" "$rootfs"
done
mkdir -p "$rootfs"/{tmp,root,etc,proc,sys,dev,run,usr/lib/python3/dist-packages}
chmod 1777 "$rootfs/tmp"
ln -sf python3.11 "$rootfs/usr/bin/python3"
[[ -e "$rootfs/bin/sh" ]] || ln -s dash "$rootfs/bin/sh"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' \
    >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"

site="$rootfs/usr/lib/python3/dist-packages"
"$python" -m pip install -q --no-index --find-links "$cache/wheels" \
    --target "$site" --only-binary=:all: "${platforms[@]}" \
    --python-version 3.11 --implementation cp $versions
"$python" -m pip install -q --no-deps --no-index --target "$site" "$hodei_wheel"
# Byte-compiled in the image's own interpreter: halves the agent's start time.
chroot "$rootfs" /usr/bin/python3.11 -m compileall -q /usr/lib/python3.11 \
    /usr/lib/python3/dist-packages >/dev/null
chroot "$rootfs" /usr/bin/python3 -c 'import grpc, hodei_agent, hodei_api.v1.agent_pb2'

docker_args=()
if [[ -n "${DOCKER_HOST:-}" ]]; then
    docker_args=(-H "$DOCKER_HOST")
elif [[ -S /run/hodei-docker.sock ]]; then
    docker_args=(-H unix:///run/hodei-docker.sock)
fi
tar -C "$rootfs" --numeric-owner -c . | docker "${docker_args[@]}" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PYTHONUNBUFFERED=1' \
    --change 'ENTRYPOINT ["python3", "-m", "hodei_agent"]' \
    --message "hodei agent (offline build)" - "$tag" >/dev/null
size=$(docker "${docker_args[@]}" image inspect -f '{{.Size}}' "$tag")
elapsed=$(echo "$(date +%s.%N) - $started" | bc 2>/dev/null || echo "?")
echo "built $tag: $(( size / 1000000 )) MB, ${#pkgs[@]} .debs, ${elapsed}s"
