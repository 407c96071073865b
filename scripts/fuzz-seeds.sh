#!/usr/bin/env bash
# Seeds the fuzz corpora from events/: whole events for msk_event, decoded DMS values
# for dms_decode and transform.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p fuzz/corpus/msk_event fuzz/corpus/dms_decode fuzz/corpus/transform
for f in events/*.json; do
  cp "$f" "fuzz/corpus/msk_event/$(basename "$f")"
done
python3 - <<'PY'
import base64, glob, hashlib, json, os
for path in glob.glob("events/*.json"):
    event = json.load(open(path))
    for records in event["records"].values():
        for r in records:
            if r.get("value"):
                raw = base64.b64decode(r["value"])
                name = hashlib.sha1(raw).hexdigest()[:16]
                for target in ("dms_decode", "transform"):
                    open(os.path.join("fuzz/corpus", target, name), "wb").write(raw)
PY
echo "seeded: $(ls fuzz/corpus/msk_event | wc -l) events, $(ls fuzz/corpus/dms_decode | wc -l) values"
