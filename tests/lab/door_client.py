"""A client of the front door, run inside a lab host's network namespace (stdlib only).

    python3 door_client.py URL KEY SECONDS THREADS [STOP_FILE]

Each thread loops over completions and chat completions, streaming and not, until SECONDS pass or STOP_FILE
exists, and judges every answer: 200, a JSON body with a choice (or a stream ending in ``data: [DONE]``).
Prints one JSON object: ``ok``, ``failed`` and up to five failure excerpts.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import threading
import time
from urllib.parse import urlsplit

MODEL = "lab/tiny-llama"


def one(url: str, key: str, n: int) -> str | None:
    """None when the answer is good, else what was wrong."""
    parts = urlsplit(url)
    chat, stream = n % 2 == 0, n % 4 < 2
    path = "/v1/chat/completions" if chat else "/v1/completions"
    body: dict = {"model": MODEL, "max_tokens": 8, "stream": stream}
    body.update({"messages": [{"role": "user", "content": "hi"}]} if chat else {"prompt": "hi"})
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
        conn.request("POST", path, json.dumps(body), headers)
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as e:  # refused, reset, cut short in the middle of a stream
        return f"{path}: {e!r}"
    finally:
        conn.close()
    if response.status != 200:
        return f"{path}: {response.status} {text[:120]}"
    if stream:
        return None if "data: [DONE]" in text and '"error"' not in text else f"{path}: stream {text[-120:]}"
    return None if json.loads(text).get("choices") else f"{path}: no choices {text[:120]}"


def main(url: str, key: str, seconds: float, threads: int, stop_file: str = "") -> None:
    results: list[str | None] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def loop(index: int) -> None:
        n = index
        while time.monotonic() < deadline and not (stop_file and os.path.exists(stop_file)):
            outcome = one(url, key, n)
            with lock:
                results.append(outcome)
            n += 1

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    failures = [r for r in results if r is not None]
    print(json.dumps({"ok": len(results) - len(failures), "failed": len(failures), "excerpts": failures[:5]}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), *(sys.argv[5:6]))
