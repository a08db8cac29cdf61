#!/usr/bin/env python3
"""Pools the runs of several `make bench` results (bench-N.json files) by N: the convergence and
POST-floor samples of every file together, their ratio of medians with a 90% bootstrap interval,
the paired ratio (each convergence against its own run's floor) and the watched floor against
both. For judging the 1.10x gate across benches when one bench's five runs cannot resolve it.

  python3 hack/bench-pool.py bench/results/bench-1000.json old/bench-1000.json ...
  (an earlier commit's results: git show COMMIT:bench/results/bench-3000.json > old/bench-3000.json)
"""
import json
import random
import statistics as st
import sys

pool = {}
for path in sys.argv[1:]:
    with open(path) as f:
        d = json.load(f)
    if d.get("fleet"):
        continue
    pool.setdefault(d["namespaces"], []).append(d)

rng = random.Random(1)
print("| N | benches (commit: ratio) | runs | convergence / POST floor | 90% bootstrap | paired | watched / POST floor | convergence / watched |")
print("|---|---|---|---|---|---|---|---|")
for n, benches in sorted(pool.items()):
    floors = [x for d in benches for x in d["floor_post_seconds"]["samples"]]
    convs = [x for d in benches for x in d["convergence_seconds"]["samples"]]
    paired = [c / f for d in benches for c, f in zip(d["convergence_seconds"]["samples"], d["floor_post_seconds"]["samples"])]
    watched_in = [d for d in benches if "floor_post_watched_seconds" in d]
    watched = [x for d in watched_in for x in d["floor_post_watched_seconds"]["samples"]]
    floors_w = [x for d in watched_in for x in d["floor_post_seconds"]["samples"]]
    convs_w = [x for d in watched_in for x in d["convergence_seconds"]["samples"]]
    boot = sorted(
        st.median(rng.choices(convs, k=len(convs))) / st.median(rng.choices(floors, k=len(floors)))
        for _ in range(4000)
    )
    each = ", ".join(f"{d.get('commit', '?')[:7]}: {d['convergence_ratio']:.2f}x" for d in benches)
    w = f"{st.median(watched) / st.median(floors_w):.2f}x | {st.median(convs_w) / st.median(watched):.2f}x" if watched else "- | -"
    print(f"| {n} | {each} | {len(convs)} | {st.median(convs) / st.median(floors):.2f}x | {boot[200]:.2f}-{boot[3800]:.2f}x | {st.median(paired):.2f}x | {w} |")
