"""The terminal assistant, ``edgepilot tui`` (Textual).

    app.py       the main screen: task box, device picker, live steps, screen, elements, controls
    screens.py   the confirmation modal, history, SOP library, effective policy
    runner.py    the Runner seam (where runs come from) and LocalRunner (in this process)
    confirm.py   TuiConfirmer: the Confirmer seam answered through events
    blocks.py    screenshots drawn with half blocks
    steps.py     a step or a result as text

Importing ``edgepilot.tui`` imports nothing heavy; Textual loads with ``edgepilot.tui.app``.
"""
