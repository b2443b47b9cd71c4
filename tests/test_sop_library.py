"""The SOP library: which procedures a run on each kind of device is offered."""

def test_a_run_is_offered_only_the_procedures_for_its_device():
    from edgepilot.agent.session import understand_goal
    from edgepilot.sop import load_library

    library = load_library()
    desktop, phone = library.for_device("desktop"), library.for_device("android")
    assert {s.name for s in desktop} == {s.name for s in library if s.device in ("desktop", "any")}
    assert not {s.name for s in desktop} & {s.name for s in phone if s.device == "phone"}
    assert all(s.device != "any" for s in library)  # every bundled procedure says where it belongs
    assert library.for_device("desktop") is desktop  # kept, with its index
    # seen: on a desktop, the phone's bluetooth procedure took this goal with {device} = Galculator
    match = understand_goal("Use Galculator to compute 12 × 7", "auto", "desktop")[0]
    assert match is not None and match.sop.name == "galculator-compute" and match.params == {"sum": "12*7"}
    assert understand_goal("save the file as notes.txt", "auto", "desktop")[0].sop.name == "desktop-save-file"
    assert understand_goal("save the file as notes.txt", "auto", "android")[0] is None or \
        understand_goal("save the file as notes.txt", "auto", "android")[0].sop.device == "phone"
