#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
# (default 60 s each, all targets). Installs cargo-fuzz if missing. cargo-fuzz builds with
# -Zsanitizer=address, a nightly flag: a nightly toolchain is used when rustup has one,
# otherwise stable with RUSTC_BOOTSTRAP=1 (which unlocks nightly flags on a stable rustc).
# Findings land in fuzz/artifacts/<target>/; the corpus grows in fuzz/corpus/<target>/.
set -euo pipefail
cd "$(dirname "$0")"

secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(proxy_protocol rules config import_iis http1 http1_client)
fi

if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked
fi

toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi

# Seeds: the examples and fixtures the project already has.
seed() {
  local target="$1"
  mkdir -p "corpus/$target"
  case "$target" in
    config) cp ../examples/*.toml "corpus/$target/" 2>/dev/null || true ;;
    import_iis) cp ../tests/fixtures/iis/* "corpus/$target/" 2>/dev/null || true ;;
    proxy_protocol)
      printf 'PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n\r\n' >"corpus/$target/v1"
      printf 'PROXY UNKNOWN\r\n' >"corpus/$target/v1-unknown"
      printf '\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\x0a\x00\x00\x01\x0a\x00\x00\x02\x01\xbb\x01\xbb' >"corpus/$target/v2-tcp4"
      ;;
    http1)
      printf '\x00GET /owa/ HTTP/1.1\r\nHost: mail.contoso.com\r\nX-OWA-CANARY: a\r\nContent-Length: 3\r\n\r\nabc' >"corpus/$target/request"
      printf '\x01HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLM\r\nrequest-id: 1\r\nTransfer-Encoding: chunked\r\n\r\n' >"corpus/$target/response"
      printf '\x0e5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\n' >"corpus/$target/chunked"
      ;;
    http1_client)
      printf '\x00HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-FEServer: EX01\r\n\r\nhello' >"corpus/$target/length"
      printf '\x03\x01\x07\x0fHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n' >"corpus/$target/chunked"
      printf '\x10HTTP/1.0 200 OK\r\n\r\nuntil the close' >"corpus/$target/close"
      ;;
  esac
}

status=0
for t in "${targets[@]}"; do
  seed "$t"
  echo "== fuzzing $t for ${secs}s"
  if ! cargo "${toolchain[@]}" fuzz run "$t" "corpus/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1; then
    echo "!! $t found a problem: see fuzz/artifacts/$t/"
    status=1
  fi
done
exit $status
