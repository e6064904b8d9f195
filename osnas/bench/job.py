"""Benchmark section ``job``: the end-to-end job that OSNASLib ran too (issue 17), per phase.

ProxylessNAS space at width 0.5 with 2 blocks per stage, digits at 32x32, uniform sampling for
5 supernet epochs, evolution 16 x 4 with 8 parents under 22 M MACs, 10 final epochs: the
quickstart config with the input size, epochs and budget changed. After the run, its search is
replayed on the trained supernet with and without the prefix cache (taking turns), so the
search-phase ratio comes from one process with identical results checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from osnas.artifacts import SUPERNET
from osnas.bench.suite import Figure, compare_searches, end_to_end
from osnas.search_spaces.supernet import Supernet

JOB = ("dataflow.input_size=32", "supernet.epochs=5", "final.epochs=10", "constraint.max=22.0",
       "lookup_table.latency=false")
# OSNASLib on the same job, same machine (issue 17): seconds per phase, low and high of two runs
OSNASLIB_TOTAL_S = (111.0, 115.0)
OSNASLIB_SEARCH_S = (9.0, 11.0)


def replay_search(device: torch.device) -> Any:
    """``inspect`` hook for :func:`end_to_end`: the run's search again, as before issue 17 and as now."""

    def inspect(cfg: Any, run_path: Path) -> dict[str, Any]:
        from osnas.components import build_components
        from osnas.run_dir import load_checkpoint

        comp = build_components(cfg, device, None)
        supernet = Supernet(comp.definition).to(device)
        supernet.load_state_dict(load_checkpoint(run_path / SUPERNET)["model"])
        runs = compare_searches(supernet, cfg, comp, device)
        return {"replay_old_s": runs["issue17"]["seconds"], "replay_plain_s": runs["plain"]["seconds"],
                "replay_cached_s": runs["cached"]["seconds"],
                "replay_new_s": runs["default"]["seconds"], "replay_evaluated": runs["default"]["evaluated"],
                "replay_hit_rate": runs["default"]["cache"]["hit_rate"]}

    return inspect


def job_figures(device: torch.device) -> list[Figure]:
    root = Path(__file__).resolve().parents[2]
    m = end_to_end(root / "configs" / "quickstart.yaml", device, JOB, replay_search(device))
    phases = ("lookup_table", "supernet", "search", "final", "test")
    total = sum(m.get(p, 0.0) for p in phases)
    reference = sum(OSNASLIB_TOTAL_S) / 2
    text = ", ".join(f"{p} {m[p]:.1f} s" for p in phases if p in m)
    search = m["replay_new_s"] / m["replay_old_s"]
    return [
        Figure("job", "OSNASLib job (proxylessnas w0.5, digits 32x32, 5+10 epochs, evolution 16x4): total vs "
                      f"OSNASLib {OSNASLIB_TOTAL_S[0]:.0f}-{OSNASLIB_TOTAL_S[1]:.0f} s",
               f"{text}; total {total:.1f} s; test top-1 {m['test_top1']:.2f} %, {m['macs_m']:.1f} M MACs",
               total / reference, "<= 0.80", total / reference <= 0.80),
        Figure("job", f"search phase replayed on the trained supernet ({m['replay_evaluated']} evaluations): "
                      "now (channels_last on CPU, prefix cache, merged forwards) vs when issue 17 was filed",
               f"{m['replay_new_s']:.1f} vs {m['replay_old_s']:.1f} s (today's evaluator with cache, layout and "
               f"merging off: {m['replay_plain_s']:.1f} s, {m['replay_new_s'] / m['replay_plain_s']:.2f}x; with the "
               f"prefix cache alone, identical scores: {m['replay_cached_s']:.1f} s, {m['replay_hit_rate']:.0%} of "
               f"layers reused; OSNASLib {OSNASLIB_SEARCH_S[0]:.0f}-{OSNASLIB_SEARCH_S[1]:.0f} s)",
               search, "<= 0.50", search <= 0.50),
    ]
