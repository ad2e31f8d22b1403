#!/usr/bin/env bash
# The real-kernel test VM: boots Debian's stock kernel (which has IPVS) under qemu
# and runs one guest script in it, against the host's own files.
#
#   tests/vm/vm.sh setup               install host packages, fetch the kernel, build the initramfs
#   tests/vm/vm.sh run SCRIPT [ARG…]   boot, run `bash SCRIPT ARG…` in the guest, exit with its code
#   tests/vm/vm.sh run --systemd SCRIPT [ARG…]
#                                      the same with systemd as PID 1 (the host's root under a
#                                      writable overlay), SCRIPT run as a service of it
#
# How the guest sees the world: the host's / is shared read-only over virtio-9p and the
# guest chroots into it, so every host binary (ip, ipvsadm, nft, the project's cargo-built
# binaries) runs unchanged against the guest's kernel. The repository is shared again,
# read-only, at its own path (so a checkout under /tmp, which is a fresh tmpfs in the
# guest, is visible too); $LVSDR_VM_DIR/work is shared read-write at the same path, and
# the guest leaves its exit code there. Files for the guest go in the work folder.
#
# Environment: LVSDR_VM_DIR (default <repo>/target/vm), LVSDR_VM_ACCEL=tcg|kvm (tcg:
# the paravirtual /dev/kvm of the dev machines cannot run a stock kernel),
# LVSDR_VM_MEM (MiB, default 2048: a debug-build director holding 10,000 × 10
# services takes 400 MB beside the other tests), LVSDR_VM_TIMEOUT (seconds, default 1500).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
dir=${LVSDR_VM_DIR:-$repo/target/vm}
accel=${LVSDR_VM_ACCEL:-tcg}
mem=${LVSDR_VM_MEM:-2048}
vm_timeout=${LVSDR_VM_TIMEOUT:-1500}

# Modules loaded before the guest script starts; schedulers and the rest auto-load on use.
modules=virtio_net,overlay,ip_vs,ip_vs_mh,ip_vs_rr,ip_vs_wrr,ip_vs_wlc,veth,bridge,dummy,nf_tables,nft_chain_nat,arptable_filter,arpt_mangle,nlmon

log() { printf '[vm %(%T)T] %s\n' -1 "$*" >&2; }

host_packages=(qemu-system-x86 busybox-static ipvsadm nftables arptables iproute2 curl keepalived
  xz-utils kmod strace procps ca-certificates socat bird2 systemd jq
  prometheus nginx) # nginx: a real server for the HTTP check rows (benches/keepalived.sh); promtool, for the agent's /metrics (netns test) and the director's (tests/page)

install_packages() {
  "$repo"/tests/install-debs "${host_packages[@]}"
}

# Debian's kernel package, unpacked into $dir/kernel (the host's /boot is untouched).
fetch_kernel() {
  local k=$dir/kernel
  if [ -e "$k/ok" ]; then return; fi
  log "fetching the guest kernel (Debian linux-image-amd64)"
  rm -rf "$k" && mkdir -p "$k"
  apt-get update -qq
  local pkg
  pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [ -n "$pkg" ] || { echo "vm: cannot find the package behind linux-image-amd64" >&2; exit 1; }
  (cd "$k" && apt-get download -q "$pkg" >/dev/null && dpkg -x ./"$pkg"_*.deb root && rm -f ./*.deb)
  local kver
  kver=$(ls "$k/root/lib/modules")
  # The .deb ships no modules.dep: kmod's depmod writes it and the binary indexes that
  # kmod's modprobe needs (systemd units run it; busybox's reads the text form).
  depmod -b "$k/root" "$kver"
  # PVH boot of the uncompressed ELF skips BIOS and the decompressor: 2-3x faster under TCG.
  local off
  off=$(grep -abo $'\xfd7zXZ\x00' "$k/root/boot/vmlinuz-$kver" | head -1 | cut -d: -f1)
  if [ -n "$off" ]; then
    tail -c +$((off + 1)) "$k/root/boot/vmlinuz-$kver" | xz -dcq >"$k/vmlinux" 2>/dev/null || true
  fi
  echo "$pkg" >"$k/ok"
}

kernel_version() { ls "$dir/kernel/root/lib/modules"; }

kernel_image() {
  if [ -s "$dir/kernel/vmlinux" ]; then echo "$dir/kernel/vmlinux"; else
    echo "$dir/kernel/root/boot/vmlinuz-$(kernel_version)"; fi
}

# Static busybox, the 9p module closure and our /init.
build_initramfs() {
  local kver m r=$dir/initrd
  kver=$(kernel_version)
  m=$dir/kernel/root/lib/modules/$kver
  if [ "$dir/initrd.cpio.gz" -nt "$here/init" ] && [ -e "$dir/initrd.cpio.gz" ]; then return; fi
  rm -rf "$r" && mkdir -p "$r"/{bin,proc,sys,dev,lib/modules/"$kver"} && ln -s bin "$r/sbin"
  cp "$(command -v busybox)" "$r/bin/busybox"
  cp "$m"/modules.{dep,alias,symbols,builtin,order} "$r/lib/modules/$kver/"
  for mod in virtio_pci 9pnet_virtio 9p; do
    grep "/$mod.ko[^:]*:" "$m/modules.dep" | tr -d : | tr ' ' '\n'
  done | sort -u | while read -r f; do
    [ -n "$f" ] && install -D -m644 "$m/$f" "$r/lib/modules/$kver/$f"
  done
  install -m755 "$here/init" "$r/init"
  (cd "$r" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) >"$dir/initrd.cpio.gz"
}

setup() {
  if [ "$(id -u)" != 0 ]; then echo "vm: setup needs root (apt-get)" >&2; exit 1; fi
  mkdir -p "$dir/work"
  install_packages
  fetch_kernel
  build_initramfs
}

run() {
  local systemd=0
  if [ "$1" = --systemd ]; then systemd=1 && shift; fi
  local script=$1
  shift
  setup
  local work=$dir/work
  mkdir -p "$work"
  rm -f "$work/exit-code"
  # Options reach /init as words on the kernel command line, so the guest command goes
  # through a file in the shared folder.
  {
    printf 'cd %q\n' "$repo"
    printf 'exec bash %q' "$(realpath "$script")"
    printf ' %q' "$@"
    printf '\n'
  } >"$work/cmd.sh"
  local cpu=()
  [ "$accel" = kvm ] && cpu=(-cpu host)
  # LVSDR_VM_FORWARD=PORT: a user-mode NIC, host 127.0.0.1:PORT → guest 10.0.2.15:PORT
  # (tests/lab --stay). Tests get no NIC: their traffic stays inside the VM.
  local nic=()
  if [ -n "${LVSDR_VM_FORWARD:-}" ]; then
    nic=(-netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$LVSDR_VM_FORWARD-10.0.2.15:$LVSDR_VM_FORWARD"
      -device virtio-net-pci,netdev=n0)
  fi
  log "booting $(cat "$dir/kernel/ok") (accel=$accel, ${mem} MiB): $script $*"
  local t0=$SECONDS
  timeout "$vm_timeout" qemu-system-x86_64 -accel "$accel" "${cpu[@]}" -m "$mem" -smp 2 \
    -nodefaults -display none -no-reboot -serial stdio "${nic[@]}" -pidfile "$work/qemu.pid" \
    -kernel "$(kernel_image)" -initrd "$dir/initrd.cpio.gz" \
    -append "console=ttyS0 quiet panic=-1 VM_WORK=$work VM_REPO=$repo VM_KMODS=$dir/kernel/root/lib/modules VM_MODULES=$modules VM_SYSTEMD=$systemd" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    -virtfs local,path="$repo",mount_tag=repo,security_model=none,readonly=on,multidevs=remap \
    -virtfs local,path="$work",mount_tag=work,security_model=none </dev/null || true
  local rc
  rc=$(cat "$work/exit-code" 2>/dev/null || echo 99)
  log "guest finished with exit code $rc after $((SECONDS - t0)) s"
  return "$rc"
}

case ${1:-} in
setup) setup ;;
run)
  shift
  [ $# -ge 1 ] || { echo "usage: $0 run SCRIPT [ARG…]" >&2; exit 2; }
  run "$@"
  ;;
*)
  echo "usage: $0 setup | run SCRIPT [ARG…]" >&2
  exit 2
  ;;
esac
