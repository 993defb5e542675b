"""kill -9 while the store is busy: every committed fact survives, the file stays sound.

The child runs a random mix of what the app does (new conversation, user message,
streamed reply through ReplyWriter, delete) and prints a line after each call returns,
i.e. after the write committed. The parent kills it after a seeded number of lines, then
checks every printed fact against the reopened database. Extends the single-kill test in
tests/engine/store/test_store.py to many seeds and to the mixed workload.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from slmchat.engine.store.store import Store
from tests.trust.counts import record

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import random, sys
    from slmchat.engine.store.store import Store

    rng = random.Random(int(sys.argv[2]))
    store = Store(sys.argv[1])
    convs = []
    while True:
        op = rng.random()
        if not convs or op < 0.1:
            c = store.create_conversation(f"conv {len(convs)}")
            convs.append(c.id)
            print("C", c.id, flush=True)
        elif op < 0.15 and len(convs) > 1:
            gone = convs.pop(rng.randrange(len(convs) - 1))
            print("d", gone, flush=True)  # intent: a kill may land after the commit
            store.delete_conversation(gone)
            print("D", gone, flush=True)
        else:
            cid = convs[-1]
            u = store.add_message(cid, "user", f"question {rng.random()} \\u00e9\\u6f22")
            print("U", cid, u.id, u.content, flush=True)
            m = store.add_message(cid, "assistant", "", status="streaming")
            print("A", cid, m.id, flush=True)
            w = store.reply_writer(m.id, interval=rng.choice([0.0, 0.005, 0.02]))
            written = ""
            for i in range(rng.randrange(5, 60)):
                w.append(f"w{i} ")
                if w._written[0] != written:  # (answer, reasoning) last written
                    written = w._written[0]
                    print("F", m.id, len(written), flush=True)
            w.finish("done")
            print("E", m.id, len(w.text), flush=True)
""")


def _expected_reply(n: int) -> str:
    return "".join(f"w{i} " for i in range(n))


@pytest.mark.parametrize("seed", range(8))
def test_kill_during_chat_writes_loses_nothing_committed(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "c.db"
    rng = random.Random(seed)
    kill_after = rng.randrange(20, 400)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(seed)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        if not line.endswith("\n"):
            break  # cut short by the process dying: incomplete, not a record
        lines.append(line[:-1])
        if len(lines) >= kill_after:
            os.kill(proc.pid, signal.SIGKILL)
            break
    # Lines printed before death report commits too; a last line cut by the kill itself
    # (no newline) is incomplete and is left out rather than misparsed.
    lines += proc.stdout.read().split("\n")[:-1]
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    convs: set[int] = set()
    deleted: set[int] = set()
    deleting: set[int] = set()  # delete begun; committed or not, the kill decides
    users: dict[int, tuple[int, str]] = {}
    replies: dict[int, int] = {}  # msg id -> committed length
    finished: set[int] = set()
    for line in lines:
        kind, *rest = line.split(" ", 3)
        if kind == "C":
            convs.add(int(rest[0]))
        elif kind == "d":
            deleting.add(int(rest[0]))
        elif kind == "D":
            deleted.add(int(rest[0]))
        elif kind == "U":
            users[int(rest[1])] = (int(rest[0]), rest[2])
        elif kind == "A":
            replies[int(rest[1])] = 0
        elif kind in ("F", "E"):
            replies[int(rest[0])] = int(rest[1])
            if kind == "E":
                finished.add(int(rest[0]))

    store = Store(path)  # reopening marks a reply cut by the kill as interrupted
    assert store.integrity_check() == "ok"
    states = lost_rows = lost_bytes = 0
    live = {c.id for c in store.list_conversations()}
    unsure = deleting - deleted  # at most the last op: its "D" line may not have been printed
    assert len(unsure) <= 1
    assert convs - deleted - unsure <= live <= convs - deleted
    deleted |= unsure - live
    states += len(convs)
    by_id = {m.id: m for c in live for m in store.messages(c)}
    for cid in deleted:
        assert store.messages(cid) == []
    for mid, (cid, text) in users.items():
        states += 1
        if cid in deleted:
            continue
        if mid not in by_id:
            lost_rows += 1
            continue
        assert by_id[mid].content == text and by_id[mid].role == "user"
    for mid, committed in replies.items():
        states += 1
        owner = users[mid - 1][0] if mid - 1 in users else None
        if owner in deleted:
            continue
        if mid not in by_id:
            lost_rows += 1
            continue
        msg = by_id[mid]
        n_words = len(msg.content.split())
        assert msg.content == _expected_reply(n_words)  # an exact prefix of the reply
        lost_bytes += max(0, committed - len(msg.content))
        assert msg.status == ("done" if mid in finished else "interrupted")
    record(kills=1, states=states, lost_rows=lost_rows, lost_bytes=lost_bytes)
    store.close()
    assert (lost_rows, lost_bytes) == (0, 0)
