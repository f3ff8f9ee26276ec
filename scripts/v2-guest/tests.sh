#!/bin/sh
# cgroup v2 checks, run by the guest's /init (see scripts/build-v2-guest).
# Prints "PASS <name>" or "FAIL <name>: <why>" per check, "SKIP <what>: <why>"
# for parts that could not run, and last "CORRAL-V2-DONE pass=N fail=M".
#
# Part 1: the runtime library's cgroups:: unit tests (ContainerCgroup on v2).
# Part 2: each runtime binary in /corral/runtimes (corral-runtime, and runc when
# included as a reference) runs real containers with resource limits.

PASSES=0
FAILS=0
pass() { echo "PASS $1"; PASSES=$((PASSES + 1)); }
fail() { echo "FAIL $1: $2"; FAILS=$((FAILS + 1)); }
expect_eq() {
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "got '$2', want '$3'"; fi
}
now_ms() { cut -d' ' -f1 /proc/uptime | awk '{printf "%d", $1 * 1000}'; }
oneline() { tr '\n' ' ' <"$1" 2>/dev/null | cut -c1-400; }

# --- part 1 -------------------------------------------------------------------

unit_tests() {
    bin=/corral/bin/cgroup-unit-tests
    if [ ! -x $bin ]; then
        echo "SKIP unit: no unit-test binary in the initramfs"
        return
    fi
    start=$(now_ms)
    (cd /tmp && $bin cgroups:: --test-threads=1) >/tmp/unit.log 2>&1
    rc=$?
    echo "guest: unit tests took $(($(now_ms) - start)) ms (exit $rc)"
    sed -n 's/^test \(cgroups::[^ ]*\) \.\.\. \([a-zA-Z]*\)$/\2 \1/p' /tmp/unit.log >/tmp/unit.res
    while read -r res name; do
        case $res in
            ok) pass "unit:$name" ;;
            ignored) echo "SKIP unit:$name: ignored" ;;
            *) fail "unit:$name" "$res" ;;
        esac
    done </tmp/unit.res
    grep '^skipping' /tmp/unit.log | sed 's/^/SKIP unit: /'
    if [ $rc -ne 0 ] || [ ! -s /tmp/unit.res ]; then
        [ -s /tmp/unit.res ] || fail "unit:run" "no test results (exit $rc)"
        sed 's/^/unit-log: /' /tmp/unit.log | tail -n 60
    fi
}

# --- part 2 -------------------------------------------------------------------

CG=/sys/fs/cgroup/corral-v2
ROOTFS=/run/rootfs

make_rootfs() {
    mkdir -p $ROOTFS/bin $ROOTFS/t $ROOTFS/proc $ROOTFS/sys $ROOTFS/dev $ROOTFS/tmp
    cp /bin/busybox $ROOTFS/bin/busybox
    for a in $(busybox --list); do
        [ -e $ROOTFS/bin/$a ] || ln -s busybox $ROOTFS/bin/$a
    done
    # Doubles a shell string to 128 MiB: init itself grows past memory.max
    # (doubling, not head|tr, because byte-wise tools crawl under TCG).
    printf '%s\n' 'x=0123456789abcdef; i=0' \
        'while [ $i -lt 23 ]; do x="$x$x"; i=$((i + 1)); done' 'echo survived' >$ROOTFS/t/oom.sh
    # The bomb runs in a subshell; init then execs (a fork would be refused).
    printf '%s\n' '( b() { b | b & }; b ) 2>/dev/null' 'exec sleep 600' >$ROOTFS/t/forkbomb.sh
    echo 'exec sleep 600' >$ROOTFS/t/sleep.sh
    cat >$ROOTFS/t/devices.sh <<'SH'
head -c1 /dev/zero >/dev/null && echo zero-ok
mknod /dev/blk-test b 8 0 && echo mknod-ok
head -c1 /dev/blk-test >/dev/null 2>/tmp/err
echo "blk-read: $(cat /tmp/err)"
SH
}

CAPS='"CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FOWNER","CAP_FSETID","CAP_KILL","CAP_SETGID","CAP_SETUID","CAP_SETPCAP","CAP_NET_BIND_SERVICE","CAP_SYS_CHROOT","CAP_MKNOD","CAP_AUDIT_WRITE","CAP_SETFCAP"'

# mkbundle ID SCRIPT RESOURCES-JSON-MEMBERS
mkbundle() {
    mkdir -p /run/bundles/$1
    cat >/run/bundles/$1/config.json <<JSON
{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false,
    "user": {"uid": 0, "gid": 0},
    "args": ["sh", "/t/$2"],
    "env": ["PATH=/bin", "HOME=/"],
    "cwd": "/",
    "capabilities": {"bounding": [$CAPS], "effective": [$CAPS], "permitted": [$CAPS]}
  },
  "root": {"path": "$ROOTFS", "readonly": false},
  "hostname": "c",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}
  ],
  "linux": {
    "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}],
    "cgroupsPath": "/corral-v2/$1",
    "resources": {"devices": [{"allow": false, "access": "rwm"}]$3}
  }
}
JSON
}

rt() { "$RT" --root "/run/state-$RTN" "$@"; }
status_of() { rt state "$1" 2>/dev/null | sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p'; }
wait_status() { # ID STATUS SECONDS
    i=0
    while [ $i -lt $(($3 * 20)) ]; do
        [ "$(status_of "$1")" = "$2" ] && return 0
        sleep 0.05
        i=$((i + 1))
    done
    return 1
}
# create ID: create the container from its bundle; output goes to /run/out-ID.
create() {
    start=$(now_ms)
    if rt create --bundle /run/bundles/$1 "$1" >/run/out-$1 2>&1 </dev/null; then
        echo "guest: $RTN create $1 took $(($(now_ms) - start)) ms"
        return 0
    fi
    fail "$RTN:create-$1" "$(oneline /run/out-$1)"
    return 1
}
start() {
    rt start "$1" >>/run/out-$1 2>&1 && return 0
    fail "$RTN:start-$1" "$(oneline /run/out-$1)"
    return 1
}
# finish ID CHECKNAME: kill, wait, delete, and check the cgroup went with it.
finish() {
    [ "$(status_of "$1")" = stopped ] || rt kill "$1" KILL >/dev/null 2>&1
    wait_status "$1" stopped 20 || fail "$RTN:$2" "container $1 is $(status_of "$1") 20 s after SIGKILL"
    if ! rt delete "$1" >/tmp/del.out 2>&1; then
        fail "$RTN:$2" "delete: $(oneline /tmp/del.out)"
        rt delete --force "$1" >/dev/null 2>&1
    elif [ -d $CG/$1 ]; then
        fail "$RTN:$2" "$CG/$1 still exists after delete"
    else
        pass "$RTN:$2"
    fi
}

t_memory() {
    id=mem-$RTN
    mkbundle $id oom.sh ', "memory": {"limit": 33554432}'
    create $id || return
    expect_eq "$RTN:memory.max" "$(cat $CG/$id/memory.max 2>&1)" 33554432
    start $id || { finish $id delete-after-oom; return; }
    if wait_status $id stopped 120; then
        oom=$(sed -n 's/^oom_kill //p' $CG/$id/memory.events 2>/dev/null)
        if [ "${oom:-0}" -gt 0 ] && ! grep -q survived /run/out-$id; then
            pass "$RTN:oom-kill"
        else
            fail "$RTN:oom-kill" "memory.events: $(oneline $CG/$id/memory.events); output: $(oneline /run/out-$id)"
        fi
    else
        fail "$RTN:oom-kill" "container still $(status_of $id) after 120 s"
    fi
    finish $id delete-after-oom
}

t_pids() {
    id=pids-$RTN
    mkbundle $id forkbomb.sh ', "pids": {"limit": 16}'
    create $id || return
    expect_eq "$RTN:pids.max" "$(cat $CG/$id/pids.max 2>&1)" 16
    start $id || { finish $id delete-after-fork-bomb; return; }
    sleep 2
    cur=$(cat $CG/$id/pids.current 2>/dev/null)
    hit=$(sed -n 's/^max //p' $CG/$id/pids.events 2>/dev/null)
    peak=$(cat $CG/$id/pids.peak 2>/dev/null || echo "$cur")
    if [ "${hit:-0}" -gt 0 ] && [ "${cur:-99}" -le 16 ] && [ "${peak:-99}" -le 16 ]; then
        pass "$RTN:fork-bomb-capped"
    else
        fail "$RTN:fork-bomb-capped" "pids.current=$cur pids.peak=$peak pids.events max=$hit"
    fi
    rt kill --all $id KILL >/dev/null 2>&1
    finish $id delete-after-fork-bomb
}

t_cpu_freeze() {
    id=cpu-$RTN
    mkbundle $id sleep.sh ', "cpu": {"shares": 512, "quota": 50000, "period": 100000}, "unified": {"memory.high": "52428800"}'
    create $id || return
    expect_eq "$RTN:cpu.max" "$(cat $CG/$id/cpu.max 2>&1)" "50000 100000"
    # runc's shares->weight conversion: 1 + (512 - 2) * 9999 / 262142 = 20
    expect_eq "$RTN:cpu.weight" "$(cat $CG/$id/cpu.weight 2>&1)" 20
    expect_eq "$RTN:unified-memory.high" "$(cat $CG/$id/memory.high 2>&1)" 52428800
    start $id || { finish $id delete-removes-cgroup; return; }
    if rt pause $id >/tmp/p.out 2>&1; then
        frozen=$(sed -n 's/^frozen //p' $CG/$id/cgroup.events)
        expect_eq "$RTN:pause-freezes" "$(cat $CG/$id/cgroup.freeze) frozen=$frozen $(status_of $id)" "1 frozen=1 paused"
    else
        fail "$RTN:pause-freezes" "pause: $(oneline /tmp/p.out)"
    fi
    if rt resume $id >/tmp/p.out 2>&1; then
        frozen=$(sed -n 's/^frozen //p' $CG/$id/cgroup.events)
        expect_eq "$RTN:resume-thaws" "$(cat $CG/$id/cgroup.freeze) frozen=$frozen $(status_of $id)" "0 frozen=0 running"
    else
        fail "$RTN:resume-thaws" "resume: $(oneline /tmp/p.out)"
    fi
    finish $id delete-removes-cgroup
}

t_devices() {
    id=dev-$RTN
    mkbundle $id devices.sh ''
    rt run --bundle /run/bundles/$id $id >/run/out-$id 2>&1 </dev/null
    out=$(oneline /run/out-$id)
    case $out in
        *zero-ok*mknod-ok*"blk-read: "*"Operation not permitted"*) pass "$RTN:device-rules" ;;
        *) fail "$RTN:device-rules" "output: $out" ;;
    esac
    [ -d $CG/$id ] && fail "$RTN:device-rules" "$CG/$id still exists after run"
    rt delete --force $id >/dev/null 2>&1
}

runtime_tests() {
    RT=$1
    RTN=$(basename "$1")
    if ! "$RT" --version >/tmp/v.out 2>&1 && ! "$RT" --help >/tmp/v.out 2>&1; then
        fail "$RTN:runs" "$(oneline /tmp/v.out)"
        return
    fi
    echo "guest: testing $RTN: $(head -n1 /tmp/v.out)"
    t_memory
    t_pids
    t_cpu_freeze
    t_devices
    left=$(ls $CG 2>/dev/null | grep -- "-$RTN\$")
    [ -z "$left" ] || fail "$RTN:no-leftover-cgroups" "$left"
}

unit_tests
make_rootfs
for r in /corral/runtimes/*; do
    if [ -x "$r" ]; then
        runtime_tests "$r"
    else
        echo "SKIP runtimes: none in the initramfs"
    fi
done
echo "CORRAL-V2-DONE pass=$PASSES fail=$FAILS"
