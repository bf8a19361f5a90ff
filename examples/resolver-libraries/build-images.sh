#!/usr/bin/env bash
# Builds the walk-through's two images from host files, with no registry: the probe in
# resolve.c compiled against the host's glibc (dynamically, with the libraries `ldd` lists) and
# against musl (`musl-gcc -static`), each with busybox for `sh` and `sleep`, imported with
# `docker import` (the engine's import endpoint). Needs gcc, musl-tools and busybox-static
# (`apt-get install gcc libc6-dev musl-tools busybox-static`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

base() {  # base ROOT: busybox and a root user
  mkdir -p "$1/bin" "$1/etc" "$1/usr/local/bin"
  cp /bin/busybox "$1/bin/busybox"
  for applet in sh sleep cat; do ln -s busybox "$1/bin/$applet"; done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$1/etc/passwd"
}

# glibc: the probe, the loader and every library it needs, glibc's name-service switch.
g="$work/glibc"
base "$g"
cc -O2 -o "$g/usr/local/bin/resolve" "$here/resolve.c"
for lib in $(ldd "$g/usr/local/bin/resolve" | grep -o '/[^ ]*'); do
  mkdir -p "$g$(dirname "$lib")"
  cp -L "$lib" "$g$lib"
done
echo 'hosts: files dns' > "$g/etc/nsswitch.conf"
tar -C "$g" -c . | docker import -c 'CMD ["/bin/sh"]' - minikind-example/resolver-probe:glibc

# musl: one static executable.
m="$work/musl"
base "$m"
musl-gcc -static -O2 -o "$m/usr/local/bin/resolve" "$here/resolve.c"
tar -C "$m" -c . | docker import -c 'CMD ["/bin/sh"]' - minikind-example/resolver-probe:musl
