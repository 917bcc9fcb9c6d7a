#!/usr/bin/env bash
# Counts the instructions per request of each parser under valgrind's callgrind, for a fixed
# number of requests, so the figures repeat exactly from run to run on the same binary.
#
#   benchmarks/parser/callgrind.sh BINARY [ITERATIONS] [OUTPUT_DIR]
#
# BINARY is revdesk-bench-parser. ITERATIONS (default 20000) requests of each sample are counted
# after one untimed warm-up run. The callgrind files stay in OUTPUT_DIR (default a new temporary
# directory) for callgrind_annotate.
set -euo pipefail

binary=${1:?usage: callgrind.sh BINARY [ITERATIONS] [OUTPUT_DIR]}
iterations=${2:-20000}
out=${3:-$(mktemp -d)}
mkdir -p "$out"

printf 'instructions per request (callgrind Ir), %s requests per sample\n' "$iterations"
printf '%-8s %13s %13s %13s %14s %13s\n' sample revdesk llhttp-build llhttp-bare revdesk/build \
    revdesk/bare
for sample in post get chunked; do
    declare -A per_request=()
    for parser in revdesk llhttp-build llhttp-bare; do
        file="$out/callgrind.$sample.$parser"
        valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$file" \
            "$binary" --parser "$parser" --sample "$sample" --iterations "$iterations" \
            --repetitions 1 --warmup 1 >/dev/null 2>"$file.log"
        total=$(sed -n "s/^totals: *//p" "$file")
        per_request[$parser]=$((total / iterations))
    done
    awk -v s="$sample" -v a="${per_request[revdesk]}" -v b="${per_request[llhttp-build]}" \
        -v c="${per_request[llhttp-bare]}" \
        'BEGIN { printf "%-8s %13d %13d %13d %14.2f %13.2f\n", s, a, b, c, a / b, a / c }'
done
echo "callgrind files: $out (callgrind_annotate --inclusive=yes FILE)"
