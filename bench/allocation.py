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
- through HTTP: POST /v1/predictions p50 / p99 as a study manager, beside GET /healthz on
  the same server (the HTTP floor). The service is started here under uvicorn on a free
  port, with its own nats-server and a temporary SQLite database, unless `--http URL`
  names a running one.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.allocation.app import SPEC  # noqa: E402
from services.allocation.domain import (  # noqa: E402
    FEATURES,
    ITEM_KEYS,
    ClusterPredictor,
    read_model,
    score_mpid,
)
from services.core.internal_token import (  # noqa: E402
    HEADER,
    PRIVATE_KEY_FILE,
    Caller,
    InternalTokenSigner,
    ensure_keypair,
    load_private_key,
)
from services.core.protocol import TrialProtocol, load_protocol  # noqa: E402
from services.core.roles import Role  # noqa: E402
from services.core.runner import build_app  # noqa: E402
from services.core.settings import ServiceSettings, Settings  # noqa: E402
from tailor_cli.natsd import NatsServer, free_port  # noqa: E402


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


@dataclass(frozen=True)
class HttpFigures:
    p50: float
    p99: float
    floor_p50: float  # GET /healthz on the same server: HTTP + ASGI alone
    floor_p99: float
    requests: int


def prediction_body(record: dict[str, str], prefix: str) -> dict[str, object]:
    """A REDCap-style record as the what-if request: items keyed `1_1`, blanks skipped."""
    items = {k: (int(v) if (v := record[prefix + k].strip()) else None) for k in ITEM_KEYS}
    return {"items": items, "age": float(record["age"]), "sex": int(record["sex"])}


class _Tokens:
    """Study-manager tokens as the gateway signs them, renewed well before they expire."""

    def __init__(self, keys_dir: Path) -> None:
        private_key = keys_dir / PRIVATE_KEY_FILE
        if not private_key.exists():
            raise SystemExit(f"no internal-token key at {private_key}: pass --home of the stack")
        self._signer = InternalTokenSigner(load_private_key(private_key.read_bytes()))
        self._header: dict[str, str] = {}
        self._signed_at = -1e9

    def header(self) -> dict[str, str]:
        if time.monotonic() - self._signed_at > 20:
            token = self._signer.sign(Caller(subject="bench", role=Role.STUDY_MANAGER),
                                      audience="allocation")
            self._header, self._signed_at = {HEADER: token}, time.monotonic()
        return self._header


def time_http(base_url: str, tokens: _Tokens, bodies: list[dict[str, object]],
              n: int) -> HttpFigures:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        def predict(i: int) -> object:
            response = client.post("/v1/predictions", json=bodies[i % len(bodies)],
                                   headers=tokens.header())
            response.raise_for_status()
            return response

        def health(_i: int) -> object:
            return client.get("/healthz").raise_for_status()

        f50, f99 = percentiles(time_each(health, n))
        p50, p99 = percentiles(time_each(predict, n))
    return HttpFigures(p50, p99, f50, f99, n)


@contextmanager
def served_allocation(protocol_file: Path) -> Iterator[tuple[str, Path]]:
    """The allocation app under uvicorn on a free port (in a thread of this process), with
    its own nats-server and a temporary SQLite database; yields (base URL, key folder)."""
    with tempfile.TemporaryDirectory(prefix="tailor-bench-") as tmp:
        home = Path(tmp)
        ensure_keypair(home / "keys")
        nats = NatsServer(store_dir=home / "nats").start()
        config = Settings(home=home, nats_url=nats.url, protocol_file=protocol_file,
                          log_level="warning", log_json=False)
        app = build_app(SPEC, config=config, own=ServiceSettings(
            name="allocation", database_url=f"sqlite:///{home / 'allocation.db'}"))
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 60
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the allocation service did not start")
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port}", home / "keys"
        finally:
            server.should_exit = True
            thread.join(timeout=30)
            nats.kill()


def measure_http(base_url: str | None, records: list[dict[str, str]], *, prefix: str,
                 protocol_file: Path, keys_dir: Path, n: int) -> HttpFigures:
    """POST /v1/predictions p50/p99 through real HTTP, beside GET /healthz on the same
    server. Without `base_url` the service is started here; with it, tokens are signed
    with the private key in `keys_dir` (the embedded stack's `.tailor/keys`)."""
    bodies = [prediction_body(r, prefix) for r in records]
    if base_url:
        return time_http(base_url, _Tokens(keys_dir), bodies, n)
    with served_allocation(protocol_file) as (url, keys):
        return time_http(url, _Tokens(keys), bodies, n)


def load(protocol: TrialProtocol) -> tuple[ClusterPredictor, list[dict[str, str]]]:
    rules = protocol.prediction
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
    parser.add_argument("--http", default=None,
                        help="base URL of a running allocation service (default: start one here)")
    parser.add_argument("--home", default=".tailor",
                        help="with --http: state folder whose keys/ sign the study-manager token")
    parser.add_argument("--http-requests", type=int, default=1000)
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP figures")
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

    if args.no_http:
        print("HTTP                     not measured (--no-http)")
        return
    http = measure_http(args.http, records, prefix=prefix, protocol_file=Path(args.protocol),
                        keys_dir=Path(args.home) / "keys", n=args.http_requests)
    print(f"HTTP floor, GET /healthz p50 {http.floor_p50:7.3f} ms   p99 {http.floor_p99:7.3f} ms   "
          f"(baseline of the HTTP figures; {http.requests} requests each)")
    print(f"prediction, HTTP         p50 {http.p50:7.3f} ms   p99 {http.p99:7.3f} ms   "
          f"= {http.p50 / p50:.1f}x in-process, {http.p50 / http.floor_p50:.1f}x the HTTP floor "
          "(POST /v1/predictions: token check, validation, prediction, audited read)")

if __name__ == "__main__":
    main()
