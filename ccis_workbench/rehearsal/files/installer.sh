#!/bin/sh
# CCIS Workbench REHEARSAL installer: the /init of the rehearsal tree's initrd.
# It is not anaconda and installs no CentOS: it keeps anaconda's contract (kickstart at /ks.cfg, progress on the
# serial console, log on the virtio-serial port org.fedoraproject.anaconda.log.0, %pre/%post, poweroff) so that
# the workbench's whole build path can be exercised offline. Runs under busybox ash.

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
TARGET=/mnt/sysimage
KS=/ks.cfg
W=/tmp/ks
LOG=/tmp/anaconda.log
KVER="$(cat /etc/rehearsal/kver)"

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /run "$TARGET" "$W" /dev/pts
exec </dev/console >/dev/console 2>&1

echo "Starting installer, one moment..."
: > "$LOG"

now() { date +%H:%M:%S; }
log() { # log LEVEL MESSAGE: anaconda.log format, mirrored to the virtio-serial port by the writer below
    read -r up _ < /proc/uptime
    echo "$(now),000 $1 anaconda:rehearsal: [${up}s] $2" >> "$LOG"
}
say() { echo "$*"; log INFO "$*"; }

for m in $(cat /etc/rehearsal/modules); do
    insmod "/lib/modules/$KVER/$m" 2>/dev/null
done

# The log port: lorax and the workbench read it on the host. A writer in the background so that a port nobody
# reads on the host can never block the installer.
LOGPORT=
for p in /sys/class/virtio-ports/*; do
    [ -e "$p/name" ] || continue
    if [ "$(cat "$p/name")" = "org.fedoraproject.anaconda.log.0" ]; then
        LOGPORT="/dev/$(basename "$p")"
    fi
done
if [ -n "$LOGPORT" ]; then
    tail -n +1 -f "$LOG" > "$LOGPORT" 2>/dev/null &
    TAILPID=$!
fi

arg() { # arg NAME: value of NAME= on the kernel command line
    for a in $(cat /proc/cmdline); do
        case "$a" in "$1="*) echo "${a#*=}"; return 0;; esac
    done
    return 1
}
has_arg() { for a in $(cat /proc/cmdline); do [ "$a" = "$1" ] && return 0; done; return 1; }

flush_log() {
    if [ -n "$TAILPID" ]; then sleep 1; kill "$TAILPID" 2>/dev/null; fi
}

# fail KIND LINE DETAILS: print an anaconda-like fatal error, then wait like anaconda does (the host decides).
fail() {
    kind="$1"; line="$2"; details="$3"
    log ERROR "$kind failed at kickstart line $line"
    {
        echo ""
        echo "An error occurred during the installation (rehearsal installer)."
        echo "Traceback (most recent call last):"
        echo "  File \"/usr/lib/rehearsal/installer\", line $line, in run_scripts"
        echo "    raise ScriptError(lineno, details)"
        echo "rehearsal.errors.ScriptError: There was an error running the kickstart script at line $line." \
             "This is a fatal error and installation will be aborted. The details of this error are:"
        echo ""
        echo "$details"
        echo ""
        echo "Error: $kind failed (kickstart line $line)"
    } | tee -a "$LOG"
    flush_log
    sync
    if has_arg rehearsal.onerror=poweroff; then poweroff -f; fi
    while :; do sleep 3600; done
}

fatal() { # fatal MESSAGE: a problem that is not a script (no disk, no kickstart)
    echo "" ; echo "Traceback (most recent call last):"
    echo "  File \"/usr/lib/rehearsal/installer\", line 1, in <module>"
    echo "rehearsal.errors.InstallError: $1" | tee -a "$LOG"
    flush_log
    while :; do sleep 3600; done
}

release="$(cat /etc/rehearsal/release)"
say "anaconda (rehearsal) $release started."
echo " * installation log files are stored in /tmp during the installation"
echo " * this is the CCIS Workbench REHEARSAL installer: it installs a busybox rehearsal system, not CentOS"
log INFO "kernel command line: $(cat /proc/cmdline)"
[ -n "$LOGPORT" ] && log INFO "log port $LOGPORT" || log WARNING "no virtio-serial log port"

ksarg="$(arg inst.ks)"
case "$ksarg" in
    file:*) KS="${ksarg#file:}";;
    "") ;;
    *) fatal "rehearsal installer reads only inst.ks=file:/PATH, got $ksarg";;
esac
[ -f "$KS" ] || fatal "The kickstart file $KS was not found in the initrd."
repo="$(arg inst.repo || arg inst.stage2)"
# Reproducibility: every time the image records is SOURCE_DATE_EPOCH (the workbench passes the catalog commit's
# time), the file-system UUID and directory hash seed derive from it, the partition table has a fixed identifier.
EPOCH="$(arg rehearsal.source_date_epoch)"
case "$EPOCH" in ""|*[!0-9]*) EPOCH=0;; esac
FSUUID="$(printf 'cc150000-0000-4000-8000-%012x' "$EPOCH")"
log INFO "SOURCE_DATE_EPOCH=$EPOCH, file-system UUID $FSUUID"
log INFO "installation source: ${repo:-none} (rehearsal: the payload travels inside the initrd)"
say "Starting automated install."

# -- split the kickstart: top-level commands, %packages, scripts (one file each, with their options) --------
awk -v W="$W" '
function opts(line, kind,    n, i, f, o) {
    n = split(line, f, /[ \t]+/); o = "kind=" kind " line=" NR " chroot=1 erroronfail=0 interp=/bin/sh log="
    for (i = 2; i <= n; i++) {
        if (f[i] == "--nochroot") o = o " nochroot=1"
        else if (f[i] == "--erroronfail") o = o " erroronfail=1"
        else if (f[i] ~ /^--interpreter=/) { sub(/^--interpreter=/, "", f[i]); o = o " interp=" f[i] }
        else if (f[i] == "--interpreter") o = o " interp=" f[++i]
        else if (f[i] ~ /^--(log|logfile)=/) { sub(/^--(log|logfile)=/, "", f[i]); o = o " log=" f[i] }
        else if (f[i] == "--log" || f[i] == "--logfile") o = o " log=" f[++i]
    }
    return o
}
BEGIN { sec = ""; n = 0 }
/^%end[ \t]*$/ { sec = ""; next }
sec == "script" { print > (W "/script-" n ".sh"); next }
sec == "packages" { if ($0 !~ /^[ \t]*(#|$)/) print $1 > (W "/packages"); next }
sec == "skip" { next }
/^%(pre|post|pre-install)([ \t]|$)/ {
    k = $1; sub(/^%/, "", k); n++; sec = "script"
    print opts($0, k) > (W "/script-" n ".opts"); printf "" > (W "/script-" n ".sh"); next }
/^%packages([ \t]|$)/ { sec = "packages"; printf "" > (W "/packages"); next }
/^%(onerror|traceback|addon|anaconda)([ \t]|$)/ { sec = "skip"; print NR " " $1 > (W "/skipped"); next }
/^[ \t]*(#|$)/ { next }
{ print NR " " $0 > (W "/commands") }
' "$KS" || fatal "the kickstart could not be read"
touch "$W/commands" "$W/packages"

# Unknown commands fail like anaconda's kickstart parser (the workbench validated with pykickstart already).
KNOWN=" authselect autopart autostep bootloader btrfs cdrom clearpart cmdline device driverdisk eula fcoe \
firewall firstboot graphical group halt harddrive hmc ignoredisk install iscsi iscsiname keyboard lang \
liveimg logging logvol mediacheck module network nfs nvdimm ostreecontainer ostreesetup part partition \
poweroff raid realm reboot repo reqpart rescue rhsm rootpw selinux services shutdown skipx snapshot sshkey \
sshpw syspurpose text timesource timezone updates url user vnc volgroup xconfig zerombr zfcp zipl auth \
authconfig method "
while read -r num cmd rest; do
    case "$KNOWN" in
        *" $cmd "*) ;;
        *) echo "The following problem occurred on line $num of the kickstart file:"
           echo ""
           echo "Unknown command: $cmd"
           echo ""
           log ERROR "kickstart error on line $num: Unknown command: $cmd"
           echo "Kickstart insufficient. (rehearsal installer)"
           flush_log
           while :; do sleep 3600; done;;
    esac
done < "$W/commands"

cmdline_of() { awk -v c="$1" '$2 == c { $1 = ""; $2 = ""; sub(/^ +/, ""); print; exit }' "$W/commands"; }
ending=""
for c in poweroff shutdown halt reboot; do
    if awk -v c="$c" '$2 == c { f = 1 } END { exit !f }' "$W/commands"; then ending="$c"; fi
done
kargs="$(cmdline_of bootloader | sed -n 's/.*--append="\{0,1\}\([^"]*\)"\{0,1\}.*/\1/p')"
hostname="$(cmdline_of network | sed -n 's/.*--hostname=\([^ ]*\).*/\1/p')"
fstype="$(awk '$2 == "part" && $3 == "/" { for (i = 4; i <= NF; i++) if ($i ~ /^--fstype=/) { sub(/^--fstype=/, "", $i); gsub(/"/, "", $i); print $i } }' "$W/commands")"

# report_emulated FILE N LINE: one console and log line a command script N (kickstart line LINE = its %post
# header) made the rehearsal emulate: "rehearsal emulated: COMMAND (kickstart line L): WHAT", L the first line of
# the script's body that holds the command's first two words (the header's line when none does)
report_emulated() {
    [ -s "$1" ] || return 0
    while IFS="$(printf '\t')" read -r cmd what; do
        key="$(echo "$cmd" | awk '{ print $1 (NF > 1 ? " " $2 : "") }')"
        off="$(grep -n -F -m 1 -- "$key" "$W/script-$2.sh" | cut -d: -f1)"
        [ -n "$off" ] || off="$(grep -n -F -m 1 -- "${key%% *}" "$W/script-$2.sh" | cut -d: -f1)"
        l="$3"; [ -n "$off" ] && l=$(($3 + off))
        say "rehearsal emulated: $cmd (kickstart line $l): $what"
    done < "$1"
    rm -f "$1"
}

run_script() { # run_script N: run one %pre/%post script with its options; fail the install when it must
    n="$1"; kind=""; line=""; chroot=1; nochroot=0; erroronfail=0; interp=/bin/sh; log=""
    for kv in $(cat "$W/script-$n.opts"); do
        case "$kv" in
            kind=*) kind="${kv#kind=}";; line=*) line="${kv#line=}";; nochroot=*) nochroot=1;;
            erroronfail=*) erroronfail="${kv#erroronfail=}";; interp=*) interp="${kv#interp=}";;
            log=*) log="${kv#log=}";;
        esac
    done
    [ "$nochroot" = 1 ] && chroot=0
    [ "$kind" = pre ] && chroot=0
    case "$interp" in /bin/sh|/bin/bash|/usr/bin/sh|/usr/bin/bash) interp=/bin/sh;; esac
    out="/tmp/ks-script-$n.out"
    # what the script's commands the rehearsal cannot honour would have done (files/stub, files/rpm record it)
    export REHEARSAL_EMULATED=/tmp/rehearsal-emulated
    emu="$REHEARSAL_EMULATED"
    [ "$chroot" = 1 ] && emu="$TARGET$REHEARSAL_EMULATED"
    rm -f "$emu"
    if [ "$chroot" = 1 ]; then
        if [ ! -x "$TARGET$interp" ]; then
            log WARNING "%$kind script at line $line: interpreter $interp is not in the rehearsal system; skipped"
            return 0
        fi
        cp "$W/script-$n.sh" "$TARGET/tmp/ks-script-$n"
        log INFO "Running kickstart %$kind script(s) (line $line) in the target"
        chroot "$TARGET" "$interp" "/tmp/ks-script-$n" > "$out" 2>&1 < /dev/null
        rc=$?
        rm -f "$TARGET/tmp/ks-script-$n"
        [ -n "$log" ] && cat "$out" >> "$TARGET$log"
    else
        if [ ! -x "$interp" ]; then
            log WARNING "%$kind script at line $line: interpreter $interp is not in the rehearsal installer; skipped"
            return 0
        fi
        log INFO "Running kickstart %$kind script(s) (line $line)"
        (cd / && "$interp" "$W/script-$n.sh") > "$out" 2>&1 < /dev/null
        rc=$?
        [ -n "$log" ] && cat "$out" >> "$log"
    fi
    while IFS= read -r l; do log INFO "%$kind[$line]: $l"; done < "$out"
    report_emulated "$emu" "$n" "$line"
    log INFO "%$kind script at line $line exited with status $rc"
    if [ "$rc" != 0 ] && [ "$erroronfail" = 1 ]; then
        fail "%$kind script" "$line" "$(tail -n 20 "$out")
(exit status $rc)"
    fi
    return 0
}

run_scripts() { # run_scripts KIND
    for o in "$W"/script-*.opts; do
        [ -e "$o" ] || continue
        grep -q "kind=$1 " "$o" || continue
        n="${o##*/script-}"; n="${n%.opts}"
        run_script "$n"
    done
}

# seal: make the root file system again, reproducibly, from what the install left in it. The kernel that installed
# it chose random inode generation numbers, wrote its clock into every inode and logged a journal; mke2fs -d
# writes the same tree with fixed UUID and hash seed, in a partition zeroed first (nothing of the first file system
# stays), then extlinux is installed again on it (mounted without the journal). Every time in it is the guest's
# clock while it ran, which runs on: a slow guest (TCG on a busy host) crossed a second between setting the clock
# and extlinux writing ldlinux.sys, and two builds differed in that file's mtime. So the clock is not trusted: once
# the file system is unmounted, debugfs sets every inode's atime, mtime and ctime and the superblock's mount and
# write times to SOURCE_DATE_EPOCH (E2FSPROGS_FAKE_TIME: debugfs's own write time too). 128-byte inodes hold no
# sub-second times.
seal() {
    say "Sealing the root file system (SOURCE_DATE_EPOCH=$EPOCH)"
    S=/tmp/seal
    mkdir -p "$S"
    mount -t tmpfs -o mode=0755 tmpfs "$S" || fatal "Mounting a tmpfs for the sealed root failed."
    cp -a "$TARGET/." "$S/" || fatal "Copying the installed root failed."
    umount "$TARGET" || fatal "Unmounting $PART failed."
    rm -rf "$S/lost+found"
    # zeroed by the disk itself (WRITE ZEROES: qemu marks the clusters zero and writes nothing); dd if it cannot
    /usr/sbin/blkdiscard -f -z "$PART" >> "$LOG" 2>&1 || dd if=/dev/zero of="$PART" bs=1M 2>/dev/null
    sync
    E2FSPROGS_FAKE_TIME="$EPOCH" /usr/sbin/mke2fs -q -F -t ext4 -I 128 -O ^64bit,^metadata_csum -U "$FSUUID" \
        -E "nodiscard,lazy_itable_init=1,lazy_journal_init=1,hash_seed=$FSUUID,root_owner=0:0" -L rehearsal-root \
        -d "$S" "$PART" >> "$LOG" 2>&1 || fatal "Creating the sealed ext4 on $PART failed."
    # no periodic writeback while it is mounted: everything is written once, at umount (the superblock counts the
    # kilobytes written, and an inode written twice would count twice)
    echo 0 > /proc/sys/vm/dirty_writeback_centisecs
    echo 360000 > /proc/sys/vm/dirty_expire_centisecs
    date -s "@$EPOCH" > /dev/null
    mount -t ext4 -o noload,noinit_itable,noatime "$PART" "$TARGET" || fatal "Mounting the sealed $PART failed."
    /usr/bin/extlinux --install "$TARGET/boot/extlinux" >> "$LOG" 2>&1 || fatal "Installing extlinux again failed."
    # mke2fs -d leaves a hole for every block of zeros; extlinux cannot read a kernel or initrd with holes: they
    # are written again in place (the holes get blocks)
    for f in $(cd "$S" && find boot -type f ! -name 'ldlinux.*'); do
        dd if="$S/$f" of="$TARGET/$f" bs=4096 conv=notrunc 2>/dev/null || fatal "Rewriting /$f failed."
    done
    find "$TARGET" -xdev -exec stat -c %i {} + | sort -un > /tmp/seal-inodes
    umount "$TARGET" || fatal "Unmounting the sealed $PART failed."
    umount "$S"
    awk -v e="$EPOCH" '{ printf "sif <%s> atime @%s\nsif <%s> mtime @%s\nsif <%s> ctime @%s\n", $1, e, $1, e, $1, e }
        END { printf "ssv mtime @%s\nssv wtime @%s\n", e, e }' /tmp/seal-inodes > /tmp/seal.debugfs
    E2FSPROGS_FAKE_TIME="$EPOCH" /usr/sbin/debugfs -w -f /tmp/seal.debugfs "$PART" > /dev/null 2>> "$LOG" \
        || fatal "Setting the sealed file system's times (debugfs) failed."
    log INFO "seal: the times of $(wc -l < /tmp/seal-inodes) inodes and the superblock set to $EPOCH"
}

echo ""
echo "Installation"
say "Setting up the installation environment"
say "Running pre-installation scripts"
run_scripts pre

# -- storage ---------------------------------------------------------------------------------------------
DISK=""
for d in vda sda; do [ -b "/dev/$d" ] && DISK="/dev/$d" && break; done
[ -n "$DISK" ] || fatal "No usable disks were found (rehearsal installer looks for /dev/vda)."
say "Configuring storage"
log INFO "disk $DISK: $(cat /sys/block/${DISK#/dev/}/size) sectors"
# Hybrid BIOS + UEFI when the kickstart asks for an EFI system partition (part /boot/efi), as the official Stream
# 9/10 images are: GPT with a BIOS boot partition (kept empty: extlinux boots from the root's own boot record), the
# ESP (FAT, systemd-boot) and the root with the legacy-BIOS-bootable attribute, which syslinux's gptmbr.bin looks
# for. reqpart alone is BIOS only, as anaconda's reqpart is on a BIOS-booted install (the rehearsal builds boot
# BIOS). Every identifier is fixed, so the table is the same at every build.
ESP=""
if awk '$2 == "part" && $3 == "/boot/efi" { f = 1 } END { exit !f }' "$W/commands"; then
    say "Partitioning $DISK: GPT, BIOS boot + EFI system partition + root (hybrid BIOS and UEFI)"
    printf 'label: gpt\nlabel-id: CC150000-0000-4000-8000-000000000000\n%s\n%s\n%s\n' \
        'start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, uuid=CC150000-0000-4000-8000-000000000001, name="biosboot"' \
        'size=32MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=CC150000-0000-4000-8000-000000000002, name="esp"' \
        'type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=CC150000-0000-4000-8000-000000000003, name="root", attrs="LegacyBIOSBootable"' \
        | /usr/sbin/sfdisk -q "$DISK" >> "$LOG" 2>&1 || fatal "Partitioning $DISK (GPT) failed."
    ESP="${DISK}2"
    PART="${DISK}3"
    BOOTCODE=/usr/lib/EXTLINUX/gptmbr.bin
else
    printf 'label: dos\nlabel-id: 0xcc150001\n,,L,*\n' | /usr/sbin/sfdisk -q "$DISK" >> "$LOG" 2>&1 || fatal "Partitioning $DISK failed."
    PART="${DISK}1"
    BOOTCODE=/usr/lib/EXTLINUX/mbr.bin
fi
i=0; while [ ! -b "$PART" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
[ -b "$PART" ] || fatal "$PART did not appear after partitioning."
say "Creating ext4 on $PART${fstype:+ (rehearsal: the kickstart asked for $fstype)}"
/usr/sbin/mke2fs -q -F -t ext4 -O ^64bit,^metadata_csum -E nodiscard,lazy_itable_init=1,lazy_journal_init=1 -L rehearsal-root "$PART" >> "$LOG" 2>&1 \
    || fatal "Creating ext4 on $PART failed."
mount -t ext4 "$PART" "$TARGET" || fatal "Mounting $PART failed."
mkdir -p "$TARGET/mnt/sysimage" "$TARGET/tmp"
say "Running pre-installation tasks"

# -- software ----------------------------------------------------------------------------------------------
echo ""
say "Installing."
say "Starting package installation process"
cp -a /payload/root/. "$TARGET/" || fatal "Copying the rehearsal payload failed."
skeleton() { # what a package would have created, so that %post scripts find their files
    case "$1" in
        cloud-init) mkdir -p "$TARGET/etc/cloud/cloud.cfg.d" "$TARGET/var/lib/cloud"
                    echo "# rehearsal cloud.cfg" > "$TARGET/etc/cloud/cloud.cfg";;
        openssh-server) mkdir -p "$TARGET/etc/ssh"; echo "# rehearsal" > "$TARGET/etc/ssh/sshd_config"
                        # as CentOS Stream 9 and later ship it (the rehearsal does not know the release: the older
                        # releases' kickstarts never write there)
                        mkdir -p "$TARGET/etc/ssh/sshd_config.d"
                        printf 'Include /etc/ssh/sshd_config.d/*.conf\n# rehearsal\n' > "$TARGET/etc/ssh/sshd_config"
                        for k in rsa ecdsa ed25519; do : > "$TARGET/etc/ssh/ssh_host_${k}_key"; done;;
        sudo) mkdir -p "$TARGET/etc/sudoers.d"
              printf 'root ALL=(ALL) ALL\n%%wheel ALL=(ALL) ALL\n#includedir /etc/sudoers.d\n' > "$TARGET/etc/sudoers"
              chmod 0440 "$TARGET/etc/sudoers";;
        @core|@Core|systemd) mkdir -p "$TARGET/etc/systemd" "$TARGET/etc/udev/rules.d" "$TARGET/etc/sysconfig" \
                        "$TARGET/etc/yum.repos.d" "$TARGET/var/lib/systemd" "$TARGET/etc/default" \
                        "$TARGET/etc/modprobe.d" "$TARGET/etc/pki/rpm-gpg" "$TARGET/etc/sysctl.d"
                  printf '[Login]\n#NAutoVTs=6\n' > "$TARGET/etc/systemd/logind.conf"
                  : > "$TARGET/var/lib/systemd/random-seed";;
        epel-release) mkdir -p "$TARGET/etc/yum.repos.d" "$TARGET/etc/pki/rpm-gpg"
                      printf '[epel]\nname=Extra Packages for Enterprise Linux (rehearsal)\n#baseurl=http://download.fedoraproject.org/pub/epel/$releasever/$basearch\nmetalink=https://mirrors.fedoraproject.org/metalink?repo=epel-$releasever&arch=$basearch\nenabled=1\n' \
                          > "$TARGET/etc/yum.repos.d/epel.repo"
                      for v in 7 8 9 10; do echo "rehearsal key" > "$TARGET/etc/pki/rpm-gpg/RPM-GPG-KEY-EPEL-$v"; done;;
        fail2ban|fail2ban-server) mkdir -p "$TARGET/etc/fail2ban/jail.d" "$TARGET/etc/fail2ban/filter.d"
                                  : > "$TARGET/etc/fail2ban/jail.conf";;
        audit) mkdir -p "$TARGET/etc/audit/rules.d"; : > "$TARGET/etc/audit/auditd.conf";;
        chrony) echo "pool 2.centos.pool.ntp.org iburst" > "$TARGET/etc/chrony.conf";;
        NetworkManager) mkdir -p "$TARGET/etc/NetworkManager/conf.d" "$TARGET/etc/sysconfig/network-scripts";;
    esac
}
total=0
while read -r p; do case "$p" in -*) ;; *) total=$((total + 1));; esac; done < "$W/packages"
say "Installing software"
i=0
mkdir -p "$TARGET/var/lib/rehearsal"
: > "$TARGET/var/lib/rehearsal/packages"
skeleton @core
# rpm and dnf are in every CentOS image, whatever %packages says (the docker target removes @core)
mkdir -p "$TARGET/etc/rpm" "$TARGET/etc/dnf/vars" "$TARGET/etc/dnf/protected.d" "$TARGET/etc/yum.repos.d"
[ -f "$TARGET/etc/dnf/dnf.conf" ] || printf '[main]\ngpgcheck=1\n' > "$TARGET/etc/dnf/dnf.conf"
while read -r p; do
    case "$p" in -*) log INFO "package excluded: ${p#-}"; continue;; esac
    i=$((i + 1))
    skeleton "$p"
    name="$(echo "$p" | tr -d '@')"
    log INFO "Installing $name-0-rehearsal.noarch ($i/$total)"
    echo "$name-0-rehearsal.noarch" >> "$TARGET/var/lib/rehearsal/packages"
    mkdir -p "$TARGET/usr/share/doc/$name"
done < "$W/packages"

# -- configuration ------------------------------------------------------------------------------------------
echo ""
say "Configuring installed system"
say "Writing network configuration"
echo "${hostname:-localhost.localdomain}" > "$TARGET/etc/hostname"
say "Creating users"
rootpw="$(cmdline_of rootpw)"
case "$rootpw" in
    *--lock*) sed -i 's/^root:[^:]*:/root:!:/' "$TARGET/etc/shadow";;
    *--iscrypted*) h="$(echo "$rootpw" | awk '{ for (i = 1; i <= NF; i++) if ($i !~ /^--/) { print $i; exit } }')"
                   sed -i "s|^root:[^:]*:|root:$h:|" "$TARGET/etc/shadow";;
esac
# user --name=NAME [--password=PW [--plaintext|--iscrypted]] [--lock] [--groups=a,b]: what anaconda creates
opt() { echo "$2" | sed -n "s/.*--$1=\"\{0,1\}\([^\" ]*\)\"\{0,1\}.*/\1/p"; }
awk '$2 == "user" { $1 = ""; $2 = ""; sub(/^ +/, ""); print }' "$W/commands" | while read -r u; do
    name="$(opt name "$u")"
    [ -n "$name" ] || continue
    chroot "$TARGET" /usr/sbin/useradd "$name" >> "$LOG" 2>&1
    pw="$(opt password "$u")"; h="!"
    if [ -n "$pw" ]; then
        case " $u " in *" --iscrypted "*) h="$pw";; *) h="$(mkpasswd -m sha512 "$pw")";; esac
    fi
    case " $u " in *" --lock "*) h="!$h";; esac
    sed -i "s|^$name:[^:]*:|$name:$h:|" "$TARGET/etc/shadow"
    for g in $(opt groups "$u" | tr ',' ' '); do
        if grep -q "^$g:" "$TARGET/etc/group"; then
            sed -i "/^$g:/ { s/:\$/:$name/; t; s/\$/,$name/ }" "$TARGET/etc/group"
        else
            echo "$g:x:$(( 900 + $(wc -l < "$TARGET/etc/group") )):$name" >> "$TARGET/etc/group"
        fi
    done
    log INFO "user $name created${pw:+ with a password}"
done
services="$(cmdline_of services)"
echo "$services" > "$TARGET/var/lib/rehearsal/services"
say "Enabling and disabling services"
for state in enabled disabled; do
    for svc in $(echo "$services" | sed -n "s/.*--$state=\"\{0,1\}\([^\" ]*\)\"\{0,1\}.*/\1/p" | tr ',' ' '); do
        chroot "$TARGET" /usr/bin/systemctl "${state%d}" "$svc" >> "$LOG" 2>&1
    done
done
: > "$TARGET/etc/machine-id"
say "Installing boot loader"
mkdir -p "$TARGET/boot/extlinux"
cat > "$TARGET/boot/extlinux/extlinux.conf" <<EOF
# CCIS Workbench rehearsal system (not CentOS)
SERIAL 0 115200
DEFAULT rehearsal
PROMPT 0
TIMEOUT 1
LABEL rehearsal
  MENU LABEL CCIS Workbench rehearsal system
  LINUX /boot/vmlinuz
  INITRD /boot/initrd.img
  APPEND root=LABEL=rehearsal-root ro $kargs
EOF
/usr/bin/extlinux --install "$TARGET/boot/extlinux" >> "$LOG" 2>&1 || fatal "Installing the boot loader (extlinux) failed."
dd if="$BOOTCODE" of="$DISK" bs=440 count=1 conv=notrunc 2>> "$LOG" \
    || fatal "Writing the boot sector failed."
if [ -n "$ESP" ]; then
    # The UEFI path: systemd-boot as the removable-media loader \EFI\BOOT\BOOTX64.EFI (firmware with no boot entry
    # starts it), one loader entry with the same kernel, initrd and arguments as extlinux.conf, the kernel and
    # initrd on the ESP (systemd-boot reads FAT only). Written with mkfs.fat and mtools, never mounted: mkfs.fat
    # --invariant and mtools' SOURCE_DATE_EPOCH fix every time stamp, the volume id comes from the epoch.
    say "Installing the UEFI boot loader (systemd-boot) on the EFI system partition $ESP"
    export SOURCE_DATE_EPOCH="$EPOCH" MTOOLS_SKIP_CHECK=1
    /usr/sbin/mkfs.fat --invariant -F 16 -i "$(printf '%08x' $((EPOCH % 4294967296)))" -n ESP "$ESP" >> "$LOG" 2>&1 \
        || fatal "Creating the FAT file system on $ESP failed."
    mkdir -p /tmp/esp
    printf 'default rehearsal.conf\ntimeout 0\n' > /tmp/esp/loader.conf
    printf 'title CCIS Workbench rehearsal system (UEFI)\nlinux /vmlinuz\ninitrd /initrd.img\noptions root=LABEL=rehearsal-root ro %s\n' \
        "$kargs" > /tmp/esp/rehearsal.conf
    { mmd -i "$ESP" ::EFI ::EFI/BOOT ::loader ::loader/entries \
        && mcopy -i "$ESP" /usr/lib/rehearsal/BOOTX64.EFI ::EFI/BOOT/BOOTX64.EFI \
        && mcopy -i "$ESP" /tmp/esp/loader.conf ::loader/loader.conf \
        && mcopy -i "$ESP" /tmp/esp/rehearsal.conf ::loader/entries/rehearsal.conf \
        && mcopy -i "$ESP" "$TARGET/boot/vmlinuz" ::vmlinuz \
        && mcopy -i "$ESP" "$TARGET/boot/initrd.img" ::initrd.img; } >> "$LOG" 2>&1 \
        || fatal "Writing the EFI system partition $ESP failed."
    unset SOURCE_DATE_EPOCH
fi
say "Generating initramfs"
say "Storing configuration files and kickstarts"
cp "$KS" "$TARGET/root/anaconda-ks.cfg"
cp "$KS" "$TARGET/root/original-ks.cfg"
mkdir -p "$TARGET/var/log/anaconda"

say "Running post-installation scripts"
run_scripts post
cp "$LOG" "$TARGET/var/log/anaconda/anaconda.log" 2>/dev/null
sync
read -r up0 _ < /proc/uptime; t0="$(date +%s)"
seal
# the clock again (the seal set it to SOURCE_DATE_EPOCH): the log's last lines keep the time of day
read -r up1 _ < /proc/uptime; date -s "@$((t0 + ${up1%.*} - ${up0%.*}))" > /dev/null
echo ""
say "Installation complete"
case "$ending" in
    poweroff|shutdown) say "rehearsal: powering off (kickstart: $ending)"; flush_log; sync; poweroff -f;;
    reboot) say "rehearsal: rebooting (kickstart: reboot)"; flush_log; sync; reboot -f;;
    halt) say "rehearsal: halting (kickstart: halt)"; flush_log; sync; halt -f;;
    *) echo "Installation complete. Press ENTER to quit:"; flush_log; read -r _;;
esac
while :; do sleep 3600; done
