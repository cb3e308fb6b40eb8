"""CPU per item of each server-side stage of a 1,000-item BatchSendMessages, without I/O.

Issue 20 asks what each removed per-call cost was worth. The h2load rates (bench_h2load.py)
move by 2x with the machine's other load, so this script measures the stages on their own, in
this process's CPU time (time.process_time), and, with --against REV, the same stages of the
code at git revision REV in the same run (a `git archive` of REV's source, run in a child
process with PYTHONPATH pointing at it), alternating the two so that both see the same machine.

Stages, per item of a 1,000-item request (text content, one scheduled time, 50 conversations,
no request_id: what bench_h2load.py sends):
- decode: the request's bytes parsed (FromString)
- validate: runtime.validation.RequestValidator.check (enum numbers, Timestamps, Structs)
- handler: MessageServiceHandler.BatchSendMessages with the use case replaced by one that
  accepts every item at once (so: the items decoded into SendRequests, and the answer built)
- checks: MessageUseCases._check_send, SendMessage's own checks, per item
- SQL: the group commit's multi-row INSERT rendered (MultiRowInsert's literal statements)
- encode: the answer serialized (SerializeToString)

    .venv/bin/python bench/bench_batch_stages.py [--against 7cb37b6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ITEMS = 1000
STAGES = ("decode", "validate", "handler", "checks", "SQL", "encode")


def measure(repeats: int) -> dict[str, float]:
    """Microseconds of CPU per item for each stage: the median of `repeats` runs."""
    from pymysql.converters import escape_string
    from sqlalchemy.dialects import mysql
    from wework.domain.access import Principal, PrincipalKind
    from wework.domain.messages import Message
    from wework.persistence import bulk
    from wework.persistence.ids import new_id
    from wework.persistence.repositories import messages as repository
    from wework.server.application.messages import MessageUseCases
    from wework.server.handlers.message import MessageServiceHandler
    from wework.server.runtime.context import RequestContext, bind_request
    from wework.server.runtime.validation import RequestValidator
    from wework.v1 import message_pb2 as pb

    now = datetime.now(UTC)
    later = int(time.time()) + 86400

    def send(i: int) -> pb.SendMessageRequest:
        request = pb.SendMessageRequest(account_id=new_id(), conversation_id=f"wmbench{i % 50}",
                                        content=pb.MessageContent(text=pb.TextContent(text="benchmark message")))
        request.scheduled_time.FromSeconds(later)
        return request

    data = pb.BatchSendMessagesRequest(requests=[send(i) for i in range(ITEMS)]).SerializeToString()
    request = pb.BatchSendMessagesRequest.FromString(data)

    def accepted(req) -> Message:
        return Message(id=new_id(), tenant_id="t1", account_id=req.account_id, conversation_id=req.conversation_id,
                       message_type=req.message_type, content=req.content, created_at=now, updated_at=now,
                       priority=5, scheduled_time=req.scheduled_time)

    class AcceptAll:
        """The use case, replaced: every item accepted as the group commit would answer it."""

        async def send_messages(self, principal, reqs, atomic=False):
            return [accepted(req) for req in reqs]

    handler = MessageServiceHandler(AcceptAll(), None, None)  # type: ignore[arg-type]
    bind_request(RequestContext(trace_id="0" * 32, principal=Principal(
        PrincipalKind.API_KEY, "bench", "t1", frozenset({"*"}))))
    loop = asyncio.new_event_loop()
    answer = loop.run_until_complete(handler.BatchSendMessages(request, None))
    use_cases = MessageUseCases.__new__(MessageUseCases)
    use_cases._max_schedule = timedelta(days=30)
    from wework.server.handlers.message import send_request_from_pb
    reqs = [send_request_from_pb(r) for r in request.requests]
    rows = [repository._new_message_values(accepted(r)) for r in reqs]
    plan = repository._NEW_MESSAGE_INSERT._plan(mysql.dialect())
    processors, head = plan[0], plan[1]
    # The columns' memo groups (a fifth element since the group commit shares one memo per
    # column type); an older revision's plan (--against) has four.
    shared = plan[4:5]
    validator = RequestValidator()

    stages = {
        "decode": lambda: pb.BatchSendMessagesRequest.FromString(data),
        "validate": lambda: validator.check(request),
        "handler": lambda: loop.run_until_complete(handler.BatchSendMessages(request, None)),
        "checks": lambda: [use_cases._check_send(r, now) for r in reqs],
        "SQL": lambda: list(bulk._literal_statements(head, processors, escape_string, rows, 500, *shared)),
        "encode": lambda: answer.SerializeToString(),
    }
    out = {}
    for name, stage in stages.items():
        stage()  # warm: caches, lazily built plans
        runs = []
        for _ in range(repeats):
            started = time.process_time()
            stage()
            runs.append(time.process_time() - started)
        runs.sort()
        out[name] = 1e6 * runs[len(runs) // 2] / ITEMS
    loop.close()
    return out


def export(rev: str, into: Path) -> dict[str, str]:
    """REV's servers/, persistence/ and clients/ under `into`; the environment to import them."""
    archive = into / "src.tar"
    with archive.open("wb") as f:
        subprocess.run(["git", "-C", str(ROOT), "archive", rev, "servers", "persistence", "clients"],
                       stdout=f, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    path = os.pathsep.join(str(into / part) for part in ("servers", "persistence", "clients"))
    return {**os.environ, "PYTHONPATH": path}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", default="", help="git revision to measure beside this tree")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two (default 3)")
    parser.add_argument("--repeats", type=int, default=15, help="runs per stage and round (default 15)")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # the child's output
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args.repeats)))
        return 0
    best: dict[str, dict[str, float]] = {"this tree": {}, args.against: {}} if args.against else {"this tree": {}}
    with tempfile.TemporaryDirectory(prefix="wwbench-stages-") as tmp:
        env = export(args.against, Path(tmp)) if args.against else None
        for _ in range(args.rounds):
            for label, kept in best.items():
                if label == "this tree":
                    figures = measure(args.repeats)
                else:
                    done = subprocess.run([sys.executable, __file__, "--json", "--repeats", str(args.repeats)],
                                          env=env, capture_output=True, text=True, check=True)
                    figures = json.loads(done.stdout.splitlines()[-1])
                for name, us in figures.items():
                    kept[name] = min(us, kept.get(name, us))
    print(f"BatchSendMessages, {ITEMS} items: CPU microseconds per item by stage (best of {args.rounds} rounds, "
          f"median of {args.repeats} runs each; {os.cpu_count()} CPU(s))")
    labels = list(best)
    print(f"{'stage':10}" + "".join(f"{label:>14}" for label in reversed(labels))
          + ("     ratio" if len(labels) == 2 else ""))
    for name in [*STAGES, "total"]:
        values = [sum(best[label].values()) if name == "total" else best[label][name] for label in reversed(labels)]
        ratio = f"{values[1] / values[0]:>10.2f}" if len(values) == 2 and values[0] else ""
        print(f"{name:10}" + "".join(f"{v:>14.2f}" for v in values) + ratio)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
