"""The terminal assistant, ``edgepilot tui`` (Textual); docs/tui.md.

    app.py       the main screen: task box, device picker, live steps, screen, elements, controls
    screens.py   the confirmation modal, history, the SOP library, the effective policy
    runner.py    the Runner seam (where runs come from) and LocalRunner (runs in this process)
    attached.py  ``--attach``: runs in the background daemon
    confirm.py   TuiConfirmer: the Confirmer seam, answered through events
    blocks.py    screenshots drawn with half blocks
    steps.py     a step or a result as text; widgets.py the step log and the spinner
    devices.py   the device picker's entries; history.py past runs; views.py SOP and policy text

Importing ``edgepilot.tui`` imports nothing heavy; Textual loads with ``edgepilot.tui.app``.
"""
