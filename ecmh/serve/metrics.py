"""The server's counters in Prometheus' text format (`GET /metrics`): requests by endpoint and status, rows in
flight, decoded tokens, MH proposals and acceptances, batches, and the seconds the batch ran, and ran full (the share
of time the batch was full is `ecmh_batch_full_seconds_total / ecmh_batch_seconds_total`)."""

import threading
from collections import Counter


class Metrics:
    def __init__(self, max_rows: int, rows_in_flight=lambda: 0):
        self.max_rows, self.rows_in_flight = max_rows, rows_in_flight
        self._lock = threading.Lock()
        self.requests: Counter = Counter()  # (endpoint, status) -> requests answered
        self.totals: Counter = Counter()

    def request(self, endpoint: str, status: int) -> None:
        with self._lock:
            self.requests[endpoint, status] += 1

    def answered(self, stats: list) -> None:
        """The stats of a response's choices (`ecmh.serve.engine.Choice.stats`)."""
        with self._lock:
            for row in stats:
                self.totals["tokens_decoded"] += row["tokens_decoded"]
                self.totals["proposals"] += row.get("proposals", 0)  # MH's own statistics (`ecmh.ChainStats`)
                self.totals["accepted"] += row.get("accepted", 0)

    def batch(self, rows: int, seconds: float) -> None:
        with self._lock:
            self.totals["batches"] += 1
            self.totals["batch_rows"] += rows
            self.totals["batch_seconds"] += seconds
            self.totals["batch_full_seconds"] += seconds if rows >= self.max_rows else 0.0

    def text(self) -> str:
        counters = [
            ("ecmh_tokens_decoded_total", "tokens decoded for answers sent, rejected proposals included", "tokens_decoded"),
            ("ecmh_mh_proposals_total", "MH proposals made for answers sent", "proposals"),
            ("ecmh_mh_accepted_total", "MH proposals accepted for answers sent", "accepted"),
            ("ecmh_batches_total", "calls of the sampler", "batches"),
            ("ecmh_batch_rows_total", "rows (answers) sampled, summed over the calls", "batch_rows"),
            ("ecmh_batch_seconds_total", "seconds the sampler ran", "batch_seconds"),
            ("ecmh_batch_full_seconds_total", "seconds the sampler ran with --max-batch-rows rows", "batch_full_seconds"),
        ]
        with self._lock:
            lines = ["# HELP ecmh_requests_total requests answered, by endpoint and HTTP status",
                     "# TYPE ecmh_requests_total counter"]
            lines += [f'ecmh_requests_total{{endpoint="{endpoint}",status="{status}"}} {count}'
                      for (endpoint, status), count in sorted(self.requests.items())]
            for name, meaning, key in counters:
                lines += [f"# HELP {name} {meaning}", f"# TYPE {name} counter", f"{name} {self.totals[key]}"]
            accepted, proposals = self.totals["accepted"], self.totals["proposals"]
        lines += ["# HELP ecmh_rows_in_flight rows of the batch running now", "# TYPE ecmh_rows_in_flight gauge",
                  f"ecmh_rows_in_flight {self.rows_in_flight()}",
                  "# HELP ecmh_acceptance_rate MH proposals accepted / made, over the answers sent",
                  "# TYPE ecmh_acceptance_rate gauge", f"ecmh_acceptance_rate {accepted / proposals if proposals else 0.0}"]
        return "\n".join(lines) + "\n"
