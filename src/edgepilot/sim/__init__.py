"""Virtual devices and task suites: the virtual phone, its adb endpoint, tasks, the oracle."""
