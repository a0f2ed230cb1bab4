"""A soak's history on disk (gzipped JSON lines), to check it again later: a saved run
can be judged by a newer checker, or read by hand, long after its nodes are gone."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from ._history import Fault, Kind, NodeEvent, Op, Probe, Reply, Status

FORMAT = 1


def _op(op: Op) -> list[Any]:
    return [
        op.process,
        op.worker,
        op.sid,
        op.kind.value,
        op.status.value,
        op.start,
        op.end,
        op.value,
        sorted(op.nodes),
        op.served_by,
        op.detail,
        [[r.node, r.command, r.status, r.elapsed] for r in op.replies],
    ]


def _from_op(row: list[Any]) -> Op:
    (process, worker, sid, kind, status, start, end, value, nodes, served, detail, replies) = row
    return Op(
        process,
        worker,
        sid,
        Kind(kind),
        Status(status),
        start,
        end,
        value,
        frozenset(nodes),
        served,
        detail,
        tuple(Reply(*reply) for reply in replies),
    )


def save(
    path: Path,
    header: dict[str, Any],
    ops: tuple[Op, ...],
    events: tuple[NodeEvent, ...],
    probes: tuple[Probe, ...] = (),
) -> None:
    """Write ``header`` (any JSON values: the scenario, the nodes, the seed...), then
    every node event, probe and op, one JSON line each."""
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.write(json.dumps({"format": FORMAT, **header}) + "\n")
        for event in events:
            out.write(json.dumps(["event", event.node, event.fault.value, event.start, event.end]))
            out.write("\n")
        for p in probes:
            row = ["probe", p.process, p.node, p.claimed, p.start, p.end, p.status]
            out.write(json.dumps(row) + "\n")
        for op in ops:
            out.write(json.dumps(["op", *_op(op)]) + "\n")


def load(
    path: Path,
) -> tuple[dict[str, Any], tuple[Op, ...], tuple[NodeEvent, ...], tuple[Probe, ...]]:
    """The header, ops, node events and probes written by :func:`save` (a history
    saved before probes were recorded has none)."""
    ops: list[Op] = []
    events: list[NodeEvent] = []
    probes: list[Probe] = []
    with gzip.open(path, "rt", encoding="utf-8") as found:
        header = json.loads(next(found))
        if header.get("format") != FORMAT:
            raise ValueError(f"{path}: not a soak history of format {FORMAT}")
        for line in found:
            row = json.loads(line)
            if row[0] == "event":
                node, fault, start, end = row[1:]
                events.append(NodeEvent(node, Fault(fault), start, end))
            elif row[0] == "probe":
                probes.append(Probe(*row[1:]))
            else:
                ops.append(_from_op(row[1:]))
    return header, tuple(ops), tuple(events), tuple(probes)
