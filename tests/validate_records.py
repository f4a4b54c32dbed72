"""Validates records read from FlashFit's topics against the JSON Schemas in schemas/.

Usage: validate_records.py <dir>, where <dir> holds one <topic>.jsonl file per topic (the
contract name, e.g. flashfit.embedded.jsonl: one message value per line). Every record is
checked with the schema of its topic (draft 2020-12, formats checked). Prints JSON:
{"validated": {topic: count}, "errors": [{"topic", "line", "error"}]}; exits 1 on any error.
"""

import json
import pathlib
import sys

import jsonschema

SCHEMAS = pathlib.Path(__file__).resolve().parent.parent / "schemas"


def main() -> int:
    folder = pathlib.Path(sys.argv[1])
    validated, errors = {}, []
    for path in sorted(folder.glob("*.jsonl")):
        topic = path.name[: -len(".jsonl")]
        schema = json.loads((SCHEMAS / f"{topic}.json").read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        n = 0
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            record = json.loads(line)
            for e in validator.iter_errors(record):
                errors.append({"topic": topic, "line": i, "error": f"{e.json_path}: {e.message}"})
            n += 1
        validated[topic] = n
    out = json.dumps({"validated": validated, "errors": errors[:50]})
    print(out)
    if errors:
        print(out, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
