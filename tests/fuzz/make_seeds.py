#!/usr/bin/env python3
"""Write the messages of the codec's corpus as one file each, as a libFuzzer seed directory.

Usage: make_seeds.py requests|responses OUTPUT_DIR

Reads tests/data/http/requests.json or responses.json, whose "raw" strings use the code points
U+0000..U+00FF for single bytes. The fuzz targets read their first byte as options, so each seed
is written twice: with 0x00 (default limits) and 0x01 (small limits) in front.
"""
import json
import pathlib
import sys


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in ("requests", "responses"):
        print(__doc__, file=sys.stderr)
        return 2
    corpus = pathlib.Path(__file__).resolve().parent.parent / "data" / "http" / f"{sys.argv[1]}.json"
    out = pathlib.Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    cases = json.loads(corpus.read_text())
    for index, case in enumerate(cases):
        raw = case["raw"].encode("latin-1")
        for options in (b"\x00", b"\x01"):
            (out / f"{index:03d}-{options[0]}.http").write_bytes(options + raw)
    print(f"wrote {2 * len(cases)} seeds from {corpus} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
