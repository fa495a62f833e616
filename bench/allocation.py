"""Allocation benchmark: cluster prediction latency and throughput, against scoring alone.

    .venv/bin/python bench/allocation.py [--participants 2000] [--batch 20000]

Prints, for the shipped model and participants from the shipped synthetic cohort
(item answers as REDCap delivers them, strings keyed `mpid_…`):

- MPI-D scoring alone, per participant: p50 / p99 (the baseline of this run);
- one participant's prediction in-process (scoring + T-scores + forest): p50 / p99,
  and its ratio to scoring alone;
- scikit-learn's own `predict_proba` on one row (n_jobs=1), for comparison;
- batch predictions per second (forest on validated feature rows), and single
  predictions (scoring included) one after another per second;
- through HTTP: see `measure_http` below (needs the running service).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.allocation.domain import (  # noqa: E402
    FEATURES,
    ClusterPredictor,
    read_model,
    score_mpid,
)
from services.core.protocol import TrialProtocol, load_protocol  # noqa: E402


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    q = statistics.quantiles(samples_ns, n=100, method="inclusive")
    return q[49] / 1e6, q[98] / 1e6


def time_each(call: Callable[[int], object], n: int, warmup: int = 50) -> list[int]:
    for i in range(warmup):
        call(i)
    samples = []
    for i in range(n):
        start = time.perf_counter_ns()
        call(i)
        samples.append(time.perf_counter_ns() - start)
    return samples


def measure_http(base_url: str | None, records: list[dict[str, str]]) -> tuple[float, float] | None:
    """HTTP HOOK — to be completed by the lead once the allocation service exists.

    Should POST each record to `{base_url}/v1/predictions` (unblinded role token) and
    return (p50, p99) in ms, measured like `time_each`. Returns None until then, and
    the report says the HTTP figure was not measured.
    """
    del base_url, records
    return None


def load(protocol: TrialProtocol) -> tuple[ClusterPredictor, list[dict[str, str]]]:
    rules = protocol.allocation
    model_path = ROOT / rules.model.path
    model = read_model(model_path, expected_sha256=rules.model.sha256,
                       clusters=[c.key for c in protocol.clusters])
    with model_path.with_name("synthetic-reference.csv").open(encoding="utf-8") as f:
        records = list(csv.DictReader(f))
    return ClusterPredictor.from_rules(model, rules), records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default=str(ROOT / "protocols" / "perpain-pilot.yaml"))
    parser.add_argument("--participants", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=20000)
    parser.add_argument("--http", default=None, help="base URL of a running allocation service")
    args = parser.parse_args()

    protocol = load_protocol(args.protocol)
    predictor, records = load(protocol)
    prefix = protocol.redcap.fields.mpid_item_prefix
    n, k = args.participants, len(records)
    print(f"model {predictor.model.version}: {len(predictor.model.forest.estimators_)} trees; "
          f"{k} synthetic participants, {n} timed calls each")

    def score(i: int) -> object:
        return score_mpid(records[i % k], item_prefix=prefix)

    def predict(i: int) -> object:
        r = records[i % k]
        return predictor.predict_items(r, age=r["age"], sex=int(r["sex"]), item_prefix=prefix)

    features = np.array([[*score(i).values(), float(r["age"]), float(r["sex"])]  # type: ignore[attr-defined]
                         for i, r in enumerate(records)])
    forest = predictor.model.forest

    def sklearn_single(i: int) -> object:
        return forest.predict_proba(features[i % k: i % k + 1])

    s50, s99 = percentiles(time_each(score, n))
    p50, p99 = percentiles(time_each(predict, n))
    k50, k99 = percentiles(time_each(sklearn_single, min(n, 300), warmup=10))
    print(f"scoring alone            p50 {s50:7.3f} ms   p99 {s99:7.3f} ms   (baseline)")
    print(f"prediction, in-process   p50 {p50:7.3f} ms   p99 {p99:7.3f} ms   "
          f"= {p50 / s50:.1f}x / {p99 / s99:.1f}x scoring   (target p99 < 5 ms: "
          f"{'met' if p99 < 5 else 'NOT met'})")
    print(f"sklearn predict_proba    p50 {k50:7.3f} ms   p99 {k99:7.3f} ms   "
          f"= {k50 / p50:.1f}x our prediction (n_jobs=1, one row)")

    rows = features[np.arange(args.batch) % k]
    assert rows.shape[1] == len(FEATURES)
    start = time.perf_counter()
    predictor.probabilities(rows)
    batch_rate = args.batch / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(n):
        predict(i)
    full_rate = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(n):
        score(i)
    score_rate = n / (time.perf_counter() - start)
    print(f"batch, forest only       {batch_rate:10.0f} predictions/s ({args.batch} rows)")
    print(f"one by one, with scoring {full_rate:10.0f} predictions/s   "
          f"(scoring alone {score_rate:.0f}/s, ratio {score_rate / full_rate:.1f}x)")

    http = measure_http(args.http, records)
    if http is None:
        print("HTTP                     not measured: needs the running service "
              "(measure_http hook, to be added by the lead)")
    else:
        h50, h99 = http
        print(f"prediction, HTTP         p50 {h50:7.3f} ms   p99 {h99:7.3f} ms   "
              f"= {h50 / p50:.1f}x in-process")


if __name__ == "__main__":
    main()
