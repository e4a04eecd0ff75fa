"""Sends COUNT chat requests, one after another on one keep-alive
connection, for bench/instructions.sh (a fixed count, not a duration:
instructions per request need an exact denominator).

usage: instructions_load.py PORT KEY COUNT nonstream|stream|both [MODEL]
(MODEL: the request's model, default "bench"; "auto" lets Relay route)
"""
import http.client
import json
import sys


def main():
    if len(sys.argv) not in (5, 6) or sys.argv[4] not in ("nonstream",
                                                          "stream", "both"):
        sys.exit(__doc__.strip())
    model = sys.argv[5] if len(sys.argv) == 6 else "bench"
    port, key, count, mode = (int(sys.argv[1]), sys.argv[2],
                              int(sys.argv[3]), sys.argv[4])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": "Bearer " + key,
               "Content-Type": "application/json"}
    for i in range(count):
        stream = mode == "stream" or (mode == "both" and i % 2 == 1)
        body = {"model": model, "max_tokens": 16,
                "messages": [{"role": "user",
                              "content": "Say hello in one short sentence."}]}
        if stream:
            body["stream"] = True
        conn.request("POST", "/v1/chat/completions", json.dumps(body),
                     headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            sys.exit("request %d: HTTP %d %r" % (i, resp.status, data[:300]))


if __name__ == "__main__":
    main()
