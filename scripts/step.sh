#!/bin/sh
# Run one set-up or test step so that `make` says what it is doing:
#   ==> [2/5] torch 2.13.0
#   ... the command's own output (pip's progress bars, pytest's dots) ...
#       [2/5] torch 2.13.0: done in 41.2 s
# Usage: scripts/step.sh LABEL COMMAND [ARGS...]. Exits with the command's status.
label=$1
shift

now() {
    # GNU date has nanoseconds; BSD/macOS date prints a literal N, so fall back to seconds.
    t=$(date +%s.%N 2>/dev/null)
    case $t in *N* | "") date +%s ;; *) echo "$t" ;; esac
}

start=$(now)
printf '==> %s\n' "$label"
"$@"
rc=$?
took=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
if [ "$rc" -eq 0 ]; then
    printf '    %s: done in %s s\n' "$label" "$took"
else
    printf '    %s: FAILED (exit %s) after %s s\n' "$label" "$rc" "$took" >&2
fi
exit "$rc"
