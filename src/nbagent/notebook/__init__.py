"""The notebook face of nbagent: everything that knows it runs inside a Jupyter kernel.

| module | one line |
|---|---|
| ``frontend`` | what the kernel knows about its frontend: notebook path, cell id, run mode |
| ``registry`` | ``KernelRegistry``: owns the kernel's sessions, logs, tools, MCP servers, tasks |
| ``opening`` | ``SessionOpener``: a cell's options → a session (new, restored, rewired) |
| ``tool_specs`` | ``--tools a,b,notebook`` → the ``Tool`` objects |
| ``cell`` | ``CellRun``: one ``%%agent`` cell's run, its ``AgentResult`` and errors |
| ``recordings`` | the recording format inside the .ipynb, read and written in one place |
| ``following`` | a renamed, moved or copied notebook finds its session logs again |
| ``trust`` | trusted notebooks on this machine: hashes of their recordings (``nbagent trust``) |
| ``commands`` | the ``%agent`` line commands: one table, name → handler and usage |
| ``diagnostics`` | the commands that inspect the set-up: ``tools``, ``doctor``, ``mcp`` |

Importing this package imports nothing (``nbagent.cli`` reads recordings without IPython).
"""
