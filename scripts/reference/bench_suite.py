"""Several reference benchmarks in one Python process, for `scripts/gpu/run.sh`: importing torch and
transformers and starting CUDA cost 15-40 s a process on the GPU machine (the first run's
`steps.tsv`), more than most measurements themselves, and a GPU session has 15 minutes in all.

usage: bench_suite.py JOBS STATUS
JOBS: one job a line, `NAME SCRIPT ARG...` (whitespace-separated, no quoting): runs SCRIPT's `main()`
(bench_forward.py, bench_generate.py, bench_train.py) with those arguments and writes what it prints
to RESULTS/NAME.json, RESULTS being $BENCH_SUITE_RESULTS (default: the directory holding JOBS).
STATUS: a file to append `NAME<TAB>exit<TAB>seconds` to, one line a job (run.sh's steps.tsv format).

A job that fails is recorded (exit 1, its traceback on stderr) and the next one runs. Each job loads
its own model, so one job's changes (LoRA factors, caches) never reach the next; GPU memory peaks are
reset between jobs, so each job's `peak_gpu_bytes` is its own.
"""
import contextlib
import importlib
import os
import sys
import time
import traceback

import torch


def run(name, script, args, results):
    module = importlib.import_module(os.path.splitext(os.path.basename(script))[0])
    sys.argv = [script, *args]
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    path = os.path.join(results, f"{name}.json")
    with open(path + ".partial", "w") as out, contextlib.redirect_stdout(out):
        module.main()
    # Only a finished job leaves a result: summary.py reads no half-written JSON.
    os.replace(path + ".partial", path)


def main():
    jobs_path, status_path = sys.argv[1], sys.argv[2]
    results = os.environ.get("BENCH_SUITE_RESULTS", os.path.dirname(os.path.abspath(jobs_path)))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    with open(jobs_path) as f:
        jobs = [line.split() for line in f if line.strip() and not line.startswith("#")]
    for name, script, *args in jobs:
        started = time.monotonic()
        code = 0
        try:
            run(name, script, args, results)
        except (Exception, SystemExit):  # argparse exits on bad arguments: a failed job, not a failed suite
            traceback.print_exc()
            code = 1
        seconds = time.monotonic() - started
        with open(status_path, "a") as status:
            status.write(f"{name}\t{code}\t{seconds:.0f}s\n")
        print(f"bench_suite: {name}: exit {code} after {seconds:.1f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
