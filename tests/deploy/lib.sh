# Shared by the deploy tests (sourced): logging with elapsed seconds, a cleanup stack that runs on
# any exit (also on failure), and waiting for a condition with a deadline.
t_start=$SECONDS
log() { echo "[$(basename "$0") +$((SECONDS - t_start))s] $*"; }
die() { echo "FAIL: $*" >&2; exit 1; }
_cleanups=()
on_exit() { _cleanups+=("$*"); }        # on_exit CMD...: run CMD at exit, last registered first
_run_cleanups() {
  local rc=$? i
  set +e
  for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do eval "${_cleanups[$i]}" > /dev/null 2>&1; done
  exit $rc
}
trap _run_cleanups EXIT
# wait_for SECONDS CMD...: polls CMD every 0.5 s until it succeeds; fails after SECONDS.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.5
  done
}
