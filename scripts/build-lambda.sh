#!/usr/bin/env bash
# Build the Lambda package: the zae-limiter binary, statically linked for
# x86_64-unknown-linux-musl (runs on provided.al2023 whatever its glibc), as `bootstrap`
# in target/lambda/bootstrap.zip, where deploy / upgrade / lambda-export find it.
#
# Installs what it needs once (idempotent): the rustup target x86_64-unknown-linux-musl
# and, through apt, musl-tools (x86_64-linux-musl-gcc, which the C parts of the TLS stack
# need). Re-running only rebuilds what changed (cargo's own cache).
#
#   scripts/build-lambda.sh            build and package
#   scripts/build-lambda.sh --check    only verify an existing package
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target=x86_64-unknown-linux-musl
out=target/lambda
bin="target/$target/release/zae-limiter"

verify() {
  # static: no program interpreter (no dynamic loader, so no glibc requirement at all)
  if readelf -l "$out/bootstrap" | grep -q "Requesting program interpreter"; then
    echo "error: $out/bootstrap is dynamically linked" >&2
    exit 1
  fi
  # it runs (a copy under another name: called `bootstrap` it starts in Lambda mode)
  cp "$out/bootstrap" "$out/zae-limiter-check"
  "$out/zae-limiter-check" version >/dev/null || { echo "error: $out/bootstrap does not run" >&2; exit 1; }
  rm -f "$out/zae-limiter-check"
  python3 - "$out/bootstrap.zip" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = z.namelist()
assert names == ["bootstrap"], names
mode = (z.getinfo("bootstrap").external_attr >> 16) & 0o777
assert mode == 0o755, oct(mode)
PY
  echo "ok: $out/bootstrap.zip ($(stat -c %s "$out/bootstrap.zip") bytes; bootstrap $(stat -c %s "$out/bootstrap") bytes, static)" >&2
}

if [[ "${1:-}" == "--check" ]]; then
  verify
  exit 0
fi

if ! rustup target list --installed | grep -qx "$target"; then
  echo "installing rustup target $target ..." >&2
  rustup target add "$target"
fi
if ! command -v x86_64-linux-musl-gcc >/dev/null 2>&1; then
  echo "installing musl-tools (apt) ..." >&2
  if [[ "$(id -u)" -eq 0 ]]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq musl-tools
fi

# the C compiler for the C parts; rustc links with its own self-contained musl (static-pie):
# x86_64-linux-musl-gcc as the linker would make a dynamic binary needing ld-musl
export CC_x86_64_unknown_linux_musl=x86_64-linux-musl-gcc
start=$(date +%s)
cargo build --release --locked -p zae-limiter-cli --target "$target"
echo "release build: $(( $(date +%s) - start )) s" >&2

mkdir -p "$out"
cp "$bin" "$out/bootstrap.tmp"
strip "$out/bootstrap.tmp"
mv "$out/bootstrap.tmp" "$out/bootstrap"
# package with the binary itself (by its own name: called `bootstrap` it would start in
# Lambda mode)
"$bin" lambda-export --binary "$out/bootstrap" --output "$out/bootstrap.zip.tmp"
mv "$out/bootstrap.zip.tmp" "$out/bootstrap.zip"
verify
