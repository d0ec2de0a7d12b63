"""The ShifCon subspace distance computed with NumPy/SciPy, as `rosetta-shifcon` defines it:
per-language centring, the top-k right singular vectors of the two centred sets stacked,
covariances in that basis shrunk toward (tr/k)·I, generalised eigenvalues by scipy.linalg.eigh,
Dist = sqrt(Σ log² λ) + ‖μ_a − μ_b‖.

usage: subspace_distance.py cases.json out.json
"""
import sys

import numpy as np
import scipy.linalg

from common import read_json, write_json


def distance(a, b, dims, shrinkage):
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = a - mu_a, b - mu_b
    k = max(1, min(dims, min(len(a), len(b)) // 2, a.shape[1]))
    _, _, vt = np.linalg.svd(np.vstack([ca, cb]), full_matrices=False)
    basis = vt[:k].T

    def cov(c):
        p = c @ basis
        s = p.T @ p / (len(c) - 1)
        return (1 - shrinkage) * s + shrinkage * np.trace(s) / k * np.eye(k)

    lam = scipy.linalg.eigh(cov(ca), cov(cb), eigvals_only=True)
    return float(np.sqrt(np.sum(np.log(lam) ** 2))), float(np.linalg.norm(mu_a - mu_b)), k


def main():
    cases = read_json(sys.argv[1])
    out = []
    for case in cases:
        cov, mean, k = distance(np.array(case["a"]), np.array(case["b"]), case["dims"], case["shrinkage"])
        out.append({"covariance": cov, "mean": mean, "dims": k})
    write_json(sys.argv[2], out)


if __name__ == "__main__":
    main()
