# Sourced by the netns scripts: stop the process whose PID a file holds, by that PID only.
#
#   kill_pidfile FILE [SIGNAL]   SIGNAL (default TERM), up to 5 s for it to end, then KILL;
#                                the file is removed. Nothing to do without the file or process.
kill_pidfile() {
  local f=$1 sig=${2:-TERM}
  [ -f "$f" ] || return 0
  local pid
  pid=$(cat "$f" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -CONT "$pid" 2>/dev/null || true
    kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}
