#!/usr/bin/env bash
# Guest side of `tests/packages --vm`: installs the .deb files given as arguments with
# dpkg -i into a writable overlay of the guest's (read-only) root, then runs what was
# installed: both binaries, and check-config on the shipped example config.
set -euo pipefail
ov=/tmp/pkg-overlay r=/tmp/pkg-root
mkdir -p "$ov/upper" "$ov/work" "$r"
mount -t overlay overlay -o "lowerdir=/,upperdir=$ov/upper,workdir=$ov/work" "$r"
mount -t proc proc "$r/proc"
mount -t tmpfs tmp "$r/tmp"
mount --bind /dev "$r/dev"
names=()
for d in "$@"; do
  cp "$d" "$r/tmp/"
  names+=("$(dpkg-deb -f "$d" Package)")
done
in_root() { chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
# The root is a copy of the host's, where the packages may already be installed.
in_root dpkg --purge "${names[@]}" >/dev/null 2>&1 || true
in_root dpkg -i --no-triggers $(cd "$r/tmp" && printf '/tmp/%s ' *.deb)
for n in "${names[@]}"; do
  in_root dpkg -s "$n" | grep -q '^Status: install ok installed' || { echo "$n not installed"; exit 1; }
  echo "installed: $(in_root dpkg -s "$n" | grep '^Version:') $n"
done
in_root /usr/bin/lvsdr-director check-config /etc/lvsdr/director.toml
in_root /usr/bin/lvsdr-director --version
in_root /usr/bin/lvsdr-agent --version
in_root test -f /usr/lib/systemd/system/lvsdr-director.service
in_root test -f /usr/lib/systemd/system/lvsdr-agent.service
# A changed conffile survives an upgrade (reinstall) untouched.
echo "# edited by the operator" >>"$r/etc/lvsdr/director.toml"
in_root dpkg -i --force-confold --no-triggers $(cd "$r/tmp" && printf '/tmp/%s ' *.deb) >/dev/null
grep -q "edited by the operator" "$r/etc/lvsdr/director.toml" || { echo "the conffile was overwritten"; exit 1; }
echo "packages: installed with dpkg -i, check-config ok, the edited conffile kept"
