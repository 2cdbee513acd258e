#!/bin/bash
# check.sh KVER PROFILE -- run characterize.py on a real Debian kernel KVER (booted in qemu by
# run-on-kernel.sh) and on the model profile PROFILE, and diff the two outputs.
#
#   tests/kernels/check.sh 6.1 6.1.192
#   tests/kernels/check.sh 6.12.100+deb12-amd64 6.12.100
#
# (tests/kernels/matrix.py runs the same comparison on every kernel of the matrix, with the
# host tests, the probes and the differential test.)
#
# Exit 0: identical; 1: they differ (the diff is printed); other: the VM or the model failed.
# Outputs are kept in $OUT (default: a new /tmp/cgbpf-check-* directory): real.txt, model.txt,
# uname.txt.  Environment: RUN_ON_KERNEL (the VM script, default ../shared/tools/run-on-kernel.sh
# beside the project), PYTHON (for the model run).
set -euo pipefail
[ $# -eq 2 ] || { sed -n '2,14p' "$0" >&2; exit 2; }
KVER=$1 PROFILE=$2
here=$(cd "$(dirname "$0")" && pwd)
main=$(cd "$here/../.." && pwd)
run_on_kernel=${RUN_ON_KERNEL:-$main/../shared/tools/run-on-kernel.sh}
python=${PYTHON:-$main/.venv/bin/python}
out=${OUT:-$(mktemp -d /tmp/cgbpf-check-XXXX)}
mkdir -p "$out"

job=$(mktemp -d /tmp/cgbpf-check-job-XXXX)
trap 'rm -rf "$job"' EXIT
mkdir -p "$job/src"
cp -r "$main/src/cgbpf" "$job/src/"
find "$job/src" -name __pycache__ -prune -exec rm -rf {} +
cp "$here/characterize.py" "$job/"
cat >"$job/job.sh" <<'EOF'
export PYTHONPATH=/job/dir/src
uname -r >uname.txt
python3 characterize.py host >real.txt
EOF

echo "real kernel $KVER (qemu) ..." >&2
bash "$run_on_kernel" -o "$job/back" "$KVER" "$job" bash job.sh >&2
cp "$job/back/real.txt" "$job/back/uname.txt" "$out/"
PYTHONPATH="$main/src" "$python" "$here/characterize.py" "model:$PROFILE" >"$out/model.txt"

echo "real $(cat "$out/uname.txt") vs model:$PROFILE: outputs in $out" >&2
diff -u --label "real $(cat "$out/uname.txt")" --label "model:$PROFILE" \
    "$out/real.txt" "$out/model.txt"
