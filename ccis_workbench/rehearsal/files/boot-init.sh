#!/bin/sh
# /init of the installed REHEARSAL system's initramfs (a dracut stand-in): load the disk modules, mount the root
# named by root=, switch to it. Like dracut, it drops to an emergency shell when the root never appears.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
KVER="$(cat /etc/rehearsal/kver)"
for m in $(cat /etc/rehearsal/modules); do insmod "/lib/modules/$KVER/$m" 2>/dev/null; done
root=""; ro=ro
for a in $(cat /proc/cmdline); do
    case "$a" in root=*) root="${a#root=}";; rw) ro=rw;; esac
done
dev=""
i=0
while [ $i -lt 100 ]; do
    case "$root" in
        LABEL=*) dev="$(findfs "$root" 2>/dev/null)";;
        /dev/*) [ -b "$root" ] && dev="$root";;
    esac
    [ -n "$dev" ] && break
    sleep 0.1; i=$((i + 1))
done
mkdir -p /sysroot
if [ -z "$dev" ] || ! mount -o "$ro" "$dev" /sysroot; then
    echo "Warning: /dev/root ($root) does not exist"
    echo "Entering emergency mode. (rehearsal initramfs)"
    exec sh
fi
mount --move /dev /sysroot/dev 2>/dev/null
mount --move /proc /sysroot/proc 2>/dev/null
mount --move /sys /sysroot/sys 2>/dev/null
exec switch_root /sysroot /sbin/init
