"""Flows: a job that waits for other jobs (its children, on any queues of the kit) and then runs
with their outcomes. :class:`Node` describes one job of a flow and its children; ``chain``,
``group`` and ``chord`` build trees of nodes the way Celery's canvas does; ``add_flow`` on a queue
writes them (no I/O here but through the queue's executor).

How it holds together (see ``docs/design.md``, *Flows*):

- A parent is added before its children, level by level (one add call per queue and level; one
  call in all when every node is on one queue, so such a flow is added atomically). It waits in
  ``waiting_children`` with its count of unresolved children (``dep``) and the list of them
  (``kids``); each child's hash names its parent (``par``).
- A child that ends leaves a notice in its own queue's slot, in the same script call that ends
  it; a worker of that queue sends the notice to the parent's queue (``queue_child.lua``) and
  deletes it. A notice sent twice (a lost reply, a crash before the delete, two workers) is
  recorded once: the parent holds one outcome per child and attempt.
- Job ids are drawn when the flow is added, before anything is written, so an add whose reply
  was lost can be sent again as it is.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ._options import JobOptions
from ._records import ChildResult, new_ids

__all__ = ["ChildResult", "Group", "Node", "chain", "chord", "group"]

POLICIES = {"fail": "f", "ignore": "i", "continue": "c"}
_PAR = re.compile(r"([fic])(\d+):(\d+):")
MAX_NODES = 100_000  # jobs one add_flow call may write


@dataclass(frozen=True)
class Node:
    """One job of a flow: what runs (``name`` and ``data`` on ``queue``), with which options, and
    the children it waits for. Made by ``task.s(...)``, ``task.si(...)`` or ``queue.node(...)``;
    immutable (each method returns a new node)."""

    queue: Any
    name: str
    data: Any
    options: JobOptions
    children: tuple[Node, ...] = ()
    policy: str = "fail"
    """What a failure (or cancellation) of this job does to its parent: ``fail`` (the parent
    fails without running), ``ignore`` (counted as resolved; the parent runs and sees it in
    ``current_job().children``) or ``continue`` (the parent runs at once)."""
    results: str | None = None
    """How the parent, a task, takes its children's results as its first argument: ``one`` (the
    result of its only child: ``chain``), ``all`` (the list of them: ``chord``) or ``None``."""
    takes_results: bool = True
    """False for ``task.si(...)`` and ``queue.node(...)``: ``chain`` and ``chord`` pass nothing."""

    def after(self, *children: Node | Group) -> Node:
        """This job, run once ``children`` (nodes or groups, on any queues) have ended; it reads
        their outcomes in ``current_job().children``."""
        return replace(self, children=self.children + _nodes(children))

    def on_failure(self, policy: str) -> Node:
        """This job with a failure policy towards its parent: ``"fail"`` (the default),
        ``"ignore"`` or ``"continue"``."""
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        return replace(self, policy=policy)

    def __repr__(self) -> str:
        kids = f", {len(self.children)} children" if self.children else ""
        return f"<Node {self.name!r} on {self.queue.name!r}{kids}>"


@dataclass(frozen=True)
class Group:
    """Jobs that run side by side: added together by ``add_flow`` (a list of handles back), or
    the children of a ``chord``'s callback."""

    nodes: tuple[Node, ...]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)


def group(*nodes: Node | Group | Iterable[Node]) -> Group:
    """Jobs run side by side (Celery's ``group``)."""
    flat: list[Node] = []
    for item in nodes:
        if isinstance(item, (Node, Group)):
            flat.extend(_nodes((item,)))
        else:
            flat.extend(_nodes(tuple(item)))
    if not flat:
        raise ValueError("a group needs at least one job")
    return Group(tuple(flat))


def chord(header: Group | Iterable[Node], body: Node) -> Node:
    """``body`` runs once every job of ``header`` has ended; a task made with ``.s()`` gets the
    list of their results (in ``header``'s order) as its first argument (Celery's ``chord``)."""
    nodes = header.nodes if isinstance(header, Group) else group(*header).nodes
    if not isinstance(body, Node):
        raise TypeError(f"a chord's body is a Node (task.s(...)), not {type(body).__name__}")
    return replace(
        body,
        children=body.children + nodes,
        results="all" if body.takes_results and not body.children else body.results,
    )


def chain(*steps: Node | Group) -> Node:
    """Each step runs once the one before it has ended; a task made with ``.s()`` gets the result
    of the step before as its first argument (a group before it: the list of its results, as a
    chord). Returns the last step, the root of the flow."""
    if not steps:
        raise ValueError("a chain needs at least one step")
    acc: Node | Group = steps[0]
    for n, step in enumerate(steps[1:], 2):
        if isinstance(step, Group) and n == len(steps):
            raise TypeError("a chain cannot end with a group: add a job after it (a chord)")
        if isinstance(step, Group):
            raise TypeError(
                "a group can only start a chain or come before a job in it (a chord): each of "
                "its jobs would need the previous step as its own child"
            )
        if not isinstance(step, Node):
            raise TypeError(f"a chain's steps are nodes or groups, not {type(step).__name__}")
        if step.children:
            raise TypeError(f"{step!r} already has children: it cannot follow in a chain")
        kids = acc.nodes if isinstance(acc, Group) else (acc,)
        mode = ("all" if isinstance(acc, Group) else "one") if step.takes_results else None
        acc = replace(step, children=kids, results=mode)
    if isinstance(acc, Group):
        raise TypeError("a chain cannot end with a group: add a job after it (a chord)")
    return acc


def _nodes(items: Sequence[Any]) -> tuple[Node, ...]:
    out: list[Node] = []
    for item in items:
        if isinstance(item, Group):
            out.extend(item.nodes)
        elif isinstance(item, Node):
            out.append(item)
        else:
            raise TypeError(f"a flow's jobs are nodes (task.s(...)), not {type(item).__name__}")
    return tuple(out)


# -- writing a flow ---------------------------------------------------------------------------
@dataclass
class Placed:
    """One job of a flow being added: its node, id, level and the add script's arguments."""

    node: Node
    id: str
    level: int
    args: list[Any]


def plan(kit: Any, roots: Sequence[Node]) -> list[Placed]:
    """Every job of the trees under ``roots``, ids drawn and arguments made, parents before their
    children; everything is checked before anything is sent."""
    placed: list[Placed] = []
    pending = deque((root, 0, "") for root in roots)
    seen_ids: set[tuple[str, str]] = set()
    while pending:
        node, level, par = pending.popleft()
        if len(placed) >= MAX_NODES:
            raise ValueError(f"a flow holds at most {MAX_NODES} jobs")
        queue = node.queue
        if getattr(queue, "_kit", None) is not kit:
            raise ValueError(f"{node!r} is on a queue of another kit: a flow is on one kit")
        opts = node.options
        if opts.dedup is not None:
            raise ValueError(f"{node!r}: a job of a flow cannot have a dedup id")
        if node.children and opts.delay:
            raise ValueError(f"{node!r}: a job with children cannot be delayed (delay a child)")
        job_id = opts.job_id or new_ids.next()
        if (queue.name, job_id) in seen_ids:
            raise ValueError(f"job id {job_id!r} is used twice in this flow")
        seen_ids.add((queue.name, job_id))
        kids_ids = [c.options.job_id or new_ids.next() for c in node.children]
        extra: dict[str, Any] = {}
        if node.children:
            extra["kn"] = len(node.children)
            if node.results is not None:
                extra["pr"] = node.results
        kids = [[c.queue.name, cid] for c, cid in zip(node.children, kids_ids)]
        args = queue._core.prepare_node(node.name, node.data, opts, job_id, par, kids, extra)
        placed.append(Placed(node, job_id, level, args))
        for index, (child, cid) in enumerate(zip(node.children, kids_ids)):
            # the parent's queue, named unless it is the child's own (then told in-script)
            where = "" if child.queue.name == queue.name else queue.name
            ref = f"{POLICIES[child.policy]}{index}:{len(where)}:{where}{job_id}"
            child = replace(child, options=replace(child.options, job_id=cid))
            pending.append((child, level + 1, ref))
    return placed


def batches(placed: Sequence[Placed]) -> list[tuple[Any, list[list[Any]]]]:
    """The add calls of a flow, in order: per level, per queue (parents before children); all
    in one when every job is on one queue."""
    queues = {p.node.queue.name for p in placed}
    out: list[tuple[Any, list[list[Any]]]] = []
    if len(queues) == 1:
        return [(placed[0].node.queue, [p.args for p in placed])]
    by_level: dict[tuple[int, str], tuple[Any, list[list[Any]]]] = {}
    for p in placed:
        entry = by_level.setdefault((p.level, p.node.queue.name), (p.node.queue, []))
        entry[1].append(p.args)
    for key in sorted(by_level, key=lambda k: k[0]):
        out.append(by_level[key])
    return out


def parse_parent(par: str) -> tuple[str, str, int, str] | None:
    """The parent queue ('' for the child's own), parent id, child index and policy letter
    of a child's ``par``."""
    m = _PAR.match(par)
    if m is None:
        return None
    size = int(m.group(3))
    rest = par[m.end() :]
    if len(rest) <= size:
        return None  # (size 0: the parent is on the child's own queue)
    return rest[:size], rest[size:], int(m.group(2)), m.group(1)
