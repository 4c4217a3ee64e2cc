"""mcp.json: the common format, nbagent's options, and errors that name file, key and fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nbagent.errors import McpConfigError, McpError
from nbagent.tools.mcp import McpManager, load_config_files, parse_config, parse_spec


def write(path: Path, data: object) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_common_format_with_nbagent_options(tmp_path: Path) -> None:
    write(
        tmp_path / "mcp.json",
        {
            "mcpServers": {
                "time": {"command": "mcp-server-time", "args": ["--local-timezone", "UTC"]},
                "docs": {
                    "url": "http://127.0.0.1:9/mcp",
                    "headers": {"Authorization": "Bearer ${TOKEN}"},
                    "type": "http",  # other clients' keys are accepted
                },
                "files": {
                    "command": "srv",
                    "cwd": "sub",
                    "env": {"A": "1"},
                    "allowTools": ["read_*"],
                    "blockTools": ["read_secret"],
                    "readOnly": True,
                    "approval": "allow",
                    "timeout": 5,
                    "startupTimeout": 2.5,
                    "maxResultChars": 100,
                },
            }
        },
    )
    servers = load_config_files(tmp_path)
    time, docs, files = servers["time"], servers["docs"], servers["files"]
    assert time.transport == "stdio" and time.args == ("--local-timezone", "UTC")
    assert time.cwd == str(tmp_path)  # stdio servers run beside the config file
    assert docs.transport == "http" and docs.headers == {"Authorization": "Bearer ${TOKEN}"}
    assert files.cwd == str(tmp_path / "sub")
    assert files.allow_tools == ("read_*",) and files.block_tools == ("read_secret",)
    assert files.read_only is True and files.approval == "allow"
    assert (files.timeout, files.startup_timeout, files.max_result_chars) == (5.0, 2.5, 100)
    assert files.source == str(tmp_path / "mcp.json")


def test_both_files_are_read_and_a_name_defined_twice_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "mcp.json", {"mcpServers": {"a": {"command": "x"}}})
    write(tmp_path / ".mcp.json", {"mcpServers": {"b": {"command": "y"}}})
    assert sorted(load_config_files(tmp_path)) == ["a", "b"]
    write(tmp_path / ".mcp.json", {"mcpServers": {"a": {"command": "y"}}})
    with pytest.raises(McpConfigError, match=r"\.mcp\.json: mcpServers\.a: .*also defined in"):
        load_config_files(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"mcpServers": {"a": {"command": "x",}}}',
            r"mcp\.json: line 1 column \d+: not valid JSON",
        ),
        ("[]", r"mcp\.json: expected a JSON object with a key 'mcpServers'"),
        ('{"servers": {}}', r"expected a key 'mcpServers'.*found 'servers'"),
        ('{"mcpServers": []}', r"mcpServers: expected an object of servers by name, got a list"),
        ('{"mcpServers": {"a": "x"}}', r"mcpServers\.a: expected an object with 'command'"),
        ('{"mcpServers": {"a": {}}}', r"mcpServers\.a: expected exactly one of 'command'"),
        (
            '{"mcpServers": {"a": {"command": "x", "args": "-v"}}}',
            r"mcpServers\.a\.args: expected a list of strings, got the string '-v'",
        ),
        (
            '{"mcpServers": {"a": {"command": "x", "env": {"K": 1}}}}',
            r"mcpServers\.a\.env: expected an object of strings",
        ),
        (
            '{"mcpServers": {"a": {"url": "ftp://x"}}}',
            r"mcpServers\.a\.url: expected an http:// or https:// URL",
        ),
        (
            '{"mcpServers": {"a": {"command": "x", "timeout": 0}}}',
            r"mcpServers\.a\.timeout: expected a positive number of seconds, got the number 0",
        ),
        (
            '{"mcpServers": {"a": {"command": "x", "timout": 3}}}',
            r"mcpServers\.a\.timout: unknown option; did you mean 'timeout'\?",
        ),
        (
            '{"mcpServers": {"a": {"command": "x", "readOnly": "yes"}}}',
            r"mcpServers\.a\.readOnly: expected true, false or a list",
        ),
        (
            '{"mcpServers": {"a": {"command": "x", "approval": "always"}}}',
            r"mcpServers\.a\.approval: expected 'ask', 'allow' or 'deny'",
        ),
        ('{"mcpServers": {"a/b": {"command": "x"}}}', r"mcpServers\.a/b: a server name must be"),
        (
            '{"mcpServers": {"a": {"url": "http://h/mcp", "type": "sse"}}}',
            r"legacy SSE transport is not supported",
        ),
    ],
)
def test_a_bad_file_names_the_file_the_key_and_what_was_expected(
    tmp_path: Path, content: str, message: str
) -> None:
    write(tmp_path / "mcp.json", content)
    with pytest.raises(McpConfigError, match=message) as info:
        McpManager(tmp_path)
    assert str(tmp_path / "mcp.json") in str(info.value)


def test_a_missing_variable_is_reported_when_the_server_starts(tmp_path: Path) -> None:
    import asyncio

    write(
        tmp_path / "mcp.json",
        {"mcpServers": {"a": {"command": "x", "env": {"K": "${NBAGENT_TEST_UNSET_VAR}"}}}},
    )
    manager = McpManager(tmp_path)

    async def use() -> None:
        try:
            await manager.tools_for("mcp:a")
        finally:
            await manager.aclose()

    with pytest.raises(McpError) as info:
        asyncio.run(use())
    text = str(info.value)
    assert "mcpServers.a.env.K uses ${NBAGENT_TEST_UNSET_VAR}" in text
    assert "not set in the kernel's environment" in text


def test_selectors() -> None:
    assert parse_spec("mcp:time") == ("time", None)
    assert parse_spec("mcp:time/get_*") == ("time", "get_*")
    with pytest.raises(McpError, match="write mcp:SERVER or mcp:SERVER/TOOL"):
        parse_spec("time")
    with pytest.raises(McpConfigError, match=r"no MCP server named 'nope' \(defined: none\)"):
        McpManager(load=False)._server("nope")


def test_cell_definitions_are_checked_like_file_entries() -> None:
    manager = McpManager(load=False)
    with pytest.raises(McpConfigError, match=r"mcpServers\.x: expected exactly one of"):
        manager.add("x")
    with pytest.raises(McpConfigError, match="timeout: expected a positive number"):
        manager.add("x", command="srv", timeout=-1)
    assert parse_config({"mcpServers": {}}) == {}


def test_importing_nbagent_does_not_import_mcp() -> None:
    code = (
        "import sys, nbagent, nbagent.tools.mcp; "
        "print(any(m == 'mcp' or m.startswith('mcp.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
