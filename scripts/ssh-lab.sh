#!/usr/bin/env bash
# A lab of real OpenSSH hosts for the `ssh` provider's tests: each host is an sshd in a
# network namespace of its own, with its own address, user, home and host key.
#
#   scripts/ssh-lab.sh up DIR     start the lab in DIR (an empty private directory)
#   scripts/ssh-lab.sh down DIR   stop it: its processes, namespaces, links and users
#   scripts/ssh-lab.sh install    only install what it needs (openssh-server)
#
# `up` installs openssh-server if it is missing (Debian) and must run as root. The hosts:
#   h1..hN   ordinary hosts on a bridge the machine is on too (it has BRIDGE_ADDRESS);
#            N is $SSH_LAB_HOSTS, 4 by default (at most 32)
#   nopy     like them, but no Python on its PATH
#   bastion  an ordinary host that is also the only way to reach `hidden`
#   hidden   on a link between it and the bastion only
# DIR/hosts.tsv lists them: name, address, port, user, home, host public key. DIR/client
# holds the client key (id_ed25519) and a known_hosts naming every host's key; DIR/lab.env
# has LAB_ID and BRIDGE_ADDRESS. Only DIR and what is inside it has its permissions set:
# sshd's StrictModes checks a user's home, which lives in DIR/home.
set -euo pipefail

count="${SSH_LAB_HOSTS:-4}"
case "$count" in ''|*[!0-9]*) echo "ssh-lab: SSH_LAB_HOSTS must be a number" >&2; exit 1 ;; esac
[ "$count" -ge 1 ] && [ "$count" -le 32 ] || { echo "ssh-lab: SSH_LAB_HOSTS: 1 to 32" >&2; exit 1; }
HOSTS=()
for i in $(seq 1 "$count"); do HOSTS+=("h$i"); done
HOSTS+=(nopy bastion)
# Tools the `nopy` host's PATH offers (no Python among them).
NOPY_TOOLS=(sh cat mkdir rm mv chmod ls kill sleep id test uname df printf tr sed head
            tail grep command true false env nohup setsid dirname basename readlink ps)

die() { echo "ssh-lab: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it creates network namespaces and users)"
cmd="${1:-}"
dir="${2:-}"

install_sshd() {
  [ -x /usr/sbin/sshd ] && return 0
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q openssh-server >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q openssh-server >/dev/null; } ||
    die "cannot install openssh-server"
}

if [ "$cmd" = install ]; then
  install_sshd
  exit 0
fi
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: ssh-lab.sh up|down DIR, or install"
case "$dir" in /*) ;; *) die "DIR must be an absolute path" ;; esac
[ "$dir" != / ] || die "DIR must not be /"

ns_of() { echo "hl-$LAB_ID-$1"; }

down() {
  [ -f "$dir/lab.env" ] || return 0
  # shellcheck disable=SC1091
  . "$dir/lab.env"
  local ns pid
  for ns in $(ip netns list 2>/dev/null | cut -d' ' -f1 | grep "^hl-$LAB_ID-"); do
    # Every process in the namespace is the lab's: its sshd and what was started through it.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  ip link del "hlb$LAB_ID" 2>/dev/null || true
  if [ -f "$dir/users" ]; then
    while read -r user; do
      [ -n "$user" ] || continue
      for pid in $(ps -o pid= -u "$user" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
      userdel "$user" 2>/dev/null || true
    done < "$dir/users"
  fi
  rm -rf "${dir:?}/home" "$dir/hosts" "$dir/users" "$dir/lab.env"
}

if [ "$cmd" = down ]; then
  down
  exit 0
fi
[ "$cmd" = up ] || die "unknown command $cmd (up or down)"

install_sshd
command -v ip >/dev/null || die "the ip command (iproute2) is missing"
# sshd's privilege separation directory (the package's own, made at boot by systemd).
[ -d /run/sshd ] || install -d -m 0755 /run/sshd

mkdir -p "$dir"
[ -z "$(ls -A "$dir")" ] || die "$dir is not empty"
# The users must traverse DIR to their homes; nothing in DIR is writable by them but their home.
chmod 0711 "$dir"
# 10.R.S.0/24 for the bridge and 10.R.S+1.0/30 for the bastion's link, R in 200..249: a
# pair no route of this machine (another lab's, say) touches yet.
for _ in $(seq 1 50); do
  LAB_ID="$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
  octet_r=$((200 + 0x${LAB_ID:0:2} % 50))
  octet_s=$(((0x${LAB_ID:2:2} % 127) * 2))
  net="10.$octet_r.$octet_s"
  hidden_net="10.$octet_r.$((octet_s + 1))"
  ip -4 route show table all | grep -qE "(^| )10\.$octet_r\.($octet_s|$((octet_s + 1)))\." || break
done
bridge="hlb$LAB_ID"
printf 'LAB_ID=%s\nBRIDGE_ADDRESS=%s\n' "$LAB_ID" "$net.1" > "$dir/lab.env"
trap 'down' ERR

mkdir -m 0711 "$dir/home"
mkdir -m 0700 "$dir/hosts" "$dir/client"
: > "$dir/users"
ssh-keygen -q -t ed25519 -N '' -C hodei-lab-client -f "$dir/client/id_ed25519"
: > "$dir/client/known_hosts"
printf 'name\taddress\tport\tuser\thome\thost_key\n' > "$dir/hosts.tsv"

ip link add "$bridge" type bridge
ip addr add "$net.1/24" dev "$bridge"
ip link set "$bridge" up

mkdir -m 0755 "$dir/nopy-bin"
for tool in "${NOPY_TOOLS[@]}"; do
  if path="$(command -v "$tool")" && [ "${path#/}" != "$path" ]; then
    ln -s "$path" "$dir/nopy-bin/$tool"
  fi
done

start_host() {  # name address
  local name="$1" address="$2" ns user home hostdir
  ns="$(ns_of "$name")"
  user="hl$LAB_ID$name"
  home="$dir/home/$name"
  hostdir="$dir/hosts/$name"
  useradd -M -d "$home" -s /bin/sh -p '*' "$user"
  echo "$user" >> "$dir/users"
  install -d -m 0700 -o "$user" -g "$user" "$home" "$home/.ssh"
  install -m 0600 -o "$user" -g "$user" "$dir/client/id_ed25519.pub" "$home/.ssh/authorized_keys"
  mkdir -m 0700 "$hostdir"
  ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$hostdir/ssh_host_ed25519_key"
  {
    echo "ListenAddress $address"
    echo "Port 22"
    echo "HostKey $hostdir/ssh_host_ed25519_key"
    echo "PidFile $hostdir/sshd.pid"
    echo "AuthorizedKeysFile .ssh/authorized_keys"
    echo "AllowUsers $user"
    echo "PasswordAuthentication no"
    echo "KbdInteractiveAuthentication no"
    echo "UsePAM no"
    echo "StrictModes yes"
    echo "AllowTcpForwarding yes"
    echo "Subsystem sftp internal-sftp"
    if [ "$name" = nopy ]; then echo "SetEnv PATH=$dir/nopy-bin"; fi
  } > "$hostdir/sshd_config"
  ip netns exec "$ns" /usr/sbin/sshd -f "$hostdir/sshd_config" -E "$hostdir/sshd.log"
  local key
  key="$(cut -d' ' -f1,2 "$hostdir/ssh_host_ed25519_key.pub")"
  echo "$address $key" >> "$dir/client/known_hosts"
  printf '%s\t%s\t22\t%s\t%s\t%s\n' "$name" "$address" "$user" "$home" "$key" >> "$dir/hosts.tsv"
}

index=2
for name in "${HOSTS[@]}"; do
  ns="$(ns_of "$name")"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "hl$LAB_ID$index" type veth peer name eth0 netns "$ns"
  ip link set "hl$LAB_ID$index" master "$bridge" up
  ip -n "$ns" addr add "$net.$index/24" dev eth0
  ip -n "$ns" link set eth0 up
  start_host "$name" "$net.$index"
  index=$((index + 1))
done

# `hidden`: linked to the bastion only.
hidden_ns="$(ns_of hidden)"
ip netns add "$hidden_ns"
ip -n "$hidden_ns" link set lo up
ip -n "$(ns_of bastion)" link add eth1 type veth peer name eth0 netns "$hidden_ns"
ip -n "$(ns_of bastion)" addr add "$hidden_net.1/30" dev eth1
ip -n "$(ns_of bastion)" link set eth1 up
ip -n "$hidden_ns" addr add "$hidden_net.2/30" dev eth0
ip -n "$hidden_ns" link set eth0 up
start_host hidden "$hidden_net.2"

chmod 0600 "$dir/client/known_hosts"
trap - ERR
echo "ssh lab $LAB_ID up in $dir (bridge $net.1)"
