#!/usr/bin/env bash
# Write a record with curl, read it back, list what the bucket holds.
# REDUCT_URL picks the server (default http://127.0.0.1:8383), RS_API_TOKEN a token if auth is on.
set -euo pipefail
URL="${REDUCT_URL:-http://127.0.0.1:8383}"
AUTH=()
[[ -n "${RS_API_TOKEN:-}" ]] && AUTH=(-H "Authorization: Bearer $RS_API_TOKEN")

TS="$(date +%s%6N)"                                                      # now, in microseconds
head -c 1000 /dev/urandom > frame.jpg                                    # a stand-in camera frame
curl -sS "${AUTH[@]}" -X POST "$URL/api/v1/b/cams" -o /dev/null \
     -w 'create bucket cams: HTTP %{http_code} (409: it exists already)\n'  # create a bucket
curl -fsS "${AUTH[@]}" -X POST -H 'content-type: image/jpeg' -H 'x-reduct-label-camera: front' \
     --data-binary @frame.jpg "$URL/api/v1/b/cams/front?ts=$TS"  # write it
curl -fsS "${AUTH[@]}" "$URL/api/v1/b/cams/front?ts=$TS" -o out.jpg   # read it back
cmp frame.jpg out.jpg && echo "read back the same $(wc -c < out.jpg) bytes"
curl -fsS "${AUTH[@]}" "$URL/api/v1/b/cams"; echo                        # the bucket: entries, counts
