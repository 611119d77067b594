"""Checkpoints of earlier releases, read into today's schema.

Today: ``{kind, format, config, networks: {name: {config, state}}, extra, training}``.
Before format 3, NeuroSQL and the baselines had a schema each: NeuroSQL kept its
generator, codes and training state at the top level; the baselines kept their
networks but no training state (they could not be resumed).
"""

from __future__ import annotations

COMMON = ("image_shape", "train_index", "data_digest", "log", "epochs_run", "budget", "updates")


def upgrade_checkpoint(state: dict) -> dict:
    """``state`` in today's schema (unchanged when it already is)."""
    if "extra" in state:
        return state
    if "networks" in state:  # a baseline
        extra = {key: value for key, value in state.items() if key not in ("kind", "format", "config", "networks")}
        return {**_head(state), "networks": state["networks"], "extra": extra, "training": None}
    return _upgrade_neurosql(state)


def _head(state: dict) -> dict:
    return {"kind": state["kind"], "format": state.get("format"), "config": state["config"]}


def _upgrade_neurosql(state: dict) -> dict:
    extra = {key: state.get(key) for key in (*COMMON, "lattice", "codes", "perm", "labels")}
    extra["updates"] = state["optimization"]["updates"]
    best = state.get("best")
    if best is not None:
        best = {"networks": {"generator": best["generator"]}, "codes": best["codes"], "perm": best["perm"]}
    return {
        **_head(state),
        "networks": {"generator": {"config": state["generator_config"], "state": state["generator"]}},
        "extra": extra,
        "training": {
            "optimizations": [state["optimization"]],
            "averages": [state["average"]] if state.get("average") else [],
            "early_stopping": state["early_stopping"],
            "best": best,
            "rng": state["rng"],
        },
    }
