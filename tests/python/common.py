"""Helpers shared by the reference scripts the Rust parity tests run."""
import json
import sys


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def die(message):
    print(message, file=sys.stderr)
    sys.exit(2)
