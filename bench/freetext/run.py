"""Benchmark: the free-text PHI detector on the labelled set (recall per kind, clinical words kept, values/s).

Writes ``bench/results/freetext.json``. The labelled set is the tests' own
(``tests/freetext/labelled.py``: clinical text written by hand, PHI from Faker's locale
lists, a different source than the detector's census tables). Two sets are measured: the
one the rules were developed against (seed 14; seeds 2026 and 7 were also looked at while
developing) and one nobody looked at before it was measured (seed 31).
Throughput is ``detect`` over every value of the set, repeated (``--runs``), in one
process; recall does not vary between runs (the detector is deterministic).

    make bench-freetext
    python bench/freetext/run.py --values 2400 --runs 5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO / "tests" / "freetext"), str(REPO / "bench")]

from labelled import evaluate, labelled_set  # noqa: E402
from report import header, spread  # noqa: E402

from imaging_ingest.deid.freetext import detect  # noqa: E402


def throughput(values: list[tuple[str, str]], runs: int) -> dict:
    detect("warm up: Dr. Quist, 88 Wexford Lane")  # word lists loaded, patterns compiled
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        for text, text_class in values:
            detect(text, text_class=text_class)
        rates.append(len(values) / (time.perf_counter() - started))
    return spread(rates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=2400)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "freetext.json")
    args = parser.parse_args()
    report = header(
        "freetext",
        "imaging_ingest.deid.freetext.detect on labelled clinical free text with planted PHI (tests/freetext/labelled.py)",
        values=args.values,
        runs=args.runs,
    )
    sets = {}
    for name, seed in (("development", 14), ("held_out", 31)):
        examples = labelled_set(args.values, seed=seed)
        result = evaluate(examples)
        result["values_per_s"] = throughput([(e.text, e.text_class) for e in examples], args.runs)
        result["mean_value_chars"] = round(sum(len(e.text) for e in examples) / len(examples), 1)
        sets[name] = {"seed": seed, **{k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}}
        print(f"{name}: recall {result['recall']:.4f}, clinical words kept {result['clinical_words_kept']:.4f}, "
              f"{result['values_per_s']['median']} values/s")
    report["sets"] = sets
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
