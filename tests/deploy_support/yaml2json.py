"""Print YAML files as JSON: {"path": [document, ...], ...}, for tests/deploy_static.rs
(the Rust side has serde_json but no YAML parser). Run with the manifest venv's
python, which has PyYAML."""
import json
import sys

import yaml

out = {}
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        out[path] = [d for d in yaml.safe_load_all(f) if d is not None]
json.dump(out, sys.stdout)
