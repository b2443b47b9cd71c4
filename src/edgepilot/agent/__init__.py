"""The agent: roles and prompts, grounding, the loop, run set-up for every front end, events, trajectories.

- :mod:`.agents`: ``RoleAgent`` (planner, decider, reflector), ``ReactAgent`` (the baseline), ``FnAgent``.
- :mod:`.roles`: each role's prompt file and bounded output schema.
- :mod:`.loop`: ``run_agent`` (observe → decide → gate → act → reflect), ``RunControl``.
- :mod:`.session`: ``prepare_run`` / ``execute``, how ``run``, the TUI and the daemon start a run.
- :mod:`.records`, :mod:`.events`, :mod:`.trajectory`, :mod:`.report`: what a run leaves behind.
"""
