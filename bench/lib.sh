# Helpers of the benchmark scripts (sourced, not run).

# Prints a TCP port on 127.0.0.1 that nothing listens on, below the kernel's range of
# ephemeral ports (where a connection's own end may hold it); returns 1 if it finds none.
free_port() {
  local p i
  for ((i = 0; i < 50; i++)); do
    p=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  echo "no free port on 127.0.0.1" >&2
  return 1
}

# Waits up to 30 s until file $2 holds the text $3, while process $1 runs; returns 1 if not.
wait_for_line() {
  local i
  for ((i = 0; i < 300; i++)); do
    grep -q -- "$3" "$2" 2>/dev/null && return 0
    kill -0 "$1" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# Stops process $1 and waits for it.
stop_process() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
