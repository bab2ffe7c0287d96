"""Exact models with HiGHS (highspy): MCLP under a budget with mandatory rows, LSCP / coverage target as set cover.

The model goes to HiGHS as one row-wise sparse matrix (HighsLp), built from the reduced instance's CSR arrays —
no modelling layer, no per-coefficient Python calls. A heuristic plan is passed as the starting solution.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import highspy
import numpy as np
from scipy import sparse

from anfang.siting.problem import Instance


@dataclass
class ExactResult:
    selected: list[int]
    objective: float  # best plan found (in the model's sense)
    bound: float  # proven bound (upper for max, lower for min)
    gap: float  # relative gap between objective and bound (0 = proven optimal)
    status: str
    optimal: bool
    seconds: float
    build_seconds: float


_banner_done = False


def _new_highs() -> highspy.Highs:
    """HiGHS prints a banner on stdout (at C level) when the first instance is made; keep it off the CLI output."""
    global _banner_done
    if _banner_done:
        return highspy.Highs()
    _banner_done = True
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):
        return highspy.Highs()
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            return highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _highs(time_limit: float, threads: int | None, mip_rel_gap: float) -> highspy.Highs:
    h = _new_highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
    if threads:
        h.setOptionValue("threads", int(threads))
    return h


def _pass(h: highspy.Highs, M: sparse.csr_matrix, cost: np.ndarray, lo: np.ndarray, hi: np.ndarray,
          rlo: np.ndarray, rhi: np.ndarray, integer: np.ndarray, sense_max: bool, offset: float = 0.0) -> None:
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = M.shape[1], M.shape[0]
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = cost, lo, hi
    lp.row_lower_, lp.row_upper_ = rlo, rhi
    lp.offset_ = offset
    lp.sense_ = highspy.ObjSense.kMaximize if sense_max else highspy.ObjSense.kMinimize
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = M.shape[1], M.shape[0]
    lp.a_matrix_.start_ = M.indptr.astype(np.int32)
    lp.a_matrix_.index_ = M.indices.astype(np.int32)
    lp.a_matrix_.value_ = M.data.astype(float)
    if integer.any():
        lp.integrality_ = [highspy.HighsVarType.kInteger if b else highspy.HighsVarType.kContinuous for b in integer]
    h.passModel(lp)


def _col_bounds(m: int, pinned: list[int] | None, excluded: list[int] | None) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.zeros(m), np.ones(m)
    hi[list(excluded or [])] = 0.0
    lo[list(pinned or [])] = 1.0
    return lo, hi


def _finish(h: highspy.Highs, m: int, t0: float, build: float, sense_max: bool) -> ExactResult:
    status = h.modelStatusToString(h.getModelStatus())
    info = h.getInfo()
    sol = h.getSolution()
    has = info.primal_solution_status == 2 or (sol.value_valid and len(sol.col_value) >= m)  # 2 = feasible
    x = np.asarray(sol.col_value[:m]) if has and len(sol.col_value) >= m else np.zeros(0)
    selected = [int(j) for j in np.flatnonzero(x > 0.5)] if x.size else []
    obj = float(info.objective_function_value) if selected or has else float("nan")
    bound = float(info.mip_dual_bound)
    gap = float(info.mip_gap) if np.isfinite(info.mip_gap) else float("inf")
    optimal = h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    if optimal and not np.isfinite(bound):
        bound, gap = obj, 0.0
    return ExactResult(selected, obj, bound, gap, status, optimal, time.perf_counter() - t0, build)


def solve_mclp(inst: Instance, p: int, *, pinned: list[int] | None = None, excluded: list[int] | None = None,
               warm: list[int] | None = None, time_limit: float = 120.0, mandatory: bool = True,
               relax: bool = False, threads: int | None = None, mip_rel_gap: float = 1e-4) -> ExactResult:
    """max Σ w_i y_i  s.t. y_i ≤ Σ_{j∈N_i} x_j (non-mandatory rows), Σ_{j∈N_i} x_j ≥ 1 (mandatory rows),
    Σ x_j ≤ p, x binary, 0 ≤ y ≤ 1. Mandatory rows carry no y: their weight is a constant offset.
    `relax=True` solves the LP relaxation instead (an upper bound)."""
    t0 = time.perf_counter()
    m = inst.m
    mand = inst.mandatory & mandatory
    opt_rows = np.flatnonzero(~mand)
    man_rows = np.flatnonzero(mand)
    q = len(opt_rows)
    A1 = inst.A[opt_rows].astype(float)
    A2 = inst.A[man_rows].astype(float)
    M = sparse.vstack([
        sparse.hstack([-A1, sparse.identity(q, format="csr")]),
        sparse.hstack([A2, sparse.csr_matrix((len(man_rows), q))]),
        sparse.hstack([sparse.csr_matrix(np.ones((1, m))), sparse.csr_matrix((1, q))]),
    ], format="csr")
    M.sort_indices()
    lo, hi = _col_bounds(m, pinned, excluded)
    cost = np.concatenate([np.zeros(m), inst.w[opt_rows]])
    rlo = np.concatenate([np.full(q, -np.inf), np.ones(len(man_rows)), [-np.inf]])
    rhi = np.concatenate([np.zeros(q), np.full(len(man_rows), np.inf), [float(p)]])
    integer = np.concatenate([np.full(m, not relax), np.zeros(q, bool)])
    h = _highs(time_limit, threads, mip_rel_gap)
    _pass(h, M, cost, np.concatenate([lo, np.zeros(q)]), np.concatenate([hi, np.ones(q)]), rlo, rhi, integer,
          True, float(inst.w[man_rows].sum()))
    if warm and not relax:
        x = np.zeros(m)
        x[warm] = 1.0
        y = np.minimum(1.0, A1 @ x)
        start = highspy.HighsSolution()
        start.col_value = np.concatenate([x, y]).tolist()
        start.value_valid = True
        h.setSolution(start)
    build = time.perf_counter() - t0
    h.run()
    res = _finish(h, m, t0, build, True)
    if relax:
        res.selected, res.bound, res.gap = [], res.objective, 0.0
    return res


def solve_cover(inst: Instance, *, pinned: list[int] | None = None, excluded: list[int] | None = None,
                warm: list[int] | None = None, target: float | None = None, time_limit: float = 120.0,
                threads: int | None = None, mip_rel_gap: float = 1e-6) -> ExactResult:
    """LSCP: min Σ x_j such that every mandatory row is covered; with `target`, also Σ w_i y_i ≥ target over the
    other rows (y_i ≤ Σ x_j), i.e. the fewest cameras reaching a coverage target."""
    t0 = time.perf_counter()
    m = inst.m
    mand = inst.mandatory
    man_rows = np.flatnonzero(mand)
    blocks = [[inst.A[man_rows].astype(float)]]
    rlo = [np.ones(len(man_rows))]
    rhi = [np.full(len(man_rows), np.inf)]
    q = 0
    if target is not None:
        opt_rows = np.flatnonzero(~mand)
        q = len(opt_rows)
        blocks = [[blocks[0][0], sparse.csr_matrix((len(man_rows), q))],
                  [-inst.A[opt_rows].astype(float), sparse.identity(q, format="csr")],
                  [sparse.csr_matrix((1, m)), sparse.csr_matrix(inst.w[opt_rows][None, :])]]
        rlo += [np.full(q, -np.inf), [target - float(inst.w[man_rows].sum())]]
        rhi += [np.zeros(q), [np.inf]]
    M = sparse.bmat(blocks, format="csr")
    M.sort_indices()
    lo, hi = _col_bounds(m, pinned, excluded)
    h = _highs(time_limit, threads, mip_rel_gap)
    _pass(h, M, np.concatenate([np.ones(m), np.zeros(q)]), np.concatenate([lo, np.zeros(q)]),
          np.concatenate([hi, np.ones(q)]), np.concatenate(rlo), np.concatenate(rhi),
          np.concatenate([np.ones(m, bool), np.zeros(q, bool)]), False)
    if warm:
        x = np.zeros(m)
        x[warm] = 1.0
        cols = [x]
        if q:
            cols.append(np.minimum(1.0, inst.A[np.flatnonzero(~mand)] @ x))
        start = highspy.HighsSolution()
        start.col_value = np.concatenate(cols).tolist()
        start.value_valid = True
        h.setSolution(start)
    build = time.perf_counter() - t0
    h.run()
    return _finish(h, m, t0, build, False)
