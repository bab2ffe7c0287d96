"""Fast solvers on a reduced `Instance`: lazy greedy (a heap of stale gains), swap local search, and a
Lagrangian upper bound for maximal coverage. numpy/scipy only: every gain is a sparse product, never a dense loop
over demand × candidates."""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from anfang.siting.problem import Instance


class BudgetTooSmall(ValueError):
    """The budget cannot cover every mandatory demand point; `needed` is the heuristic's count of cameras."""

    def __init__(self, budget: int, needed: int) -> None:
        self.budget, self.needed = budget, needed
        super().__init__(f"预算 {budget} 台不足以覆盖全部必须覆盖点（路口、出入口），至少需要约 {needed} 台 / "
                         f"a budget of {budget} cameras cannot cover every mandatory point (intersections, entrances); "
                         f"about {needed} are needed")


def covered_weight(inst: Instance, selected: np.ndarray | list[int]) -> float:
    x = np.zeros(inst.m, bool)
    x[np.asarray(selected, int)] = True
    return float(inst.w[(inst.A @ x) > 0].sum())


def _rows_of(inst: Instance, j: int) -> np.ndarray:
    return inst.At.indices[inst.At.indptr[j]:inst.At.indptr[j + 1]]


def lazy_greedy(inst: Instance, p: int | None, *, pinned: list[int] | None = None,
                excluded: list[int] | None = None, mandatory: bool = True, target: float | None = None) -> list[int]:
    """Greedy by marginal covered weight, with lazy re-evaluation (gains only shrink, so a popped gain that is still
    the largest after recomputing is the true best).

    First the mandatory rows are covered (greedy set cover: most uncovered mandatory rows first, weight breaks
    ties), then weight is maximised until `p` cameras are placed (`p=None`: no limit) or `target` weight reached.
    Raises BudgetTooSmall when the mandatory rows need more than `p` cameras.
    """
    pinned = list(dict.fromkeys(pinned or []))
    allowed = np.ones(inst.m, bool)
    allowed[list(excluded or [])] = False
    covered = np.zeros(inst.r, bool)
    chosen: list[int] = []

    def take(j: int) -> None:
        chosen.append(j)
        allowed[j] = False
        covered[_rows_of(inst, j)] = True

    for j in pinned:
        take(j)
    limit = np.inf if p is None else p
    if p is not None and len(chosen) > p:
        raise ValueError(f"固定点位 {len(chosen)} 个多于预算 {p} / {len(chosen)} pinned sites exceed the budget {p}")
    w = inst.w
    mand = inst.mandatory & mandatory

    if (mand & ~covered).any():
        mg0 = inst.At @ (mand & ~covered).astype(float)
        wg0 = inst.At @ np.where(covered, 0.0, w)
        heap = [(-mg0[j], -wg0[j], j) for j in np.flatnonzero(allowed & (mg0 > 0))]
        heapq.heapify(heap)
        while heap and (mand & ~covered).any():
            _, _, j = heapq.heappop(heap)
            rows = _rows_of(inst, j)
            un = rows[~covered[rows]]
            key = (-float(mand[un].sum()), -float(w[un].sum()), j)
            if key[0] == 0:
                continue
            if not heap or key <= heap[0]:
                if len(chosen) >= limit:
                    needed = len(lazy_greedy(inst, None, pinned=pinned, excluded=excluded, mandatory=mandatory))
                    raise BudgetTooSmall(int(p or 0), needed)
                take(j)
            else:
                heapq.heappush(heap, key)
    if p is None and target is None:
        return chosen

    goal = np.inf if target is None else target
    wg0 = inst.At @ np.where(covered, 0.0, w)
    heap2 = [(-wg0[j], j) for j in np.flatnonzero(allowed & (wg0 > 0))]
    heapq.heapify(heap2)
    total = float(w[covered].sum())
    while heap2 and len(chosen) < limit and total < goal - 1e-9:
        _, j = heapq.heappop(heap2)
        rows = _rows_of(inst, j)
        g = float(w[rows[~covered[rows]]].sum())
        if g <= 0:
            continue
        if not heap2 or (-g, j) <= heap2[0]:
            take(j)
            total += g
        else:
            heapq.heappush(heap2, (-g, j))
    return chosen


def drop_redundant(inst: Instance, chosen: list[int], locked: set[int] | None = None) -> list[int]:
    """Remove cameras whose every mandatory row is covered by another chosen camera (for set cover), smallest
    covered weight first."""
    locked = locked or set()
    x = np.zeros(inst.m, bool)
    x[chosen] = True
    cnt = np.asarray(inst.A @ x.astype(np.int64)).ravel()
    order = sorted(chosen, key=lambda j: float(inst.w[_rows_of(inst, j)].sum()))
    keep = set(chosen)
    for j in order:
        if j in locked:
            continue
        rows = _rows_of(inst, j)
        if np.all(cnt[rows[inst.mandatory[rows]]] >= 2):
            keep.discard(j)
            cnt[rows] -= 1
    return [j for j in chosen if j in keep]


def local_search(inst: Instance, chosen: list[int], *, locked: list[int] | None = None,
                 excluded: list[int] | None = None, mandatory: bool = True, time_limit: float = 10.0,
                 max_moves: int = 10_000) -> list[int]:
    """Best-improvement swap (interchange) search: drop one camera, add another, while the covered weight grows
    and every mandatory row stays covered. All p × m swap values come from three sparse products per move:

        delta[j, k] = gain[k] − loss[j] + Σ_i w_i · [i covered only by j] · A[i, k]
    """
    t0 = time.perf_counter()
    x = np.zeros(inst.m, bool)
    x[chosen] = True
    lockset = set(locked or [])
    banned = np.zeros(inst.m, bool)
    banned[list(excluded or [])] = True
    mand = inst.mandatory & mandatory
    w = inst.w
    A = inst.A
    eps = 1e-9 * max(1.0, float(w.sum()))
    for _ in range(max_moves):
        if time.perf_counter() - t0 > time_limit:
            break
        sel = np.flatnonzero(x)
        if len(sel) == 0:
            break
        cnt = np.asarray(A @ x.astype(np.int64)).ravel()
        gain = inst.At @ np.where(cnt == 0, w, 0.0)
        As = A[:, sel]  # (r, p)
        sole = cnt == 1
        S = sparse.csr_matrix(As.T.multiply(np.where(sole, w, 0.0)[None, :]))  # (p, r)
        loss = np.asarray(S.sum(axis=1)).ravel()
        delta = (S @ A).toarray()  # (p, m)
        delta += gain[None, :] - loss[:, None]
        if mand.any():
            Sm = sparse.csr_matrix(As.T.multiply((sole & mand).astype(float)[None, :]))
            need = np.asarray(Sm.sum(axis=1)).ravel()
            kept = (Sm @ A).toarray()
            delta[kept < need[:, None] - 0.5] = -np.inf
        delta[:, x | banned] = -np.inf
        for q, j in enumerate(sel):
            if j in lockset:
                delta[q, :] = -np.inf
        q, k = np.unravel_index(int(np.argmax(delta)), delta.shape)
        if not delta[q, k] > eps:
            break
        x[sel[q]] = False
        x[k] = True
    keep = [j for j in chosen if x[j]]
    return keep + [int(j) for j in np.flatnonzero(x) if j not in set(chosen)]


def perturb_search(inst: Instance, chosen: list[int], p: int, *, locked: list[int] | None = None,
                   excluded: list[int] | None = None, time_limit: float = 3.0, share: float = 0.05,
                   seed: int = 9, max_fail: int = 200, stop_at: float = np.inf) -> list[int]:
    """Iterated local search: drop a random `share` of the free sites, refill greedily, swap-search; keep the
    result when it covers more. Stops after `time_limit` seconds, `max_fail` kicks in a row without gain, or on
    reaching `stop_at` (a proven bound)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    locked = list(locked or [])
    best, best_v = list(chosen), covered_weight(inst, chosen)
    free = [j for j in best if j not in set(locked)]
    if not free:
        return best
    fails = 0
    while time.perf_counter() - t0 < time_limit and fails < max_fail and best_v < stop_at - 1e-9:
        fails += 1
        free = [j for j in best if j not in set(locked)]
        k = max(1, int(len(free) * share))
        drop = set(rng.choice(free, size=min(k, len(free)), replace=False).tolist())
        keep = [j for j in best if j not in drop]
        try:
            cand = lazy_greedy(inst, p, pinned=keep, excluded=list(excluded or []) + list(drop))
        except BudgetTooSmall:  # the kick removed the only way to cover some mandatory point within budget
            continue
        cand = local_search(inst, cand, locked=locked, excluded=excluded,
                            time_limit=max(0.1, time_limit - (time.perf_counter() - t0)))
        v = covered_weight(inst, cand)
        if v > best_v + 1e-9:
            best, best_v, fails = cand, v, 0
    return best


@dataclass
class LagrangianResult:
    bound: float
    best_selected: list[int]
    best_value: float
    iterations: int
    fix_out: np.ndarray  # candidates in no plan better than best_value (Lagrangian reduced-cost test)
    fix_in: np.ndarray  # candidates in every plan better than best_value


def lagrangian_bound(inst: Instance, p: int, *, pinned: list[int] | None = None, excluded: list[int] | None = None,
                     lower: float = 0.0, iterations: int = 400, time_limit: float = 20.0) -> LagrangianResult:
    """Upper bound on the MCLP optimum by relaxing the coverage rows y_i ≤ Σ_j a_ij x_j with multipliers λ_i:

        L(λ) = Σ_i max(0, w_i − λ_i) + (sum of the p largest c_j),  c_j = Σ_i a_ij λ_i

    minimised by subgradient steps (Held–Karp step size against the best known solution `lower`). Mandatory rows
    are relaxed with their own multipliers. Each iteration's x (the top p) is also a plan; the best is returned.
    """
    t0 = time.perf_counter()
    pinned = list(dict.fromkeys(pinned or []))
    free = np.ones(inst.m, bool)
    free[pinned] = False
    free[list(excluded or [])] = False
    free_idx = np.flatnonzero(free)
    k = max(0, min(p - len(pinned), len(free_idx)))
    w = inst.w
    mand = inst.mandatory
    lam = w.copy()  # L(w) = the p best single-camera coverages: the trivial bound
    mu = np.zeros(inst.r)
    best_bound = np.inf
    best_val, best_sel = lower, []
    best_c = np.zeros(inst.m)
    theta = 2.0
    stall = 0
    it = 0
    for it in range(1, iterations + 1):  # noqa: B007
        c = inst.At @ np.where(mand, mu, lam)
        const = float(np.where(mand, w - mu, np.maximum(0.0, w - lam)).sum())
        if k:
            top = free_idx[np.argpartition(-c[free_idx], k - 1)[:k]]
        else:
            top = np.empty(0, int)
        sel = np.concatenate([np.asarray(pinned, int), top]).astype(int)
        val_L = const + float(c[sel].sum())
        if val_L < best_bound - 1e-9:
            best_bound, stall, best_c = val_L, 0, c
        else:
            stall += 1
            if stall >= 20:
                theta, stall = theta / 2, 0
        x = np.zeros(inst.m)
        x[sel] = 1
        ax = inst.A @ x
        val = float(w[ax > 0].sum()) if not (mand & (ax == 0)).any() else -np.inf
        if val > best_val:
            best_val, best_sel = val, sel.tolist()
        y = (~mand) & (w > lam)
        g = ax - y  # subgradient for λ (non-mandatory) and for μ: ax - 1
        g = np.where(mand, ax - 1.0, g)
        gap = best_bound - max(best_val, lower)
        norm = float((g * g).sum())
        if norm == 0 or gap <= 1e-9 * max(1.0, best_bound) or theta < 1e-4:
            break
        step = theta * gap / norm
        lam = np.clip(lam - step * g, 0.0, w)
        mu = np.maximum(0.0, mu - step * g)
        if time.perf_counter() - t0 > time_limit:
            break
    best_bound = min(best_bound, float(w.sum()))  # covering everything is the trivial bound
    # Reduced-cost fixing at the best multipliers: forcing j in (or out) changes L by a known amount; when the
    # changed bound cannot beat the best plan known, no better plan has j in (or out).
    fix_out = np.zeros(inst.m, bool)
    fix_in = np.zeros(inst.m, bool)
    lb = max(best_val, lower)
    if 0 < k < len(free_idx) and np.isfinite(best_bound):
        cf = best_c[free_idx]
        order = np.argsort(-cf)
        kth, next_ = cf[order[k - 1]], cf[order[k]]
        tol = 1e-9 * max(1.0, abs(best_bound))
        out_mask = np.zeros(len(free_idx), bool)
        out_mask[order[k:]] = best_bound - kth + cf[order[k:]] < lb - tol
        in_mask = np.zeros(len(free_idx), bool)
        in_mask[order[:k]] = best_bound - cf[order[:k]] + next_ < lb - tol
        fix_out[free_idx[out_mask]] = True
        fix_in[free_idx[in_mask]] = True
    return LagrangianResult(float(best_bound), best_sel, float(best_val), it, fix_out, fix_in)
