# Sourced by the integration tests: `refuse WANT SETTINGS...` runs "$BIN" --standalone on
# "$REFUSE_SPEC" with SETTINGS and requires exit code 2, WANT in the message, and that nothing was
# written (no "$work/refused"). Needs BIN, REFUSE_SPEC and work set by the caller.
refuse() {
  local want=$1; shift
  local rc=0
  "$BIN" --standalone --quiet --spec "$REFUSE_SPEC" "$@" --out "$work/refused" 2> "$work/err" || rc=$?
  [ "$rc" = 2 ] || { echo "FAIL: exit $rc (want 2) for $*"; cat "$work/err"; exit 1; }
  grep -q -- "$want" "$work/err" || { echo "FAIL: message lacks '$want':"; cat "$work/err"; exit 1; }
  [ ! -e "$work/refused" ] || { echo "FAIL: a refused job wrote $work/refused"; exit 1; }
  echo "refused ($want): $(head -c 240 "$work/err")"
}
