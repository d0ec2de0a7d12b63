"""The scalars TensorBoard itself reads from a run directory's event files.

usage: tensorboard_scalars.py RUN_DIR OUT_JSON
  OUT_JSON: {tag: [[step, value], ...]} as tensorboard's EventAccumulator returns them.
"""
import sys

from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from common import write_json


def main(run_dir, out_path):
    accumulator = EventAccumulator(run_dir, size_guidance={SCALARS: 0})
    accumulator.Reload()
    scalars = {tag: [[e.step, e.value] for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}
    write_json(out_path, scalars)


if __name__ == "__main__":
    main(*sys.argv[1:])
