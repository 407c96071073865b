#!/usr/bin/env bash
# Checks a Lambda `bootstrap` for provided.al2023: the expected architecture, no dynamic
# dependency but glibc's own libraries (librdkafka, OpenSSL, curl, zlib and zstd are
# linked statically), no GLIBC symbol version above 2.34 (Amazon Linux 2023), a panic
# that unwinds, and none of the `esm` feature's code.
#
#   scripts/check-artifact.sh target/lambda/cdc-relay/bootstrap x86-64|aarch64
set -euo pipefail
bin="${1:?usage: $0 BOOTSTRAP x86-64|aarch64}"
arch="${2:?usage: $0 BOOTSTRAP x86-64|aarch64}"
max_glibc="2.34"
fail() { echo "artifact: FAIL: $*" >&2; exit 1; }
command -v file >/dev/null && command -v readelf >/dev/null && command -v objdump >/dev/null \
  || fail "needs file, readelf and objdump (binutils)"

[ -f "$bin" ] || fail "$bin does not exist"
kind="$(file -b "$bin")"
echo "artifact: $bin: $kind"
case "$arch" in
  x86-64) echo "$kind" | grep -q "x86-64" || fail "not an x86-64 ELF" ;;
  aarch64) echo "$kind" | grep -q "aarch64\|ARM aarch64" || fail "not an aarch64 ELF" ;;
  *) fail "unknown architecture $arch" ;;
esac

needed="$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')"
echo "artifact: needs: $(echo $needed)"
for lib in $needed; do
  case "$lib" in
    libc.so.6|libm.so.6|libpthread.so.0|libdl.so.2|librt.so.1|libutil.so.1|ld-linux-x86-64.so.2|ld-linux-aarch64.so.1) ;;
    *) fail "dynamic dependency outside glibc: $lib" ;;
  esac
done

highest="$(objdump -T "$bin" | { grep -o 'GLIBC_[0-9.]*' || true; } | sed 's/GLIBC_//' | sort -V | tail -n 1)"
echo "artifact: highest GLIBC symbol version: ${highest:-none}"
if [ -n "$highest" ] && [ "$(printf '%s\n%s\n' "$highest" "$max_glibc" | sort -V | tail -n 1)" != "$max_glibc" ]; then
  fail "needs GLIBC_$highest, above $max_glibc (Amazon Linux 2023)"
fi
# A panic unwinds (why: the comment on `panic` in Cargo.toml's release profile). Two marks
# of an aborting build: the standard library's panic_abort runtime (its source path is
# among the strings), and exception tables no larger than the prebuilt standard library's
# own: 7,780 bytes in an aborting x86-64
# build of the artifact, 432,820 in an unwinding one; 8,012 in an aborting unoptimised
# arm64 one, 839,932 in an unwinding one (bench/results/artifact-build-2026-12-07.txt).
abort_marks="$(grep -c -a -F '/library/panic_abort/' "$bin" || true)"
[ "${abort_marks}" -eq 0 ] || fail "built with panic = \"abort\" (the standard library's panic_abort runtime is in it)"
sections="$(readelf -SW "$bin")" || fail "readelf cannot read its sections"
except_hex="$(echo "$sections" | sed -n 's/.*\.gcc_except_table  *[A-Z_]*  *[0-9a-f]*  *[0-9a-f]*  *\([0-9a-f]*\) .*/\1/p' | head -n 1)"
except_bytes="$((16#${except_hex:-0}))"
[ "${except_bytes}" -ge 65536 ] || fail "exception tables of ${except_bytes} bytes: built with panic = \"abort\"?"
echo "artifact: a panic unwinds (exception tables: ${except_bytes} bytes)"
# The function leaves out the local event source mapping (the `esm` feature): none of its
# messages are in the artifact, while the Lambda mode's are. (Read from the binary's
# strings: the artifact may be stripped of symbols. `grep -c` reads all its input.)
lambda_marks="$(grep -c -a -F 'invocation deadline missing or already past on arrival' "$bin" || true)"
esm_marks="$(grep -c -a -F 'invalid partial batch response' "$bin" || true)"
[ "${lambda_marks}" -gt 0 ] || fail "no message of the Lambda mode: cannot tell what the artifact holds"
[ "${esm_marks}" -eq 0 ] || fail "the artifact holds the esm mode's messages (built with the default features?)"
echo "artifact: the Lambda mode is in, esm is not"
echo "artifact: ok ($(du -h "$bin" | cut -f1))"
