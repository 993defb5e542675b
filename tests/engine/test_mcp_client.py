"""The MCP client (engine/mcp/client.py) against a tiny stdio server written in the test:
list, call, a tool's error, a server that does not start, crashes or is too slow, and
no thread or process at all when nothing is configured."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from slmchat.engine.mcp.client import McpError, McpHub, McpTool, ServerSpec
from tests.mcpkit import tiny_spec


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[McpHub]:
    made = McpHub([tiny_spec(tmp_path, timeout_s=3.0)])
    yield made
    made.close()


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def test_lists_the_tools_with_their_schemas(hub: McpHub) -> None:
    listing = hub.list_tools()
    assert listing.problems == ()
    names = [t.name for t in listing.tools]
    assert names == ["add", "fail", "crash", "slow", "counter"]
    add = listing.find("add")
    assert add is not None and add.server == "tiny" and add.key == "tiny.add"
    assert add.description == "Add two integers."
    assert set(add.parameters["properties"]) == {"a", "b"}
    assert sorted(add.parameters["required"]) == ["a", "b"]
    plan = listing.plan()
    assert plan is not None and plan.choice == "auto" and len(plan.tools) == 5


def test_calls_a_tool_and_keeps_one_server_process(hub: McpHub) -> None:
    add = McpTool("tiny", "add")
    result = hub.call(add, {"a": 2, "b": 3})
    assert (result.text, result.is_error) == ("5", False)
    counter = McpTool("tiny", "counter")
    assert [hub.call(counter, {}).text for _ in range(3)] == ["1", "2", "3"]


def test_a_failing_tool_is_an_error_result_not_an_exception(hub: McpHub) -> None:
    result = hub.call(McpTool("tiny", "fail"), {"reason": "no such file: notes.txt"})
    assert result.is_error
    assert "no such file: notes.txt" in result.text
    assert result.for_model().startswith("error: ")


def test_a_crashing_server_is_one_line_and_the_next_call_starts_it_again(hub: McpHub) -> None:
    assert hub.call(McpTool("tiny", "counter"), {}).text == "1"
    with pytest.raises(McpError) as err:
        hub.call(McpTool("tiny", "crash"), {})
    message = str(err.value)
    assert "\n" not in message
    assert "'tiny' stopped during crash" in message
    assert "crashing on purpose" in message  # its last stderr line
    assert hub.call(McpTool("tiny", "counter"), {}).text == "1"  # a new process


def test_a_slow_tool_times_out_in_one_line(hub: McpHub) -> None:
    with pytest.raises(McpError, match=r"did not answer slow within 3 s"):
        hub.call(McpTool("tiny", "slow"), {"seconds": 30})


def test_an_unknown_tool_is_an_error_result(hub: McpHub) -> None:
    result = hub.call(McpTool("tiny", "nope"), {})
    assert result.is_error and "nope" in result.text


def test_a_server_that_does_not_start_is_a_problem_line(tmp_path: Path) -> None:
    missing = ServerSpec("ghost", str(tmp_path / "no-such-program"))
    exits = ServerSpec("quits", sys.executable, ("-c", "import sys; print('bad config', "
                                                       "file=sys.stderr); sys.exit(1)"))
    hub = McpHub([missing, exits, tiny_spec(tmp_path)])
    try:
        listing = hub.list_tools()
        assert [t.server for t in listing.tools][:1] == ["tiny"]  # the good one still counts
        assert len(listing.problems) == 2
        ghost, quits = listing.problems
        assert ghost.startswith("MCP server 'ghost' could not start: ") and "\n" not in ghost
        assert quits.startswith("MCP server 'quits' could not start") and "bad config" in quits
        with pytest.raises(McpError, match="'ghost' could not start"):
            hub.call(McpTool("ghost", "x"), {})
    finally:
        hub.close()


def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    silent = ServerSpec("silent", sys.executable, ("-c", "import time; time.sleep(60)"),
                        start_timeout_s=1.0)
    hub = McpHub([silent])
    try:
        (problem,) = hub.list_tools().problems
        assert problem == "MCP server 'silent' did not start within 1 s"
    finally:
        hub.close()


def test_two_servers_with_one_tool_name_keep_the_first(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    hub = McpHub([tiny_spec(tmp_path, "one"), tiny_spec(tmp_path / "b", "two")])
    try:
        listing = hub.list_tools()
        assert {t.server for t in listing.tools} == {"one"}
        assert len(listing.problems) == 5
        assert "tool 'add' left out: server 'one' has a tool of the same name" in listing.problems[0]
    finally:
        hub.close()


def test_close_stops_the_server_processes(tmp_path: Path) -> None:
    before = _children()
    hub = McpHub([tiny_spec(tmp_path)])
    hub.list_tools()
    assert _children() - before  # the server runs while the hub is open
    hub.close()
    assert not (_children() - before)
    assert not hub.started


def test_nothing_configured_starts_nothing() -> None:
    threads = threading.active_count()
    before = _children()
    hub = McpHub([])
    listing = hub.list_tools()
    assert listing.tools == () and listing.problems == () and listing.plan() is None
    assert not hub.started
    assert threading.active_count() == threads
    assert _children() == before
    hub.close()


def test_calls_from_two_threads_share_one_start(hub: McpHub) -> None:
    """The app's reply worker and a tool worker may ask at once: one server process."""
    results: list[str] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(hub.call(McpTool("tiny", "counter"), {}).text)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(results) == ["1", "2", "3"]  # one process counted all three
