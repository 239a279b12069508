"""Mutation scores per module group from a finished `mutmut run` (run by `make mutate`).

Reads mutmut's per-file results (``mutants/**/*.py.meta``), counts each group's mutants,
killed (a test failed, or the mutant hung past its timeout) and survivors, subtracts the
mutants listed as equivalent in tests/EQUIVALENT_MUTANTS.md and prints the table that file's
header records. ``--survivors`` lists the surviving mutants that are not listed as equivalent.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# mutant names start with the dotted module name
GROUPS = {"math": "procalign.math.", "transform file": "procalign.transform_file.",
          "formats": "procalign.formats.", "delivery": "procalign.pipeline."}
KILLED = {1, 3, -24, 24, 36, 152, 255, -11, -9}  # failed, pytest error, timeout, crashed
SURVIVED = {0}


def equivalent_ids() -> set[str]:
    listed = ROOT / "tests" / "EQUIVALENT_MUTANTS.md"
    text = listed.read_text() if listed.exists() else ""
    return set(re.findall(r"`(procalign\.[\w.]+__mutmut_\d+)`", text))


def results() -> dict[str, int | None]:
    out = {}
    for meta in sorted((ROOT / "mutants" / "procalign").rglob("*.py.meta")):
        out.update(json.loads(meta.read_text())["exit_code_by_key"])
    return out


def group_of(name: str) -> str:
    return next((g for g, prefix in GROUPS.items() if name.startswith(prefix)), "other")


def main() -> int:
    codes, equivalent = results(), equivalent_ids()
    if not codes:
        print("no mutmut results under mutants/; run `make mutate` first", file=sys.stderr)
        return 1
    rows = []
    for group in GROUPS:
        names = [n for n in codes if group_of(n) == group]
        killed = sum(codes[n] in KILLED for n in names)
        equiv = sum(n in equivalent and codes[n] in SURVIVED for n in names)
        other = sum(codes[n] not in KILLED | SURVIVED for n in names)  # no tests, not checked
        scored = len(names) - equiv
        rows.append((group, len(names), killed, equiv, other, killed / scored if scored else float("nan")))
    print("| module group | mutants | killed | equivalent | not run / no tests | score = killed / (mutants - equivalent) |")
    print("|---|---|---|---|---|---|")
    for g, n, k, e, o, s in rows:
        print(f"| {g} | {n} | {k} | {e} | {o} | {s:.1%} |")
    if "--survivors" in sys.argv:
        for n, code in sorted(codes.items()):
            if code not in KILLED and n not in equivalent:
                print(f"{code}\t{n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
