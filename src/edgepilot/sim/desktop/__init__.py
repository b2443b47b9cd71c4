"""The desktop task suite: real Debian applications on an X display, with success checks read from the real world."""
