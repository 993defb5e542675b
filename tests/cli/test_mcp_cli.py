"""`slmchat mcp list|call` with [[mcp]] servers in settings.toml: the tiny test server,
a server that does not start (one problem line, exit 1), and none configured."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from slmchat.cli import main
from tests.mcpkit import tiny_spec


def write_settings(folder: Path, text: str) -> None:
    config = folder / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "settings.toml").write_text(text, encoding="utf-8")


def tiny_table(tmp_path: Path, name: str = "tiny") -> str:
    spec = tiny_spec(tmp_path)
    env = "".join(f'{k} = {json.dumps(v)}\n' for k, v in spec.env)
    return (f"[[mcp]]\nname = {json.dumps(name)}\ncommand = {json.dumps(spec.command)}\n"
            f"args = {json.dumps(list(spec.args))}\n" + (f"[mcp.env]\n{env}" if env else ""))


def test_none_configured_says_how_and_starts_nothing(isolated_dirs: Path, capsys) -> None:
    assert main(["mcp", "list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("No MCP servers configured. Add one to ")
    assert "[[mcp]]" in out


def test_lists_servers_and_tools_and_one_line_per_problem(isolated_dirs: Path, tmp_path: Path,
                                                          capsys) -> None:
    write_settings(isolated_dirs, tiny_table(tmp_path) +
                   '\n[[mcp]]\nname = "ghost"\ncommand = "/no/such/mcp-server"\n'
                   '\n[[mcp]]\nname = "off"\ncommand = "/no/such/either"\nenabled = false\n')
    assert main(["mcp", "list"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"tiny: {sys.executable} {tmp_path / 'tiny_mcp_server.py'}"
    assert out[1] == "  add  Add two integers."
    assert [line.split()[0] for line in out[1:6]] == ["add", "fail", "crash", "slow", "counter"]
    assert out[6] == "ghost: /no/such/mcp-server"
    assert out[7] == "off: /no/such/either  (disabled)"
    (problem,) = [line for line in out if line.startswith("problem: ")]
    assert problem.startswith("problem: MCP server 'ghost' could not start: ")


def test_call_runs_one_tool(isolated_dirs: Path, tmp_path: Path, capsys) -> None:
    write_settings(isolated_dirs, tiny_table(tmp_path))
    assert main(["mcp", "call", "tiny", "add", '{"a": 2, "b": 3}']) == 0
    assert capsys.readouterr().out == "5\n"
    assert main(["mcp", "call", "tiny", "fail", '{"reason": "out of paper"}']) == 1
    assert "out of paper" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["tiny", "add", "{not json"], "the arguments are not JSON"),
    (["tiny", "add", "[1, 2]"], "the arguments must be a JSON object"),
    (["tiny", "nope"], "MCP server 'tiny' has no tool 'nope' (see slmchat mcp list)"),
])
def test_bad_calls_are_one_line(isolated_dirs: Path, tmp_path: Path, capsys, args, message) -> None:
    write_settings(isolated_dirs, tiny_table(tmp_path))
    assert main(["mcp", "call", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("slmchat: error: ") and message in err and err.count("\n") == 1


def test_two_servers_with_one_name_are_a_settings_problem(isolated_dirs: Path, tmp_path: Path,
                                                          capsys) -> None:
    write_settings(isolated_dirs, '[[mcp]]\nname = "a"\ncommand = "x"\n'
                                  '[[mcp]]\nname = "a"\ncommand = "y"\n')
    assert main(["mcp", "list"]) == 0  # the settings are ignored as a whole, as for any bad field
    captured = capsys.readouterr()
    assert "two [[mcp]] servers are named 'a'" in captured.err
    assert captured.out.startswith("No MCP servers configured.")


def test_saving_settings_keeps_the_servers(isolated_dirs: Path) -> None:
    """The app rewrites settings.toml (theme, defaults): the [[mcp]] tables stay."""
    from slmchat.config import load_settings, save_settings

    write_settings(isolated_dirs, '[ui]\ntheme = "nord"\n\n[[mcp]]\nname = "notes"\n'
                                  'command = "npx"\nargs = ["-y", "server", "/home/me/notes"]\n'
                                  'env = { TOKEN = "t" }\ntimeout_s = 5\nenabled = false\n')
    settings, problem = load_settings()
    assert problem is None
    settings.ui.theme = "textual-light"
    save_settings(settings)
    again, problem = load_settings()
    assert problem is None and again.ui.theme == "textual-light"
    assert again.mcp == settings.mcp and again.mcp[0].env == {"TOKEN": "t"}
    assert again.mcp_servers() == []  # disabled
    again.mcp[0].enabled = True
    (spec,) = again.mcp_servers()
    assert (spec.name, spec.command, spec.args, spec.env, spec.timeout_s) == (
        "notes", "npx", ("-y", "server", "/home/me/notes"), (("TOKEN", "t"),), 5.0)
